import math

import pytest
import torch

from metarl.core.adam import adam_init, adam_step
from metarl.core.linalg import flatten, unflatten
from metarl.core.trpo import trpo_step

# A problem with known geometry: loss(theta) = g^T theta and KL(theta) = 1/2 d^T F d, d = theta - 0
F = torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=torch.float64)
G = torch.tensor([1.0, -2.0], dtype=torch.float64)


def _loss_and_kl(params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    d = params["w"]
    return G @ d, 0.5 * d @ F @ d


def _start() -> dict[str, torch.Tensor]:
    return {"w": torch.zeros(2, dtype=torch.float64)}


def test_trpo_full_step_is_the_natural_gradient_scaled_to_the_bound() -> None:
    def loss_and_kl(params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        loss, kl = _loss_and_kl(params)
        return loss, 0.9 * kl  # slightly below the quadratic model: the full step is accepted

    result = trpo_step(_start(), G, 0.0, lambda v: F @ v, loss_and_kl, max_kl=0.01, cg_iters=2)
    assert result.accepted and result.line_search_steps == 1
    # closed form: the natural-gradient step scaled to KL = max_kl
    natural = torch.linalg.solve(F, -G)
    expected = natural * math.sqrt(2 * 0.01 / (natural @ F @ natural))
    assert torch.allclose(result.params["w"], expected, atol=1e-10)
    assert result.kl <= 0.01 and result.loss_after < result.loss_before


def test_trpo_backtracks_until_the_measured_kl_is_within_bound() -> None:
    # the true KL is 4x the quadratic model, so the full step violates the bound
    def loss_and_kl(params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        loss, kl = _loss_and_kl(params)
        return loss, 4 * kl

    result = trpo_step(_start(), G, 0.0, lambda v: F @ v, loss_and_kl, max_kl=0.01,
                       cg_iters=2, ls_backtrack=0.8, ls_max_steps=15)
    assert result.accepted and result.line_search_steps > 1
    assert result.kl <= 0.01
    _, kl_of_result = loss_and_kl(result.params)
    assert kl_of_result.item() <= 0.01


def test_trpo_step_reaches_the_bound_when_cg_stops_early() -> None:
    """With CG stopped before it converges, the step x (CG's iterate) is still scaled to
    0.5 x^T F x = max_kl: the curvature read from CG's residual is that of x itself."""
    g = torch.Generator().manual_seed(0)
    root = torch.randn(6, 6, generator=g, dtype=torch.float64)
    fisher = root @ root.T + 0.5 * torch.eye(6, dtype=torch.float64)
    gradient = torch.randn(6, generator=g, dtype=torch.float64)
    products = []

    def product(v: torch.Tensor) -> torch.Tensor:
        products.append(v)
        return fisher @ v

    def linear(params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        d = params["w"]
        return gradient @ d, torch.zeros((), dtype=torch.float64)

    start = {"w": torch.zeros(6, dtype=torch.float64)}
    result = trpo_step(start, gradient, 0.0, product, linear, max_kl=0.01, cg_iters=2)
    step = result.params["w"]
    assert result.accepted and result.line_search_steps == 1
    assert result.cg_residual > 1e-3  # CG did stop early
    assert float(0.5 * step @ fisher @ step) == pytest.approx(0.01, rel=1e-10)
    assert len(products) == 2  # CG's two products, none more


def test_failed_line_search_returns_the_original_parameters() -> None:
    start = {"w": torch.tensor([0.5, -0.5], dtype=torch.float64)}

    def never_better(params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(1.0), torch.tensor(0.0)

    result = trpo_step(start, G, 0.0, lambda v: F @ v, never_better, ls_max_steps=5)
    assert not result.accepted
    assert result.line_search_steps == 5
    assert torch.equal(result.params["w"], torch.tensor([0.5, -0.5], dtype=torch.float64))
    assert torch.equal(start["w"], torch.tensor([0.5, -0.5], dtype=torch.float64))


def test_adam_matches_torch_optim() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, generator=g, dtype=torch.float64)
    reference = w.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([reference], lr=0.01)
    params, state = {"w": w}, adam_init({"w": w})
    for _ in range(5):
        grad = torch.randn(3, generator=g, dtype=torch.float64)
        params, state = adam_step(params, {"w": grad}, state, lr=0.01)
        optimizer.zero_grad()
        reference.grad = grad.clone()
        optimizer.step()
    assert torch.allclose(params["w"], reference.detach(), atol=1e-12)


def test_flatten_matches_unflatten_layout_used_by_trpo() -> None:
    params = {"a": torch.zeros(2, 2), "b": torch.zeros(3)}
    step = unflatten(torch.arange(7.0), params)
    assert torch.equal(flatten(step), torch.arange(7.0))
