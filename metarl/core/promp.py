"""ProMP's outer step (Rothfuss et al. 2018, "ProMP: Proximal Meta-Policy Search",
arXiv:1810.06784, Algorithm 1 and eq. 14).

Several Adam steps per meta-batch on the clipped likelihood-ratio surrogate of the adapted
policies (PPO's objective, Schulman et al. 2017, arXiv:1707.06347, through the adaptation), plus
a KL penalty that keeps the pre-update policy near the one that sampled the support data. The
penalty weight adapts: doubled when the measured KL exceeds 1.5 times its target, halved when it
falls below a 1.5th of it. ProMP pairs this with the LVC estimator (``estimator: lvc``); the
estimator in force is whichever the inner loss passed in implements.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from metarl.core.adam import AdamState, adam_step
from metarl.core.distributions import DistParams, Policy
from metarl.core.episodes import StepBatch, masked_mean
from metarl.core.linalg import Params
from metarl.core.maml import MetaBatch, QueryBatch, meta_gradient


def clipped_surrogate_loss(
    policy: Policy, clip_eps: float
) -> Callable[[Params, QueryBatch], Tensor]:
    """``-mean_t min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)`` per task, ``r`` the ratio of the
    adapted policy to the one that sampled the query data."""

    def loss(params: Params, query: QueryBatch) -> Tensor:
        steps = query.steps
        log_prob = policy.log_prob(params, steps.observations, steps.actions)
        ratio = torch.exp(log_prob - query.old_log_prob)
        clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
        objective = torch.minimum(ratio * steps.advantages, clipped * steps.advantages)
        return -masked_mean(objective, steps.mask)

    return loss


class PrompResult(NamedTuple):
    params: Params
    adam: AdamState
    kl_coef: float
    loss_before: float
    pre_update_kl: float


def pre_update_kl(policy: Policy, params: Params, support: StepBatch,
                  old: DistParams) -> Tensor:
    """Mean over tasks of KL(pi_old || pi_params) on the first support step's states, ``old``
    the old policy's distribution outputs there."""
    new = policy.distribution_params(params, support.observations)
    return masked_mean(policy.distribution.kl(old, new), support.mask).mean()


def promp_step(
    policy: Policy,
    inner_loss: Callable[[Params, StepBatch], Tensor],
    params: Params,
    adam: AdamState,
    batch: MetaBatch,
    inner_lr: float,
    outer_lr: float,
    steps: int,
    clip_eps: float,
    kl_coef: float,
    kl_target: float,
    first_order: bool = False,
    chunk_size: int | None = None,
) -> PrompResult:
    """``steps`` Adam steps on the ProMP objective; returns the new parameters and KL weight."""
    outer_loss = clipped_surrogate_loss(policy, clip_eps)
    support = batch.supports[0]
    with torch.no_grad():
        old = policy.distribution_params(params, support.observations)
    kl_value_and_grad = torch.func.grad_and_value(
        lambda p: pre_update_kl(policy, p, support, old)
    )
    loss_before = float("nan")
    for step in range(steps):
        loss, grads = meta_gradient(inner_loss, outer_loss, params, batch.supports, batch.query,
                                    inner_lr, first_order, mode="batched", chunk_size=chunk_size)
        if step == 0:
            loss_before = loss.item()
        kl_grads, _ = kl_value_and_grad(params)
        total = {k: grads[k] + kl_coef * kl_grads[k] for k in grads}
        params, adam = adam_step(params, total, adam, outer_lr)
    with torch.no_grad():
        kl = pre_update_kl(policy, params, support, old).item()
    if kl > 1.5 * kl_target:
        kl_coef *= 2.0
    elif kl < kl_target / 1.5:
        kl_coef /= 2.0
    return PrompResult(params, adam, kl_coef, loss_before, kl)
