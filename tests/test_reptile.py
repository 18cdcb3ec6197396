"""Reptile directions against closed forms on quadratic tasks (float64).

For L_i(theta) = 1/2 (theta - c_i)^T A (theta - c_i), k SGD steps of rate alpha on the same
data give theta - phi_i = alpha sum_{j<k} (I - alpha A)^j A (theta - c_i)
= (I - (I - alpha A)^k)(theta - c_i); one step gives alpha * grad L_i(theta).
"""

import pytest
import torch

from metarl.core.reptile import reptile_direction

D, N, ALPHA = 4, 5, 0.1


def _problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    m = torch.randn(D, D, generator=g, dtype=torch.float64)
    a = m @ m.T / D + 0.5 * torch.eye(D, dtype=torch.float64)
    centres = torch.randn(N, D, generator=g, dtype=torch.float64)
    theta = torch.randn(D, generator=g, dtype=torch.float64)
    return a, centres, theta


def _loss(a: torch.Tensor):
    def loss(params: dict[str, torch.Tensor], centre: torch.Tensor) -> torch.Tensor:
        x = params["theta"] - centre
        return 0.5 * ((x @ a) * x).sum(-1)

    return loss


def test_one_step_is_the_scaled_mean_gradient() -> None:
    a, centres, theta = _problem()
    loss, direction = reptile_direction(_loss(a), {"theta": theta}, [centres], ALPHA)
    expected = ALPHA * ((theta - centres) @ a).mean(0)
    assert torch.allclose(direction["theta"], expected, atol=1e-14)
    adapted = theta - ALPHA * (theta - centres) @ a
    assert torch.allclose(loss, _loss(a)({"theta": adapted}, centres).mean(), atol=1e-14)


@pytest.mark.parametrize("k", [2, 5])
def test_k_steps_match_the_closed_form_sum(k: int) -> None:
    a, centres, theta = _problem()
    _, direction = reptile_direction(_loss(a), {"theta": theta}, [centres] * k, ALPHA)
    contraction = torch.eye(D, dtype=torch.float64) - ALPHA * a
    series = sum(torch.linalg.matrix_power(contraction, j) for j in range(k))
    summed = ALPHA * ((theta - centres) @ (series @ a).T).mean(0)
    assert torch.allclose(direction["theta"], summed, atol=1e-14)
    telescoped = (torch.eye(D, dtype=torch.float64) - torch.linalg.matrix_power(contraction, k))
    assert torch.allclose(direction["theta"], ((theta - centres) @ telescoped.T).mean(0),
                          atol=1e-14)


def test_steps_use_their_own_data() -> None:
    a, centres, theta = _problem()
    other = torch.flip(centres, dims=[0])
    _, direction = reptile_direction(_loss(a), {"theta": theta}, [centres, other], ALPHA)
    phi = theta - ALPHA * (theta - centres) @ a
    phi = phi - ALPHA * (phi - other) @ a
    assert torch.allclose(direction["theta"], (theta - phi).mean(0), atol=1e-14)


def test_outer_gradient_step_is_the_reptile_update() -> None:
    a, centres, theta = _problem()
    _, direction = reptile_direction(_loss(a), {"theta": theta}, [centres] * 3, ALPHA)
    phi = theta
    for _ in range(3):
        phi = phi - ALPHA * (phi - centres) @ a
    eps = 0.3
    assert torch.allclose(theta - eps * direction["theta"],
                          theta + eps * (phi - theta).mean(0), atol=1e-14)


def test_adam_first_step_is_a_signed_step_and_moves_toward_the_optimum() -> None:
    a, centres, theta = _problem()
    loss_fn = _loss(a)
    # With beta1 = 0 the first Adam step is lr * g / (|g| + eps): nearly lr * sign(g).
    _, first = reptile_direction(loss_fn, {"theta": theta}, [centres], 0.01, optimizer="adam")
    grads = (theta - centres) @ a
    expected = (0.01 * grads / (grads.abs() + 1e-8)).mean(0)
    assert torch.allclose(first["theta"], expected, atol=1e-14)
    # Many Adam steps on one task bring phi close to the task's optimum c.
    one = centres[:1]
    before = float(loss_fn({"theta": theta}, one[0]))
    loss, direction = reptile_direction(loss_fn, {"theta": theta}, [one] * 200, 0.05,
                                        optimizer="adam")
    phi = theta - direction["theta"]
    assert float(loss) < 1e-2 * before
    assert (phi - one[0]).norm() < 0.1 * (theta - one[0]).norm()


def test_nothing_keeps_a_graph() -> None:
    a, centres, theta = _problem()
    params = {"theta": theta.clone().requires_grad_(True)}
    for optimizer in ("sgd", "adam"):
        loss, direction = reptile_direction(_loss(a), params, [centres] * 3, ALPHA,
                                            optimizer=optimizer)
        assert loss.grad_fn is None and direction["theta"].grad_fn is None


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_chunks_of_tasks_give_the_unchunked_direction(optimizer: str) -> None:
    """``chunk_size`` tasks adapt at a time (5 tasks in chunks of 2, 2 and 1), and the direction
    and loss are those of all tasks at once; with SGD, also the closed form above."""
    a, centres, theta = _problem()
    seen: list[int] = []

    def counting(params: dict[str, torch.Tensor], centre: torch.Tensor) -> torch.Tensor:
        seen.append(centre.shape[0])
        return _loss(a)(params, centre)

    k = 3
    loss, direction = reptile_direction(counting, {"theta": theta}, [centres] * k, ALPHA,
                                        optimizer, chunk_size=2)  # type: ignore[arg-type]
    assert seen and max(seen) == 2 and min(seen) == 1
    whole_loss, whole = reptile_direction(_loss(a), {"theta": theta}, [centres] * k, ALPHA,
                                          optimizer)  # type: ignore[arg-type]
    assert torch.allclose(direction["theta"], whole["theta"], atol=1e-14, rtol=0)
    assert torch.allclose(loss, whole_loss, atol=1e-14, rtol=0)
    if optimizer == "sgd":
        contraction = torch.eye(D, dtype=torch.float64) - ALPHA * a
        power = torch.linalg.matrix_power(contraction, k)
        phi = centres + (theta - centres) @ power.T
        assert torch.allclose(direction["theta"], (theta - phi).mean(0), atol=1e-14)
        x = phi - centres
        assert torch.allclose(loss, (0.5 * ((x @ a) * x).sum(-1)).mean(), atol=1e-14)


def test_bad_arguments_are_rejected() -> None:
    a, centres, theta = _problem()
    with pytest.raises(ValueError, match="optimizer"):
        reptile_direction(_loss(a), {"theta": theta}, [centres], ALPHA,
                          optimizer="rmsprop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="supports"):
        reptile_direction(_loss(a), {"theta": theta}, [], ALPHA)
    with pytest.raises(ValueError, match="inner_lr"):
        reptile_direction(_loss(a), {"theta": theta}, [centres], 0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        reptile_direction(_loss(a), {"theta": theta}, [centres], ALPHA, chunk_size=-1)
