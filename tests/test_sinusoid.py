"""Sinusoid tasks, the functional MLP and its losses, adaptation and MAML's meta-gradient on it."""

import math

import pytest
import torch

from metarl.core.adaptation import adapt, per_task
from metarl.core.maml import meta_gradient
from metarl.fewshot.models import MLP, mlp, mse_loss
from metarl.fewshot.sinusoid import SinusoidTasks, sinusoid
from metarl.fewshot.supervised import initial_params


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sampler_shapes_and_ranges() -> None:
    batch = SinusoidTasks().sample(500, 7, 3, _generator())
    assert batch.support_x.shape == batch.support_y.shape == (500, 7, 1)
    assert batch.query_x.shape == batch.query_y.shape == (500, 3, 1)
    assert batch.amplitude.shape == batch.phase.shape == (500,)
    assert batch.support_x.dtype == torch.float32
    assert batch.amplitude.min() >= 0.1 and batch.amplitude.max() <= 5.0
    assert batch.phase.min() >= 0.0 and batch.phase.max() <= math.pi
    for x in (batch.support_x, batch.query_x):
        assert x.min() >= -5.0 and x.max() <= 5.0
    # 500 draws cover most of each range
    assert batch.amplitude.max() - batch.amplitude.min() > 4.5
    assert batch.phase.max() - batch.phase.min() > 0.9 * math.pi


def test_targets_are_exactly_the_task_sinusoids() -> None:
    batch = SinusoidTasks(dtype=torch.float64).sample(20, 5, 4, _generator())
    a, phase = batch.amplitude.view(-1, 1, 1), batch.phase.view(-1, 1, 1)
    assert torch.equal(batch.support_y, a * torch.sin(batch.support_x - phase))
    assert torch.equal(batch.query_y, a * torch.sin(batch.query_x - phase))
    assert torch.equal(batch.query_y, sinusoid(batch.query_x, batch.amplitude, batch.phase))


def test_sampler_is_seeded_and_validates() -> None:
    first = SinusoidTasks().sample(4, 2, 2, _generator(3))
    second = SinusoidTasks().sample(4, 2, 2, _generator(3))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    with pytest.raises(ValueError, match="shots"):
        SinusoidTasks().sample(4, 0, 2)
    with pytest.raises(ValueError, match="amplitude_range"):
        SinusoidTasks(amplitude_range=(5.0, 0.1))


def test_stacked_mlp_equals_a_loop_over_tasks() -> None:
    n = 6
    model = MLP(hidden_sizes=(8, 5)).double()
    g = _generator(1)
    stacked = {k: v + 0.1 * torch.randn(n, *v.shape, generator=g, dtype=v.dtype)
               for k, v in model.initial_params().items()}
    x = torch.randn(n, 9, 1, generator=g, dtype=torch.float64)
    out = mlp(stacked, x)
    assert out.shape == (n, 9, 1)
    for i in range(n):
        assert torch.allclose(out[i], mlp({k: v[i] for k, v in stacked.items()}, x[i]),
                              atol=1e-14)
    # shared parameters on batched inputs, and the module's own forward
    shared = model.initial_params()
    assert torch.allclose(mlp(shared, x), mlp(per_task(shared, n), x), atol=1e-14)
    assert torch.allclose(model(x), mlp(shared, x))


def test_losses_are_per_task_mse() -> None:
    batch = SinusoidTasks(dtype=torch.float64).sample(5, 4, 3, _generator())
    params = {k: v.double() for k, v in initial_params().items()}
    for field in ("support", "query"):
        losses = mse_loss(field)(params, batch)
        x, y = getattr(batch, f"{field}_x"), getattr(batch, f"{field}_y")
        assert losses.shape == (5,)
        for i in range(5):
            expected = ((mlp(params, x[i]) - y[i]) ** 2).mean()
            assert torch.allclose(losses[i], expected, atol=1e-14)
    with pytest.raises(ValueError, match="field"):
        mse_loss("train")  # type: ignore[arg-type]


def test_one_inner_step_reduces_the_query_loss_on_average() -> None:
    batch = SinusoidTasks().sample(200, 10, 10, _generator())
    params = per_task(initial_params(), 200)
    before = mse_loss("query")(params, batch).mean()
    adapted = adapt(mse_loss("support"), params, [batch], 0.01)
    assert mse_loss("query")(adapted, batch).mean() < before


def test_one_maml_step_reduces_the_meta_loss_on_average() -> None:
    support, query = mse_loss("support"), mse_loss("query")
    improvements = []
    for seed in range(5):
        batch = SinusoidTasks().sample(25, 10, 10, _generator(seed))
        params = initial_params(seed)
        before, grads = meta_gradient(support, query, params, [batch], batch, 0.01)
        stepped = {k: params[k] - 1e-3 * grads[k] for k in params}
        after, _ = meta_gradient(support, query, stepped, [batch], batch, 0.01)
        improvements.append(float(before - after))
    assert sum(improvements) / len(improvements) > 0


def test_meta_gradient_modes_agree_on_the_mlp() -> None:
    # the stacked (baddbmm) and per-task (F.linear under vmap / loop) forward passes
    batch = SinusoidTasks(dtype=torch.float64).sample(4, 5, 5, _generator())
    params = {k: v.double() for k, v in initial_params(hidden_sizes=(6, 6)).items()}
    args = (mse_loss("support"), mse_loss("query"), params, [batch, batch], batch, 0.05)
    loss, grads = meta_gradient(*args, mode="batched")
    for mode in ("vmap", "loop"):
        other_loss, other = meta_gradient(*args, mode=mode)
        assert torch.allclose(loss, other_loss, atol=1e-12)
        for k in grads:
            assert torch.allclose(grads[k], other[k], atol=1e-12)

