"""iMAML against closed forms on quadratic tasks (float64).

For L_i(phi) = 1/2 (phi - c_i)^T A_i (phi - c_i) the proximal inner problem has the solution
phi*_i = (A_i + lambda I)^-1 (A_i c_i + lambda theta), with d phi*_i / d theta =
lambda (A_i + lambda I)^-1 = (I + A_i / lambda)^-1, so the iMAML gradient of a query loss Q_i is
lambda (A_i + lambda I)^-1 grad Q_i(phi*_i) (Rajeswaran et al. 2019, arXiv:1909.04630, Lemma 1).
The parameters are split over two named tensors, a 2 x 2 matrix and a 2-vector, so that the
per-task flattening is exercised.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch

from metarl.core import imaml
from metarl.core.imaml import imaml_gradient, proximal_adapt

D, N, LAMBDA = 6, 4, 2.0
Data = tuple[torch.Tensor, torch.Tensor]


def _vector(params: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([params["w"].flatten(-2), params["b"]], -1)


def _params(vector: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"w": vector[:4].reshape(2, 2), "b": vector[4:]}


def _loss(params: dict[str, torch.Tensor], data: Data) -> torch.Tensor:
    a, c = data
    x = _vector(params) - c
    return 0.5 * (x * (a @ x.unsqueeze(-1)).squeeze(-1)).sum(-1)


def _tasks(seed: int, n: int = N, shift: float = 0.3) -> Data:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n, D, D, generator=g, dtype=torch.float64)
    a = m @ m.transpose(1, 2) / D + shift * torch.eye(D, dtype=torch.float64)
    return a, torch.randn(n, D, generator=g, dtype=torch.float64)


def _theta() -> torch.Tensor:
    return torch.randn(D, generator=torch.Generator().manual_seed(7), dtype=torch.float64)


def _proximal_minimiser(support: Data, theta: torch.Tensor) -> torch.Tensor:
    a, c = support
    eye = torch.eye(D, dtype=torch.float64)
    rhs = (a @ c.unsqueeze(-1)).squeeze(-1) + LAMBDA * theta
    return torch.linalg.solve(a + LAMBDA * eye, rhs)


def _implicit_gradients(support: Data, query: Data, theta: torch.Tensor,
                        damping: float = 0.0) -> torch.Tensor:
    """Per task ((1 + damping) I + A_i / lambda)^-1 grad Q_i(phi*_i), shape [N, D]."""
    a, _ = support
    aq, cq = query
    phi = _proximal_minimiser(support, theta)
    g = (aq @ (phi - cq).unsqueeze(-1)).squeeze(-1)
    eye = torch.eye(D, dtype=torch.float64)
    return torch.linalg.solve((1 + damping) * eye + a / LAMBDA, g)


def _inner_lr(support: Data) -> float:
    # 1 / (lambda + largest curvature): gradient descent contracts every direction.
    return 1.0 / (LAMBDA + float(torch.linalg.eigvalsh(support[0]).max()))


def test_inner_solution_is_the_proximal_minimiser() -> None:
    support, theta = _tasks(0), _theta()
    result = proximal_adapt(_loss, _params(theta), support, LAMBDA, _inner_lr(support), 400)
    assert result.steps == 400
    assert torch.allclose(_vector(result.adapted), _proximal_minimiser(support, theta),
                          atol=1e-10)
    assert result.grad_norm.shape == (N,)
    assert float(result.grad_norm.max()) < 1e-9


def test_inner_tol_stops_early_per_task() -> None:
    support, theta = _tasks(0), _theta()
    result = proximal_adapt(_loss, _params(theta), support, LAMBDA, _inner_lr(support), 400,
                            inner_tol=1e-6)
    assert 0 < result.steps < 400
    assert float(result.grad_norm.max()) < 1e-6
    # Zero steps leave phi at theta with the support gradient as the proximal gradient.
    start = proximal_adapt(_loss, _params(theta), support, LAMBDA, 0.1, 0)
    a, c = support
    expected = (a @ (theta - c).unsqueeze(-1)).squeeze(-1).norm(dim=1)
    assert start.steps == 0
    assert torch.allclose(start.grad_norm, expected)


def test_too_large_rate_is_halved_not_diverging() -> None:
    """At 5x the stable rate fixed-step descent would multiply the error along the stiffest
    direction by |1 - 5 * 2 * ...| > 1 every step; the safeguard halves a task's rate whenever
    its proximal objective would rise, so it still reaches the minimiser, and a task whose
    rate was stable (task 0 here, already at the minimiser) is untouched."""
    support, theta = _tasks(0), _theta()
    a, c = support
    c = c.clone()
    c[0] = theta  # task 0 starts at its minimiser: every step of it is a null step
    stable = _inner_lr(support)
    result = proximal_adapt(_loss, _params(theta), (a, c), LAMBDA, 5 * stable, 400)
    assert torch.isfinite(_vector(result.adapted)).all()
    assert torch.allclose(_vector(result.adapted), _proximal_minimiser((a, c), theta),
                          atol=1e-8)
    assert torch.equal(_vector(result.adapted)[0], theta)
    # The objective never rises, step by step.
    values = []
    for steps in range(8):
        phi = _vector(proximal_adapt(_loss, _params(theta), (a, c), LAMBDA, 5 * stable,
                                     steps).adapted)
        x = phi - c
        support_loss = 0.5 * (x * (a @ x.unsqueeze(-1)).squeeze(-1)).sum(-1)
        values.append(support_loss + 0.5 * LAMBDA * (phi - theta).square().sum(1))
    assert all(bool((later <= earlier + 1e-12).all())
               for earlier, later in zip(values, values[1:]))


@pytest.mark.parametrize("damping", [0.0, 0.5])
def test_gradient_matches_closed_form(damping: float) -> None:
    support, query, theta = _tasks(0), _tasks(1), _theta()
    loss, grads, info = imaml_gradient(
        _loss, _loss, _params(theta), support, query, LAMBDA, _inner_lr(support),
        inner_steps=400, cg_iters=3 * D, cg_damping=damping, cg_tol=1e-28,
    )
    expected = _implicit_gradients(support, query, theta, damping).mean(0)
    assert torch.allclose(_vector(grads), expected, atol=1e-10)
    phi = _proximal_minimiser(support, theta)
    assert torch.allclose(loss, _query_loss(phi, query), atol=1e-12)
    assert info["outer/cg_iterations"] <= D + 1
    assert info["outer/cg_residual_max"] < 1e-12
    assert info["inner/grad_norm_max"] < 1e-9
    assert info["inner/steps"] == 400


def _query_loss(phi: torch.Tensor, query: Data) -> torch.Tensor:
    aq, cq = query
    x = phi - cq
    return (0.5 * (x * (aq @ x.unsqueeze(-1)).squeeze(-1)).sum(-1)).mean()


def test_damping_differs_from_undamped_solve() -> None:
    support, query, theta = _tasks(0), _tasks(1), _theta()
    kwargs = dict(inner_steps=400, cg_iters=3 * D, cg_tol=1e-28)
    _, plain, _ = imaml_gradient(_loss, _loss, _params(theta), support, query, LAMBDA,
                                 _inner_lr(support), **kwargs)  # type: ignore[arg-type]
    _, damped, _ = imaml_gradient(_loss, _loss, _params(theta), support, query, LAMBDA,
                                  _inner_lr(support), cg_damping=1.0,
                                  **kwargs)  # type: ignore[arg-type]
    assert (_vector(plain) - _vector(damped)).abs().max() > 1e-3


def test_tasks_are_solved_independently() -> None:
    """Per-task CG step sizes and per-task early stopping: solving the tasks together gives
    the mean of solving each alone, even with too few CG iterations to converge."""
    support, query, theta = _tasks(0, n=2), _tasks(1, n=2), _theta()
    assert (support[0][0] - support[0][1]).abs().max() > 0.1
    kwargs = dict(prox_lambda=LAMBDA, inner_lr=_inner_lr(support), inner_steps=300,
                  cg_iters=2, inner_tol=1e-4)
    _, joint, _ = imaml_gradient(_loss, _loss, _params(theta), support, query,
                                 **kwargs)  # type: ignore[arg-type]
    alone = []
    for i in range(2):
        one = tuple(x[i : i + 1] for x in support), tuple(x[i : i + 1] for x in query)
        _, g, _ = imaml_gradient(_loss, _loss, _params(theta), *one,
                                 **kwargs)  # type: ignore[arg-type]
        alone.append(_vector(g))
    assert torch.allclose(_vector(joint), (alone[0] + alone[1]) / 2, atol=1e-12)
    # With enough iterations each task gets its own closed-form answer.
    exact = _implicit_gradients(support, query, theta)
    assert (exact[0] - exact[1]).abs().max() > 0.1
    for i in range(2):
        one = tuple(x[i : i + 1] for x in support), tuple(x[i : i + 1] for x in query)
        _, g, _ = imaml_gradient(_loss, _loss, _params(theta), *one, LAMBDA,
                                 _inner_lr(support), 400, cg_iters=3 * D, cg_tol=1e-28)
        assert torch.allclose(_vector(g), exact[i], atol=1e-10)


def test_chunks_of_tasks_give_the_unchunked_gradient() -> None:
    """``chunk_size`` tasks are solved at a time (5 tasks in chunks of 2, 2 and 1): the loss,
    gradient and metrics are those of all tasks at once, and the closed form's."""
    support, query, theta = _tasks(0, n=5), _tasks(1, n=5), _theta()
    seen: list[int] = []

    def counting(params: dict[str, torch.Tensor], data: Data) -> torch.Tensor:
        seen.append(data[0].shape[0])
        return _loss(params, data)

    kwargs: dict[str, Any] = dict(prox_lambda=LAMBDA, inner_lr=_inner_lr(support),
                                  inner_steps=400, cg_iters=3 * D, cg_tol=1e-28)
    loss, grads, info = imaml_gradient(counting, counting, _params(theta), support, query,
                                       chunk_size=2, **kwargs)
    assert seen and max(seen) == 2 and min(seen) == 1
    whole_loss, whole, whole_info = imaml_gradient(_loss, _loss, _params(theta), support, query,
                                                   **kwargs)
    assert torch.allclose(_vector(grads), _vector(whole), atol=1e-13, rtol=0)
    assert torch.allclose(loss, whole_loss, atol=1e-13, rtol=0)
    assert info.keys() == whole_info.keys()
    for key in info:
        assert info[key] == pytest.approx(whole_info[key], rel=1e-9, abs=1e-14), key
    expected = _implicit_gradients(support, query, theta).mean(0)
    assert torch.allclose(_vector(grads), expected, atol=1e-10)
    assert torch.allclose(loss, _query_loss(_proximal_minimiser(support, theta), query),
                          atol=1e-12)


def test_no_graph_is_kept() -> None:
    """The inner loop differentiates nothing through its steps: the adapted parameters do not
    depend on theta in autograd's eyes, so no graph (whose size would grow with inner_steps)
    survives, and the whole computation gives the same answer under torch.no_grad."""
    support, query, theta = _tasks(0), _tasks(1), _theta()
    params = {k: v.clone().requires_grad_(True) for k, v in _params(theta).items()}
    inner = proximal_adapt(_loss, params, support, LAMBDA, _inner_lr(support), 50)
    for v in inner.adapted.values():
        assert v.grad_fn is None and not v.requires_grad
    loss, grads, _ = imaml_gradient(_loss, _loss, params, support, query, LAMBDA,
                                    _inner_lr(support), 50, cg_iters=D)
    assert loss.grad_fn is None
    assert all(g.grad_fn is None and not g.requires_grad for g in grads.values())
    with torch.no_grad():
        loss_ng, grads_ng, _ = imaml_gradient(_loss, _loss, params, support, query, LAMBDA,
                                              _inner_lr(support), 50, cg_iters=D)
    assert torch.equal(loss, loss_ng)
    assert all(torch.equal(grads[k], grads_ng[k]) for k in grads)


def test_inner_loop_memory_does_not_grow_with_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """iMAML's point: memory flat in inner_steps. The descent may hold the current and the
    last accepted point, never every iterate; counted as live solution objects at each step."""

    class Counted(imaml.ProximalSolution):
        __slots__ = ()
        live = 0

        def __new__(cls, *fields: Any) -> Counted:
            Counted.live += 1
            return super().__new__(cls, *fields)

        def __del__(self) -> None:
            Counted.live -= 1

    seen: list[int] = []

    def counting_loss(params: dict[str, torch.Tensor], data: Data) -> torch.Tensor:
        seen.append(Counted.live)
        return _loss(params, data)

    monkeypatch.setattr(imaml, "ProximalSolution", Counted)
    support = _tasks(0)
    proximal_adapt(counting_loss, _params(_theta()), support, LAMBDA, _inner_lr(support), 30)
    assert len(seen) == 31 and max(seen) <= 2, seen


def test_indefinite_hessian_needs_damping() -> None:
    """A support Hessian with an eigenvalue below -lambda makes I + H / lambda indefinite;
    CG warns and stops before stepping along the negative curvature (here at once, answering
    the query gradient itself rather than the exact solve's -2 e_0, an ascent direction), and
    damping (1 + d) I + H / lambda restores a positive definite system."""
    eye = torch.eye(D, dtype=torch.float64)
    a = eye.clone()
    a[0, 0] = -1.5 * LAMBDA
    support = (a.expand(1, D, D), torch.zeros(1, D, dtype=torch.float64))
    query = (eye.expand(1, D, D), -eye[:1])  # grad Q(theta) = e_0, the negative direction
    theta = torch.zeros(D, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="positive definite"):
        _, truncated, info = imaml_gradient(_loss, _loss, _params(theta), support, query,
                                            LAMBDA, 0.1, 0, cg_iters=D)
    assert torch.equal(_vector(truncated), eye[0])
    assert info["outer/cg_iterations"] == 0
    # the residual reported is that of the answer: |e_0 - (I + A / lambda) e_0| = 1.5
    assert info["outer/cg_residual"] == pytest.approx(1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, grads, _ = imaml_gradient(_loss, _loss, _params(theta), support, query, LAMBDA,
                                     0.1, 0, cg_iters=D, cg_damping=1.0, cg_tol=1e-28)
    expected = torch.linalg.solve(2.0 * eye + a / LAMBDA, eye[0])
    assert torch.allclose(_vector(grads), expected, atol=1e-12)


@pytest.mark.parametrize(
    "override",
    [{"prox_lambda": 0.0}, {"inner_lr": -1.0}, {"inner_steps": -1}, {"cg_iters": 0},
     {"cg_damping": -0.1}, {"inner_tol": 0.0}, {"chunk_size": -1}],
)
def test_bad_arguments_are_rejected(override: dict[str, float]) -> None:
    support, theta = _tasks(0), _theta()
    kwargs: dict[str, float] = dict(prox_lambda=LAMBDA, inner_lr=0.1, inner_steps=1,
                                    cg_iters=2, cg_damping=0.0)
    kwargs.update(override)
    name = next(iter(override))
    with pytest.raises(ValueError, match=name):
        imaml_gradient(_loss, _loss, _params(theta), support, support,
                       **kwargs)  # type: ignore[arg-type]
