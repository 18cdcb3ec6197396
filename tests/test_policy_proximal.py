"""iMAML's policy inner loss (``metarl.core.policy_proximal``) in float64: its value by hand, equal
to the MAML-RL surrogate (value, gradient, Hessian) near theta, and a proximal problem that has a
minimiser where the MAML-RL surrogate's has none."""

from __future__ import annotations

import math

import pytest
import torch

from metarl.core.adaptation import per_task
from metarl.core.episodes import StepBatch
from metarl.core.estimators import reinforce_loss
from metarl.core.imaml import proximal_adapt
from metarl.core.policies import GaussianMLPPolicy
from metarl.core.policy_proximal import (
    RATIO_FLOOR,
    AnchoredBatch,
    anchored_batch,
    floored_surrogate_loss,
)

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
    # log-ratios 0.4 (A = 2), -0.5 (A = -1, above the floor), -5 (A = -3, floored at log 0.1),
    # -5 (A = 1: positive advantages are never floored)
    steps = StepBatch(torch.zeros(1, 4, 1), torch.zeros(1, 4, 1),
                      torch.tensor([[2.0, -1.0, -3.0, 1.0]], dtype=torch.float64),
                      torch.ones(1, 4, dtype=torch.float64))
    anchor = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)
    log_prob = anchor + torch.tensor([[0.4, -0.5, -5.0, -5.0]], dtype=torch.float64)
    loss = floored_surrogate_loss(_FixedRatio())({"r": log_prob},
                                                 AnchoredBatch(steps, anchor))
    used = [0.5 * 2.0, -0.3 * -1.0, (0.3 + math.log(RATIO_FLOOR)) * -3.0, -4.6 * 1.0]
    assert loss.item() == pytest.approx(-sum(used) / 4, abs=1e-12)


def test_near_theta_it_is_the_maml_rl_surrogate() -> None:
    """Every ratio above the floor: same value, gradient and Hessian-vector product as the
    MAML-RL surrogate, at theta and at a point moved a little from it."""
    policy, theta, batch = _policy_and_batch()
    stacked = per_task(theta, N)
    anchored = anchored_batch(policy, theta, batch)
    floored, plain = floored_surrogate_loss(policy), reinforce_loss(policy)
    g = torch.Generator().manual_seed(5)
    moved = {k: v + 0.01 * torch.randn(v.shape, generator=g, dtype=v.dtype)
             for k, v in stacked.items()}
    direction = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in theta.items()}
    for point in (stacked, moved):
        assert torch.allclose(floored(point, anchored), plain(point, batch), atol=1e-12)

        def grad_of(loss, data):
            return torch.func.grad(lambda p: loss(p, data).sum())

        for name in theta:
            assert torch.allclose(grad_of(floored, anchored)(point)[name],
                                  grad_of(plain, batch)(point)[name], atol=1e-12)
        tangent = per_task(direction, N)
        hv_floored = torch.func.jvp(grad_of(floored, anchored), (point,), (tangent,))[1]
        hv_plain = torch.func.jvp(grad_of(plain, batch), (point,), (tangent,))[1]
        for name in theta:
            assert torch.allclose(hv_floored[name], hv_plain[name], atol=1e-10)


def test_bounded_below_where_the_reinforce_surrogate_is_not() -> None:
    """Every advantage negative and the standard deviation shrinking (mean fixed): the MAML-RL
    surrogate sum |A| log pi goes to minus infinity; the floored loss stays above
    mean |A| log(floor pi_theta)."""
    policy, theta, batch = _policy_and_batch()
    negative = batch._replace(advantages=-batch.advantages.abs())
    anchored = anchored_batch(policy, theta, negative)
    bound = (negative.advantages.abs() * (anchored.anchor_log_prob + math.log(RATIO_FLOOR))
             ).mean(-1)
    sharp = dict(theta, log_std=torch.full((ACT,), -30.0, dtype=torch.float64))
    floored = floored_surrogate_loss(policy)(per_task(sharp, N), anchored)
    assert torch.allclose(floored, bound, atol=1e-12)  # every action is at the floor
    assert bool((reinforce_loss(policy)(per_task(sharp, N), negative) < -1e20).all())


def test_proximal_solve_of_a_sharp_policy_stays_finite() -> None:
    """From a sharpened policy (std e^-3) with a generous rate, the proximal solve on the
    floored loss ends finite, below where it started and above the loss's lower bound, while on
    the MAML-RL surrogate the proximal objective keeps falling."""
    policy, theta, batch = _policy_and_batch(log_std=-3.0)
    anchored = anchored_batch(policy, theta, batch)

    def objective(loss, params, data):
        prox = sum((params[k] - theta[k]).flatten(1).square().sum(1) for k in theta)
        return loss(params, data) + prox  # lambda / 2 = 1

    floored_loss = floored_surrogate_loss(policy)
    floored = proximal_adapt(floored_loss, theta, anchored, 2.0, 0.5, 200)
    assert all(bool(torch.isfinite(v).all()) for v in floored.adapted.values())
    end = objective(floored_loss, floored.adapted, anchored)
    assert bool((end < objective(floored_loss, per_task(theta, N), anchored)).all())
    assert bool((end > -1e3).all())  # bounded, where the plain surrogate's falls past -1e3
    plain_loss = reinforce_loss(policy)
    plain = proximal_adapt(plain_loss, theta, batch, 2.0, 0.5, 200)
    assert bool((objective(plain_loss, plain.adapted, batch) < -1e3).any())  # keeps descending


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
