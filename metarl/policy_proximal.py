"""iMAML's inner problem for a policy: a proximal objective that has a minimiser.

iMAML adapts by solving ``min_phi L(phi) + lambda/2 |phi - theta|^2`` (``metarl.imaml``). With
the MAML-RL surrogate ``L = -mean_t log pi_phi(a_t|s_t) A_t`` that problem has no solution: for
a step with a negative advantage, shrinking the Gaussian's standard deviation sends
``log pi_phi(a_t|s_t)`` to minus infinity faster than the quadratic term grows, so the
objective is unbounded below. On 2D navigation the inner descent followed that direction once
the meta-policy had sharpened (proximal gradient norm 1e12 to inf after ~120
meta-iterations, then a non-finite meta-gradient).

Here the inner loss is PPO's clipped likelihood-ratio surrogate (Schulman et al. 2017,
arXiv:1707.06347, eq. 7) with the ratio taken against theta, the policy that sampled the
support steps:

    L(phi) = -mean_t min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t),  r_t = pi_phi / pi_theta.

It is bounded below by ``-(1 + eps) mean_t max(A_t, 0)``, and at ``phi = theta`` (r = 1, inside
the clip) its gradient is the policy gradient ``-mean_t A_t grad log pi``, the same first step as
MAML's; the clip only acts once a task's policy has moved by more than ``eps`` in probability
ratio, where the old surrogate's samples no longer describe the new policy anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from metarl.episodes import StepBatch, masked_mean
from metarl.estimators import StochasticPolicy
from metarl.linalg import Params

CLIP = 0.2  # PPO's epsilon (Schulman et al. 2017, Sec. 6)


class AnchoredBatch(NamedTuple):
    """Support steps with the log-probabilities of their actions under the anchor theta."""

    steps: StepBatch  # [N, M, ...]
    anchor_log_prob: Tensor  # [N, M]


def anchored_batch(policy: StochasticPolicy, anchor: Params, batch: StepBatch) -> AnchoredBatch:
    """``batch`` with ``log pi_anchor(a|s)``; ``anchor`` shared or stacked per task."""
    with torch.no_grad():
        log_prob = policy.log_prob(anchor, batch.observations, batch.actions)
    return AnchoredBatch(batch, log_prob.detach())


def clipped_ratio_loss(policy: StochasticPolicy, clip: float = CLIP
                       ) -> Callable[[Params, AnchoredBatch], Tensor]:
    """The clipped surrogate above, one value per task."""
    if not 0 < clip < 1:
        raise ValueError(f"clip must be in (0, 1), got {clip}")

    def loss(params: Params, batch: AnchoredBatch) -> Tensor:
        steps = batch.steps
        log_prob = policy.log_prob(params, steps.observations, steps.actions)
        ratio = torch.exp(log_prob - batch.anchor_log_prob)
        advantages = steps.advantages
        surrogate = torch.minimum(ratio * advantages,
                                  ratio.clamp(1 - clip, 1 + clip) * advantages)
        return -masked_mean(surrogate, steps.mask)

    return loss
