"""The MAML meta-objective and its gradient (Finn et al. 2017, arXiv:1703.03400, Algorithm 3).

For every task of a meta-batch the meta-parameters theta are adapted by ``adapt`` on the task's
support data, and the adapted parameters phi_i(theta) are scored on its query data. The
meta-gradient differentiates through the inner step (second order) unless ``first_order``.

Meta-gradient estimator: whichever the inner loss implements (``metarl.estimators``): the
original MAML-RL surrogate by default, ProMP's LVC or DiCE on request.

Tasks are a tensor dimension: parameters are expanded to ``[N, ...]`` and every task's forward
pass is one batched matmul. ``meta_gradient`` also offers ``torch.func.vmap`` over tasks (with a
``chunk_size``) and a plain loop, used by the tests (all three agree) and by ``metarl bench``,
which measures them; the batched form was fastest here (see README).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from metarl.adaptation import adapt, per_task, select_tasks, task_count
from metarl.episodes import StepBatch, masked_mean
from metarl.linalg import Params, detached_leaves, gauss_newton_vector_product
from metarl.policies import GaussianMLPPolicy, gaussian_kl, gaussian_log_prob

GradientMode = Literal["batched", "vmap", "loop"]


class QueryBatch(NamedTuple):
    """Query steps with the sampling (old) policy's outputs, for the TRPO surrogate and KL."""

    steps: StepBatch
    old_mean: Tensor  # [N, M, act]
    old_log_std: Tensor  # [N, 1, act]
    old_log_prob: Tensor  # [N, M]


class MetaBatch(NamedTuple):
    supports: list[StepBatch]  # one per inner step; step s was sampled with phi after s steps
    query: QueryBatch


def surrogate_loss(policy: GaussianMLPPolicy) -> Callable[[Params, QueryBatch], Tensor]:
    """Importance-weighted surrogate ``-mean_t ratio_t A_t`` per task (Schulman et al. 2015,
    arXiv:1502.05477, eq. 14); its gradient at the sampling parameters is the policy gradient."""

    def loss(params: Params, query: QueryBatch) -> Tensor:
        log_prob = policy.log_prob(params, query.steps.observations, query.steps.actions)
        ratio = torch.exp(log_prob - query.old_log_prob)
        return -masked_mean(ratio * query.steps.advantages, query.steps.mask)

    return loss


def query_loss_and_kl(
    policy: GaussianMLPPolicy,
    inner_loss: Callable[[Params, StepBatch], Tensor],
    params: Params,
    batch: MetaBatch,
    inner_lr: float,
    first_order: bool = False,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Mean over tasks of the adapted policies' surrogate loss and of KL(old || adapted),
    computed ``chunk_size`` tasks at a time (all if None or 0)."""
    n = batch.query.old_log_prob.shape[0]
    chunk = chunk_size or n
    loss_sum, kl_sum = torch.zeros(()), torch.zeros(())
    for start in range(0, n, chunk):
        part: MetaBatch = select_tasks(batch, slice(start, start + chunk))
        m = part.query.old_log_prob.shape[0]
        adapted = adapt(inner_loss, per_task(params, m), part.supports, inner_lr, first_order)
        steps = part.query.steps
        mean, log_std = policy.distribution_params(adapted, steps.observations)
        log_prob = gaussian_log_prob(mean, log_std, steps.actions)
        ratio = torch.exp(log_prob - part.query.old_log_prob)
        loss_sum = loss_sum - masked_mean(ratio * steps.advantages, steps.mask).sum()
        kl = gaussian_kl(part.query.old_mean, part.query.old_log_std, mean, log_std)
        kl_sum = kl_sum + masked_mean(kl, steps.mask).sum()
    return loss_sum / n, kl_sum / n


def meta_gradient(
    inner_loss: Callable[[Params, Any], Tensor],
    outer_loss: Callable[[Params, Any], Tensor],
    params: Params,
    supports: Sequence[Any],
    query: Any,
    inner_lr: float,
    first_order: bool = False,
    mode: GradientMode = "batched",
    chunk_size: int | None = None,
) -> tuple[Tensor, Params]:
    """Value and gradient of ``mean_i outer_loss(adapt(params, supports_i), query_i)``.

    Every leaf tensor of ``supports`` and ``query`` has a leading task dimension N.
    ``mode`` picks how tasks are batched: stacked per-task parameters with batched matmuls,
    ``vmap``, or a loop. ``chunk_size`` tasks are processed at a time (all if None or 0) in the
    batched and vmap modes, which bounds the memory of the second-order graph.
    """
    supports = list(supports)
    n = task_count(query)
    chunk = chunk_size or n

    def task_objective(p: Params, task_supports: list[Any], task_query: Any) -> Tensor:
        return outer_loss(adapt(inner_loss, p, task_supports, inner_lr, first_order), task_query)

    if mode == "batched":

        def chunk_objective(p: Params, chunk_supports: list[Any], chunk_query: Any) -> Tensor:
            m = task_count(chunk_query)
            adapted = adapt(inner_loss, per_task(p, m), chunk_supports, inner_lr, first_order)
            return outer_loss(adapted, chunk_query).sum() / n

        chunk_value_and_grad = torch.func.grad_and_value(chunk_objective)
        total: Tensor = torch.zeros(())
        grads: Params = {k: torch.zeros_like(v) for k, v in params.items()}
        for start in range(0, n, chunk):
            part = slice(start, start + chunk)
            g, loss = chunk_value_and_grad(params, select_tasks(supports, part),
                                           select_tasks(query, part))
            total = total + loss.detach()
            grads = {k: grads[k] + g[k] for k in grads}
        return total, grads
    value_and_grad = torch.func.grad_and_value(task_objective)
    if mode == "vmap":
        stacked, losses = torch.func.vmap(value_and_grad, in_dims=(None, 0, 0),
                                          chunk_size=chunk)(params, supports, query)
        return losses.mean(), {k: g.mean(0) for k, g in stacked.items()}
    if mode == "loop":
        results = [value_and_grad(params, select_tasks(supports, i), select_tasks(query, i))
                   for i in range(n)]
        mean_loss = torch.stack([loss for _, loss in results]).mean()
        return mean_loss, {k: torch.stack([g[k] for g, _ in results]).mean(0) for k in params}
    raise ValueError(f"unknown meta-gradient mode {mode!r} (known: batched, vmap, loop)")


def subsample_steps(batch: MetaBatch, fraction: float, generator: torch.Generator,
                    subsample_supports: bool = True) -> MetaBatch:
    """The same random ``fraction`` of steps from every support and the query (at least one).

    TRPO estimates its curvature on a subsample of the data (Schulman et al. 2015,
    arXiv:1502.05477, Sec. 8); the gradient and the line search keep all of it. Supports are
    kept whole when ``subsample_supports`` is false (DiCE needs whole episodes).
    """
    if fraction >= 1.0:
        return batch

    def pick(num_steps: int) -> Tensor:
        keep = max(1, math.ceil(fraction * num_steps))
        return torch.randperm(num_steps, generator=generator)[:keep].sort().values

    supports = ([s.subsample(pick(s.mask.shape[-1])) for s in batch.supports]
                if subsample_supports else batch.supports)
    q = batch.query
    index = pick(q.steps.mask.shape[-1])
    query = QueryBatch(
        steps=q.steps.subsample(index),
        old_mean=q.old_mean.index_select(-2, index),
        old_log_std=q.old_log_std,
        old_log_prob=q.old_log_prob.index_select(-1, index),
    )
    return MetaBatch(supports, query)


def fisher_vector_product(
    policy: GaussianMLPPolicy,
    inner_loss: Callable[[Params, StepBatch], Tensor],
    params: Params,
    batch: MetaBatch,
    inner_lr: float,
    first_order: bool = False,
    damping: float = 0.0,
) -> Callable[[Tensor], Tensor]:
    """``v -> (H + damping I) v`` with H the Hessian in theta of the mean KL(old || phi(theta))
    over the query steps of ``batch``, evaluated at ``params``, in Gauss-Newton form ``J^T M J``.

    J is the Jacobian of the adapted policies' outputs (means at the query states and log-stds)
    through the inner step; M is the KL's Hessian in those outputs at the old policy: ``w / var``
    for each mean and ``2 sum_t w`` for each log-std, w being each step's weight in the mean KL.
    """
    n = batch.query.old_log_prob.shape[0]
    leaves = detached_leaves(params)
    adapted = adapt(inner_loss, per_task(leaves, n), batch.supports, inner_lr, first_order)
    steps = batch.query.steps
    mean, log_std = policy.distribution_params(adapted, steps.observations)
    weights = steps.mask / (n * steps.mask.sum(-1, keepdim=True).clamp(min=1.0))  # [N, M]
    inverse_var = torch.exp(-2 * batch.query.old_log_std)  # [N, 1, act]
    curvature_mean = weights.unsqueeze(-1) * inverse_var
    curvature_log_std = (2 * weights.sum(-1)).view(n, 1, 1).expand_as(log_std)
    return gauss_newton_vector_product(
        outputs=[mean, log_std],
        wrt=list(leaves.values()),
        curvature=[curvature_mean, curvature_log_std],
        damping=damping,
    )
