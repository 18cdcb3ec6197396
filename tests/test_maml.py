"""MAML and FOMAML meta-gradients against closed forms on quadratic tasks (float64).

For L_i(theta) = 1/2 (theta - c_i)^T A (theta - c_i) and one inner step of rate alpha,
grad MAML = (I - alpha A) A (I - alpha A)(theta - c_i);
grad FOMAML = A (I - alpha A)(theta - c_i).
"""

import pytest
import torch

from metarl.core.adaptation import adapt, per_task
from metarl.core.episodes import StepBatch
from metarl.core.estimators import reinforce_loss
from metarl.core.maml import (
    QueryBatch,
    meta_gradient,
    surrogate_loss,
)
from metarl.core.policies import GaussianMLPPolicy

D, N, ALPHA = 4, 5, 0.1


def _quadratic_problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    m = torch.randn(D, D, generator=g, dtype=torch.float64)
    a = m @ m.T / D + 0.5 * torch.eye(D, dtype=torch.float64)
    centres = torch.randn(N, D, generator=g, dtype=torch.float64)
    theta = torch.randn(D, generator=g, dtype=torch.float64)
    return a, centres, theta


def _quadratic_loss(a: torch.Tensor):
    def loss(params: dict[str, torch.Tensor], centre: torch.Tensor) -> torch.Tensor:
        x = params["theta"] - centre
        return 0.5 * ((x @ a) * x).sum(-1)

    return loss


@pytest.mark.parametrize("mode", ["batched", "vmap", "loop"])
@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradient_matches_closed_form(mode: str, first_order: bool) -> None:
    a, centres, theta = _quadratic_problem()
    loss = _quadratic_loss(a)
    value, got = meta_gradient(loss, loss, {"theta": theta}, [centres], centres, ALPHA,
                               first_order, mode=mode, chunk_size=2)  # type: ignore[arg-type]
    b = torch.eye(D, dtype=torch.float64) - ALPHA * a
    left = a @ b if first_order else b @ a @ b
    expected = ((theta - centres) @ left.T).mean(0)
    assert torch.allclose(got["theta"], expected, atol=1e-12)
    x = (theta - centres) @ b.T  # the adapted parameters minus the centres
    assert torch.allclose(value, (0.5 * ((x @ a) * x).sum(-1)).mean(), atol=1e-12)


def test_two_inner_steps_match_closed_form() -> None:
    a, centres, theta = _quadratic_problem()
    loss = _quadratic_loss(a)
    _, got = meta_gradient(loss, loss, {"theta": theta}, [centres, centres], centres, ALPHA)
    b = torch.eye(D, dtype=torch.float64) - ALPHA * a
    expected = ((theta - centres) @ (b @ b @ a @ b @ b).T).mean(0)
    assert torch.allclose(got["theta"], expected, atol=1e-12)


def test_adapt_takes_per_step_learning_rates() -> None:
    a, centres, theta = _quadratic_problem()
    loss = _quadratic_loss(a)
    adapted = adapt(loss, per_task({"theta": theta}, N), [centres, centres], [0.1, 0.05])
    x = theta - centres
    x = x - 0.1 * x @ a
    x = x - 0.05 * x @ a
    assert torch.allclose(adapted["theta"], centres + x)
    with pytest.raises(ValueError, match="learning rates"):
        adapt(loss, {"theta": theta}, [centres], [0.1, 0.2])


def test_rl_meta_gradient_is_the_same_batched_vmapped_and_looped() -> None:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, (8, 8)).double()
    params = policy.initial_params()
    g = torch.Generator().manual_seed(1)
    n, m = 4, 10

    def steps() -> StepBatch:
        return StepBatch(
            torch.randn(n, m, 2, generator=g, dtype=torch.float64),
            torch.randn(n, m, 2, generator=g, dtype=torch.float64),
            torch.randn(n, m, generator=g, dtype=torch.float64),
            torch.ones(n, m, dtype=torch.float64),
        )

    support, query_steps = steps(), steps()
    old = torch.randn(n, m, generator=g, dtype=torch.float64)
    query = QueryBatch(query_steps, (torch.zeros(n, m, 2), torch.zeros(n, 1, 2)), old)
    results = {
        (mode, chunk): meta_gradient(reinforce_loss(policy), surrogate_loss(policy), params,
                                     [support], query, 0.1, mode=mode,  # type: ignore[arg-type]
                                     chunk_size=chunk)
        for mode, chunk in (("batched", None), ("batched", 3), ("vmap", 3), ("loop", None))
    }
    loss, grads = results[("loop", None)]
    assert any(grads[k].abs().max() > 1e-3 for k in params)
    for other_loss, other in results.values():
        assert torch.allclose(other_loss, loss, atol=1e-12)
        for name in params:
            assert torch.allclose(other[name], grads[name], atol=1e-12)


def test_unknown_mode_is_rejected() -> None:
    a, centres, theta = _quadratic_problem()
    loss = _quadratic_loss(a)
    with pytest.raises(ValueError, match="mode"):
        meta_gradient(loss, loss, {"theta": theta}, [centres], centres, ALPHA,
                      mode="fast")  # type: ignore[arg-type]
