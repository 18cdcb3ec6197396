"""Meta-gradient estimators for MAML-RL: the inner (adaptation) losses.

Every estimator's inner loss has the same gradient -- the vanilla policy gradient with the
batch's advantages -- so the adaptation step is identical; they differ in the second
derivative that the meta-gradient takes through that step:

- ``"maml"``: the *original MAML-RL surrogate* ``-mean_t log pi(a_t|s_t) A_t``. It treats the
  support trajectories as fixed data and so drops the curvature that comes from their
  distribution depending on theta (ProMP, Rothfuss et al. 2018, arXiv:1810.06784, Sec. 5). It
  matches the published MAML-RL results.
- ``"lvc"``: ProMP's low-variance curvature estimator, ``-mean_t (pi / stop_grad(pi)) A_t``,
  whose Hessian adds the ``A grad log pi grad log pi^T`` term the original drops (ProMP
  Sec. 5.2); biased, but of lower variance than DiCE.
- ``"dice"``: the unbiased estimator of every derivative, DiCE (Foerster et al. 2018,
  arXiv:1802.05098) in its "loaded" form with advantages (Farquhar et al. 2019,
  arXiv:1909.10549): ``-mean_t (box(w_t) - box(w_{t-1})) A_t``, ``w_t`` the episode's summed
  log-probabilities up to step t and ``box(x) = exp(x - stop_grad(x))``. With reward-to-go
  advantages its expected Hessian is exactly the Hessian of the expected return (tested by
  enumeration on a small MDP). It needs whole episodes; the Fisher-vector products, like every
  estimator's, adapt on the full support data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from metarl.core.episodes import StepBatch, masked_mean
from metarl.core.linalg import Params

ESTIMATORS = ("maml", "lvc", "dice")
InnerLoss = Callable[[Params, StepBatch], Tensor]


class StochasticPolicy(Protocol):
    def log_prob(self, params: Params, obs: Tensor, actions: Tensor) -> Tensor: ...


def inner_loss_for(
    policy: StochasticPolicy, estimator: str = "maml", horizon: int | None = None
) -> InnerLoss:
    """The inner loss of ``estimator``; DiCE needs the horizon to find each episode's steps in
    the time-major flattened batch."""
    if estimator == "maml":
        return reinforce_loss(policy)
    if estimator == "lvc":
        return lvc_loss(policy)
    if estimator == "dice":
        if horizon is None:
            raise ValueError("the dice estimator needs the horizon")
        return dice_loss(policy, horizon)
    raise ValueError(f"unknown estimator {estimator!r} (known: {', '.join(ESTIMATORS)})")


def reinforce_loss(policy: StochasticPolicy) -> InnerLoss:
    """Vanilla policy-gradient loss ``-mean_t log pi(a_t|s_t) A_t`` per task."""

    def loss(params: Params, batch: StepBatch) -> Tensor:
        log_prob = policy.log_prob(params, batch.observations, batch.actions)
        return -masked_mean(log_prob * batch.advantages, batch.mask)

    return loss


def lvc_loss(policy: StochasticPolicy) -> InnerLoss:
    """``-mean_t exp(log pi - stop_grad(log pi)) A_t`` per task (ProMP's J^LVC, eq. 13)."""

    def loss(params: Params, batch: StepBatch) -> Tensor:
        log_prob = policy.log_prob(params, batch.observations, batch.actions)
        ratio = torch.exp(log_prob - log_prob.detach())
        return -masked_mean(ratio * batch.advantages, batch.mask)

    return loss


def _magic_box(x: Tensor) -> Tensor:
    """1 in value, with the derivatives of exp(x): DiCE's operator."""
    return torch.exp(x - x.detach())


def dice_loss(policy: StochasticPolicy, horizon: int) -> InnerLoss:
    """Loaded DiCE ``-mean_t (box(w_t) - box(w_{t-1})) A_t`` per task.

    Steps are time-major within a task (step ``t`` of episode ``b`` at ``t * B + b``), as
    ``metarl.core.episodes.to_step_batch`` lays them out, so ``B`` is the steps over the
    horizon (a batch counted in steps has as many places as its widest task); masked steps add
    nothing to ``w``.
    """

    def loss(params: Params, batch: StepBatch) -> Tensor:
        log_prob = policy.log_prob(params, batch.observations, batch.actions) * batch.mask
        steps = log_prob.shape[-1]
        if steps % horizon:
            raise ValueError(f"{steps} steps do not split into episodes of horizon {horizon}")
        by_time = log_prob.reshape(*log_prob.shape[:-1], horizon, -1)  # [.., T, B]
        summed = by_time.cumsum(dim=-2)
        weights = _magic_box(summed) - _magic_box(summed - by_time)
        return -masked_mean(weights.reshape(log_prob.shape) * batch.advantages, batch.mask)

    return loss
