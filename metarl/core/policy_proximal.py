"""iMAML's inner problem for a policy: a proximal objective that has a minimiser.

iMAML adapts by solving ``min_phi L(phi) + lambda/2 |phi - theta|^2`` (``metarl.core.imaml``). With
the MAML-RL surrogate ``L = -mean_t log pi_phi(a_t|s_t) A_t`` that problem has no solution: for
a step with a negative advantage, shrinking the Gaussian's standard deviation sends
``log pi_phi(a_t|s_t)`` to minus infinity faster than the quadratic term grows, so the
objective is unbounded below. On 2D navigation the inner descent followed that direction once
the meta-policy had sharpened (proximal gradient norm 1e12 to inf after ~120
meta-iterations, then a non-finite meta-gradient).

Only the negative-advantage steps make it unbounded: for a positive advantage,
``log pi_phi(a|s) <= -log_std + const`` grows linearly in the parameters, which the quadratic
term outgrows. So here the inner loss is the MAML-RL surrogate with the log-probability of each
negative-advantage action floored at ``log(RATIO_FLOOR) + log pi_theta(a|s)``:

    L(phi) = -mean_t A_t * (log pi_phi(a_t|s_t)                       if A_t >= 0
                            max(log pi_phi, log pi_theta + log floor)  if A_t < 0),

with theta the policy that sampled the support steps. Once an action with a negative advantage
has become ``1 / RATIO_FLOOR`` times less likely than under theta, it pushes no further. The
loss is then bounded below, and near theta (every ratio above the floor) it is the MAML-RL
surrogate itself: the same gradient and Hessian, so the adaptation that worked is unchanged.

A first attempt, PPO's clipped ratio (Schulman et al. 2017, arXiv:1707.06347) with epsilon 0.2,
is bounded too but limits every step's ratio to 1.2: on 2D navigation it adapted barely (query
return -38.4 against support -40.4 at iteration 20, where the MAML-RL surrogate gave -24 against
-45) and the meta-policy collapsed by iteration 35 (return -680).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from metarl.core.episodes import StepBatch, masked_mean
from metarl.core.estimators import StochasticPolicy
from metarl.core.linalg import Params

RATIO_FLOOR = 0.1  # a bad action stops being pushed down once 10 times less likely


class AnchoredBatch(NamedTuple):
    """Support steps with the log-probabilities of their actions under the anchor theta."""

    steps: StepBatch  # [N, M, ...]
    anchor_log_prob: Tensor  # [N, M]


def anchored_batch(policy: StochasticPolicy, anchor: Params, batch: StepBatch) -> AnchoredBatch:
    """``batch`` with ``log pi_anchor(a|s)``; ``anchor`` shared or stacked per task."""
    with torch.no_grad():
        log_prob = policy.log_prob(anchor, batch.observations, batch.actions)
    return AnchoredBatch(batch, log_prob.detach())


def floored_surrogate_loss(policy: StochasticPolicy, ratio_floor: float = RATIO_FLOOR
                           ) -> Callable[[Params, AnchoredBatch], Tensor]:
    """The floored MAML-RL surrogate above, one value per task."""
    if not 0 < ratio_floor < 1:
        raise ValueError(f"ratio_floor must be in (0, 1), got {ratio_floor}")
    log_floor = math.log(ratio_floor)

    def loss(params: Params, batch: AnchoredBatch) -> Tensor:
        steps = batch.steps
        log_prob = policy.log_prob(params, steps.observations, steps.actions)
        floored = torch.maximum(log_prob, batch.anchor_log_prob + log_floor)
        used = torch.where(steps.advantages < 0, floored, log_prob)
        return -masked_mean(used * steps.advantages, steps.mask)

    return loss
