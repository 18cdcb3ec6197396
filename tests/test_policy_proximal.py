"""iMAML's policy inner loss (``metarl.policy_proximal``) in float64: its value by hand, its
first gradient equal to the policy gradient, and a proximal problem that has a minimiser where
the MAML-RL surrogate's has none."""

from __future__ import annotations

import math

import pytest
import torch

from metarl.adaptation import per_task
from metarl.episodes import StepBatch
from metarl.estimators import reinforce_loss
from metarl.imaml import proximal_adapt
from metarl.policies import GaussianMLPPolicy
from metarl.policy_proximal import CLIP, AnchoredBatch, anchored_batch, clipped_ratio_loss

N, M, OBS, ACT = 3, 16, 2, 1


def _policy_and_batch(log_std: float = 0.0) -> tuple[GaussianMLPPolicy, dict, StepBatch]:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(OBS, ACT, (8,), init_log_std=log_std).double()
    g = torch.Generator().manual_seed(1)
    batch = StepBatch(
        observations=torch.randn(N, M, OBS, generator=g, dtype=torch.float64),
        actions=torch.randn(N, M, ACT, generator=g, dtype=torch.float64),
        advantages=torch.randn(N, M, generator=g, dtype=torch.float64),
        mask=torch.ones(N, M, dtype=torch.float64),
    )
    return policy, policy.initial_params(), batch


class _FixedRatio:
    """A 'policy' whose log-probabilities are the parameter ``r`` itself, to set ratios."""

    def log_prob(self, params: dict, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return params["r"]


def test_loss_by_hand() -> None:
    # A = 1 at ratio 1.5 (clipped to 1.2); A = -1 at ratio 0.5 (min picks clip 0.8 * -1)
    steps = StepBatch(torch.zeros(1, 2, 1), torch.zeros(1, 2, 1),
                      torch.tensor([[1.0, -1.0]]), torch.ones(1, 2))
    batch = AnchoredBatch(steps, torch.zeros(1, 2))
    ratios = torch.tensor([[1.5, 0.5]], dtype=torch.float64)
    loss = clipped_ratio_loss(_FixedRatio())({"r": ratios.log()}, batch)
    assert loss.item() == pytest.approx(-(1.2 * 1.0 + 0.8 * -1.0) / 2)


def test_first_gradient_is_the_policy_gradient() -> None:
    policy, theta, batch = _policy_and_batch()
    stacked = per_task(theta, N)
    anchored = anchored_batch(policy, theta, batch)
    clipped = torch.func.grad(lambda p: clipped_ratio_loss(policy)(p, anchored).sum())(stacked)
    plain = torch.func.grad(lambda p: reinforce_loss(policy)(p, batch).sum())(stacked)
    for name in theta:
        assert torch.allclose(clipped[name], plain[name], atol=1e-12)


def test_bounded_below_where_the_reinforce_surrogate_is_not() -> None:
    """Shrinking the standard deviation (mean fixed) sends the MAML-RL surrogate to minus
    infinity through the negative-advantage steps; the clipped loss stays above
    -(1 + eps) mean(max(A, 0))."""
    policy, theta, batch = _policy_and_batch()
    anchored = anchored_batch(policy, theta, batch)
    floor = -(1 + CLIP) * batch.advantages.clamp(min=0).mean(-1)
    for log_std in (-2.0, -10.0, -30.0):
        sharp = dict(theta, log_std=torch.full((ACT,), log_std, dtype=torch.float64))
        assert bool((clipped_ratio_loss(policy)(per_task(sharp, N), anchored)
                     >= floor - 1e-12).all())
    # every advantage negative: each task's surrogate is sum |A| log pi, unbounded below
    negative = batch._replace(advantages=-batch.advantages.abs())
    assert bool((clipped_ratio_loss(policy)(per_task(sharp, N),
                                            anchored._replace(steps=negative)) >= 0).all())
    assert bool((reinforce_loss(policy)(per_task(sharp, N), negative) < -1e20).all())


def test_proximal_solve_of_a_sharp_policy_stays_finite() -> None:
    """From a sharpened policy (std e^-3) with a generous rate, the proximal solve on the
    clipped loss ends finite with its objective below the start, while on the MAML-RL surrogate
    the objective falls without bound."""
    policy, theta, batch = _policy_and_batch(log_std=-3.0)
    anchored = anchored_batch(policy, theta, batch)
    clipped = proximal_adapt(clipped_ratio_loss(policy), theta, anchored, 2.0, 0.5, 50)
    assert all(bool(torch.isfinite(v).all()) for v in clipped.adapted.values())
    objective = clipped_ratio_loss(policy)(clipped.adapted, anchored)
    start = clipped_ratio_loss(policy)(per_task(theta, N), anchored)
    assert bool((objective < start).all())
    plain = proximal_adapt(reinforce_loss(policy), theta, batch, 2.0, 0.5, 50)
    value = reinforce_loss(policy)(plain.adapted, batch)
    prox = sum((plain.adapted[k] - theta[k]).flatten(1).square().sum(1) for k in theta)
    assert bool((value + prox < -1e3).any())  # no minimiser: it keeps descending
    assert not math.isnan(float(objective.sum()))


def test_stacked_anchors_solve_each_task_around_its_own() -> None:
    """``proximal_adapt(stacked=True)``: each task's anchor is its own row; with the same anchor
    in every row the result equals the shared-anchor solve."""
    policy, theta, batch = _policy_and_batch()
    loss = reinforce_loss(policy)
    shared = proximal_adapt(loss, theta, batch, 2.0, 0.05, 5)
    rows = proximal_adapt(loss, per_task(theta, N), batch, 2.0, 0.05, 5, stacked=True)
    for name in theta:
        assert torch.allclose(shared.adapted[name], rows.adapted[name], atol=1e-14)
    anchors = {k: v + 0.1 * torch.arange(N, dtype=v.dtype).reshape(N, *[1] * (v.dim() - 1))
               for k, v in per_task(theta, N).items()}
    moved = proximal_adapt(loss, anchors, batch, 2.0, 0.05, 5, stacked=True)
    for i in range(N):
        one = StepBatch(*(x[i : i + 1] for x in batch))
        alone = proximal_adapt(loss, {k: v[i] for k, v in anchors.items()}, one, 2.0, 0.05, 5)
        for name in theta:
            assert torch.allclose(moved.adapted[name][i], alone.adapted[name][0], atol=1e-12)
