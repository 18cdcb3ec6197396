"""Meta-gradient estimators: same adaptation step, different curvature (float64)."""

import pytest
import torch

from metarl.episodes import StepBatch
from metarl.linalg import flatten, unflatten
from metarl.maml import inner_loss_for
from metarl.policies import GaussianMLPPolicy


def _problem() -> tuple[GaussianMLPPolicy, dict[str, torch.Tensor], StepBatch]:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, (4,), init_log_std=-0.5).double()
    g = torch.Generator().manual_seed(1)
    m = 7
    batch = StepBatch(
        torch.randn(m, 2, generator=g, dtype=torch.float64),
        torch.randn(m, 2, generator=g, dtype=torch.float64),
        torch.randn(m, generator=g, dtype=torch.float64),
        torch.tensor([1.0, 1, 1, 1, 1, 0, 1], dtype=torch.float64),
    )
    return policy, policy.initial_params(), batch


def test_estimators_share_value_and_gradient() -> None:
    policy, params, batch = _problem()
    values = {}
    grads = {}
    for name in ("maml", "lvc"):
        loss = inner_loss_for(policy, name)
        values[name] = loss(params, batch)
        grads[name] = flatten(torch.func.grad(lambda p, loss=loss: loss(p, batch))(params))
    # the LVC loss is -mean(A) at the point (ratio 1), the REINFORCE loss -mean(log pi A):
    # different values, but the same gradient, so the adaptation step is the same
    assert torch.allclose(grads["maml"], grads["lvc"], atol=1e-12)
    assert values["lvc"] == pytest.approx(-(batch.advantages * batch.mask).sum().item() / 6)


def test_lvc_hessian_adds_the_score_outer_product_term() -> None:
    policy, params, batch = _problem()
    theta = flatten(params)

    def as_fn(name: str):
        loss = inner_loss_for(policy, name)
        return lambda flat: loss(unflatten(flat, params), batch)

    h_maml = torch.autograd.functional.hessian(as_fn("maml"), theta)
    h_lvc = torch.autograd.functional.hessian(as_fn("lvc"), theta)
    scores = torch.autograd.functional.jacobian(
        lambda flat: policy.log_prob(unflatten(flat, params), batch.observations, batch.actions),
        theta,
    )  # [M, P]: grad log pi of every step
    weights = batch.advantages * batch.mask / batch.mask.sum()
    expected_extra = -(scores.T * weights) @ scores
    assert torch.allclose(h_lvc - h_maml, expected_extra, atol=1e-10)
    assert expected_extra.abs().max() > 1e-3


def test_unknown_estimator() -> None:
    policy, _, _ = _problem()
    with pytest.raises(ValueError, match="estimator"):
        inner_loss_for(policy, "dice2")
