"""Nichol, Achiam & Schulman's Taylor analysis of MAML, FOMAML and Reptile (arXiv:1803.02999,
Sec. 5.1), checked numerically for k = 2 inner SGD steps (float64).

Notation of the paper. Each task tau comes with a distribution over minibatch losses; step j
uses its own minibatch loss L_j (j = 1, 2), drawn i.i.d. within the task. theta = phi_1,
phi_2 = phi_1 - alpha L_1'(phi_1), phi_3 = phi_2 - alpha L_2'(phi_2). At theta:
gbar_j = L_j'(theta), Hbar_j = L_j''(theta),

    AvgGrad      = E_{tau,1}[gbar_1],
    AvgGradInner = E_{tau,1,2}[Hbar_2 gbar_1] = 1/2 grad_theta E_{tau,1,2}[gbar_1 . gbar_2]

(the second form because 1 and 2 are exchangeable). The three estimators are

    g_MAML    = d/dtheta L_2(phi_2(theta)): the MAML objective with one inner step on L_1 and the
                query loss L_2 (the paper's "L_k(phi_k)" with k = 2), differentiated through
                the step: metarl.core.maml.meta_gradient, supports = [step-1 data], query = step-2
                data, first_order=False;
    g_FOMAML  = L_2'(phi_2): the same with first_order=True;
    g_Reptile = (phi_1 - phi_3) / alpha = g_1 + g_2: metarl.core.reptile.reptile_direction with
                supports = [step-1 data, step-2 data], divided by alpha;

and their expectations expand as

    E[g_MAML]    = AvgGrad - 2 alpha AvgGradInner + O(alpha^2),
    E[g_FOMAML]  = AvgGrad -   alpha AvgGradInner + O(alpha^2),
    E[g_Reptile] = 2 AvgGrad - alpha AvgGradInner + O(alpha^2).

The expectations are exact by construction: a finite set of tasks, each with two minibatch losses
a and b, and every ordered pair (a, a), (a, b), (b, a), (b, b) as the (step 1, step 2) draw, so
the mean over all draws is the expectation over i.i.d. minibatches and 1 and 2 are exchangeable.
The errors must then shrink like alpha^2: about 4x per halving of alpha.

On quadratic minibatch losses L(phi) = 1/2 (phi - c)^T A (phi - c) the Hessians are constant, so
the FOMAML and Reptile expansions are exact (their O(alpha^2) terms vanish) and only MAML keeps
the term alpha^2 E[Hbar_1 Hbar_2 gbar_1]. A quartic term gamma / 4 sum_j (phi - c)_j^4 makes the
Hessian vary with phi, so every estimator has a genuine alpha^2 error. (Reptile's error then
equals FOMAML's: g_Reptile - g_FOMAML = g_1 = gbar_1 exactly, whose mean is AvgGrad.)
"""

from collections.abc import Callable

import pytest
import torch

from metarl.core.adaptation import per_task
from metarl.core.linalg import Params
from metarl.core.maml import meta_gradient
from metarl.core.reptile import reptile_direction

D, TASKS = 3, 8
Data = tuple[torch.Tensor, torch.Tensor]
ALPHAS = (0.01, 0.005, 0.0025)
GAMMA = 0.1  # the quartic term's weight


def _loss(gamma: float) -> Callable[[Params, Data], torch.Tensor]:
    def loss(params: Params, data: Data) -> torch.Tensor:
        a, c = data
        x = params["theta"] - c
        quadratic = 0.5 * (x * (a @ x.unsqueeze(-1)).squeeze(-1)).sum(-1)
        return quadratic + 0.25 * gamma * x.pow(4).sum(-1)

    return loss


def _draws() -> tuple[Data, Data, torch.Tensor]:
    """Step-1 and step-2 data of every (task, ordered minibatch pair) draw, and theta."""
    g = torch.Generator().manual_seed(0)
    centre = torch.randn(TASKS, 1, D, generator=g, dtype=torch.float64)
    m = torch.randn(TASKS, 2, D, D, generator=g, dtype=torch.float64)
    a = m @ m.transpose(-1, -2) / D + 0.5 * torch.eye(D, dtype=torch.float64)
    c = centre + 0.5 * torch.randn(TASKS, 2, D, generator=g, dtype=torch.float64)
    first = torch.tensor([0, 0, 1, 1])
    second = torch.tensor([0, 1, 0, 1])
    step1 = (a[:, first].reshape(-1, D, D), c[:, first].reshape(-1, D))
    step2 = (a[:, second].reshape(-1, D, D), c[:, second].reshape(-1, D))
    theta = torch.randn(D, generator=g, dtype=torch.float64)
    return step1, step2, theta


def _avg_grad_and_inner(loss: Callable[[Params, Data], torch.Tensor], step1: Data,
                        step2: Data, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """AvgGrad = E[gbar_1] and AvgGradInner = E[Hbar_2 gbar_1], by autograd at theta."""
    stacked = per_task({"theta": theta}, step1[1].shape[0])

    def gradient(data: Data) -> Callable[[Params], Params]:
        return torch.func.grad(lambda p: loss(p, data).sum())

    gbar1 = gradient(step1)(stacked)
    # Hbar_2 gbar_1 = grad_theta (gbar_2(theta) . gbar_1), gbar_1 held fixed (Hbar_2 symmetric).
    hessian_times_g1 = torch.func.grad(
        lambda p: (gradient(step2)(p)["theta"] * gbar1["theta"]).sum()
    )(stacked)
    return gbar1["theta"].mean(0), hessian_times_g1["theta"].mean(0)


def _estimators(loss: Callable[[Params, Data], torch.Tensor], step1: Data, step2: Data,
                theta: torch.Tensor, alpha: float) -> dict[str, torch.Tensor]:
    params = {"theta": theta}
    _, maml = meta_gradient(loss, loss, params, [step1], step2, alpha, first_order=False)
    _, fomaml = meta_gradient(loss, loss, params, [step1], step2, alpha, first_order=True)
    _, reptile = reptile_direction(loss, params, [step1, step2], alpha)
    return {"maml": maml["theta"], "fomaml": fomaml["theta"],
            "reptile": reptile["theta"] / alpha}


def _expansions(avg_grad: torch.Tensor, avg_grad_inner: torch.Tensor,
                alpha: float) -> dict[str, torch.Tensor]:
    return {
        "maml": avg_grad - 2 * alpha * avg_grad_inner,
        "fomaml": avg_grad - alpha * avg_grad_inner,
        "reptile": 2 * avg_grad - alpha * avg_grad_inner,
    }


def test_avg_grad_inner_is_half_the_gradient_of_the_gradient_inner_product() -> None:
    loss = _loss(GAMMA)
    step1, step2, theta = _draws()
    _, inner = _avg_grad_and_inner(loss, step1, step2, theta)

    def mean_inner_product(t: torch.Tensor) -> torch.Tensor:
        stacked = per_task({"theta": t}, step1[1].shape[0])
        g1 = torch.func.grad(lambda p: loss(p, step1).sum())(stacked)["theta"]
        g2 = torch.func.grad(lambda p: loss(p, step2).sum())(stacked)["theta"]
        return (g1 * g2).sum(-1).mean()

    assert torch.allclose(inner, 0.5 * torch.func.grad(mean_inner_product)(theta), atol=1e-12)


def test_avg_grad_inner_matches_the_quadratic_closed_form() -> None:
    step1, step2, theta = _draws()
    _, inner = _avg_grad_and_inner(_loss(0.0), step1, step2, theta)
    (a1, c1), (a2, _) = step1, step2
    expected = (a2 @ a1 @ (theta - c1).unsqueeze(-1)).squeeze(-1).mean(0)
    assert torch.allclose(inner, expected, atol=1e-12)


@pytest.mark.parametrize("gamma", [0.0, GAMMA], ids=["quadratic", "quartic"])
def test_expected_estimators_match_their_expansions(gamma: float) -> None:
    loss = _loss(gamma)
    step1, step2, theta = _draws()
    avg_grad, avg_grad_inner = _avg_grad_and_inner(loss, step1, step2, theta)
    errors: dict[str, list[float]] = {"maml": [], "fomaml": [], "reptile": []}
    for alpha in ALPHAS:
        got = _estimators(loss, step1, step2, theta, alpha)
        expected = _expansions(avg_grad, avg_grad_inner, alpha)
        for name in errors:
            errors[name].append(float((got[name] - expected[name]).norm()))
    scale = float(avg_grad.norm())
    for name, errs in errors.items():
        if gamma == 0.0 and name != "maml":
            # Constant Hessians: the expansion is exact.
            assert max(errs) < 1e-12 * scale, (name, errs)
            continue
        assert errs[0] > 1e-8 * scale, (name, errs)
        for big, small in zip(errs, errs[1:]):
            assert 3.7 < big / small < 4.3, (name, errs)  # O(alpha^2)


def test_wrong_inner_coefficients_leave_first_order_errors() -> None:
    """The check above can tell the coefficients apart: swapping MAML's 2 alpha for FOMAML's
    alpha (and the reverse) leaves an O(alpha) error that halves with alpha."""
    loss = _loss(GAMMA)
    step1, step2, theta = _draws()
    avg_grad, avg_grad_inner = _avg_grad_and_inner(loss, step1, step2, theta)
    for name, wrong in (("maml", "fomaml"), ("fomaml", "maml")):
        errs = []
        for alpha in ALPHAS:
            got = _estimators(loss, step1, step2, theta, alpha)[name]
            errs.append(float((got - _expansions(avg_grad, avg_grad_inner, alpha)[wrong]).norm()))
        for big, small in zip(errs, errs[1:]):
            assert 1.8 < big / small < 2.2, (name, errs)
