"""MAML on the 4-block network: meta-gradients agree across task batching modes (float64), and a
smoke train + evaluate on a tiny synthetic Omniglot."""

import pytest
import torch

from metarl.fewshot.conv import PerTaskMode, Pool
from metarl.fewshot.omniglot import FewShotBatch, OmniglotTasks, synthetic_omniglot
from metarl.fewshot.omniglot_training import (
    cross_entropy_loss,
    evaluate_omniglot_maml,
    initial_conv_params,
    train_omniglot_maml,
)
from metarl.maml import GradientMode, meta_gradient


def _batch(n: int = 3, ways: int = 3, seed: int = 0) -> FewShotBatch:
    data = synthetic_omniglot()
    tasks = OmniglotTasks(data, "train", ways, 1, 2)
    batch = tasks.sample(n, torch.Generator().manual_seed(seed))
    return FewShotBatch(batch.support_x.double(), batch.support_y, batch.query_x.double(),
                        batch.query_y)


@pytest.mark.parametrize("pool", ["max", "stride"])
@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradient_agrees_across_batching_modes(pool, first_order) -> None:
    batch = _batch()
    params = {k: v.double() for k, v in initial_conv_params(3, 0, pool, filters=4).items()}
    results = {}
    cases: list[tuple[str, GradientMode, PerTaskMode, int | None]] = [
        ("grouped", "batched", "grouped", None),
        ("vmap-forward", "batched", "vmap", None),
        ("vmap", "vmap", "grouped", 2),
        ("loop", "loop", "grouped", None),
    ]
    for label, mode, per_task_mode, chunk in cases:
        support = cross_entropy_loss("support", pool, per_task_mode)
        query = cross_entropy_loss("query", pool, per_task_mode)
        results[label] = meta_gradient(support, query, params, [batch, batch], batch, 0.4,
                                       first_order, mode, chunk)
    loss, grads = results["loop"]
    for label, (other_loss, other_grads) in results.items():
        assert torch.allclose(other_loss, loss, atol=1e-12), label
        for k in params:
            assert torch.allclose(other_grads[k], grads[k], atol=1e-10), (label, k)


def test_second_order_term_matters_and_matches_finite_differences() -> None:
    batch = _batch(n=2)
    pool: Pool = "stride"
    params = {k: v.double() for k, v in initial_conv_params(3, 1, pool, filters=4).items()}
    support, query = cross_entropy_loss("support", pool), cross_entropy_loss("query", pool)
    _, second = meta_gradient(support, query, params, [batch], batch, 0.4)
    _, first = meta_gradient(support, query, params, [batch], batch, 0.4, first_order=True)
    assert not torch.allclose(second["head.weight"], first["head.weight"], atol=1e-6)
    g = torch.Generator().manual_seed(5)
    direction = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in params.items()}

    def objective(scale: float) -> float:
        moved = {k: params[k] + scale * direction[k] for k in params}
        return float(meta_gradient(support, query, moved, [batch], batch, 0.4)[0])

    # A small step: ReLU and max-pool kinks within a few 1e-5 spoil larger differences.
    eps = 1e-7
    numeric = (objective(eps) - objective(-eps)) / (2 * eps)
    analytic = sum(float((second[k] * direction[k]).sum()) for k in params)
    assert abs(numeric - analytic) < 1e-6 * max(1.0, abs(analytic))


@pytest.mark.parametrize("first_order", [False, True])
def test_maml_trains_and_evaluates_on_tiny_data(first_order) -> None:
    data = synthetic_omniglot()
    start = initial_conv_params(3, 0, "stride", filters=8)
    seen = []
    params = train_omniglot_maml(data, ways=3, shots=1, iterations=3, meta_batch_size=4,
                                 inner_lr=0.4, inner_steps=2, first_order=first_order,
                                 outer_lr=1e-3, seed=0, params=start,
                                 callback=lambda i, m: seen.append(m["outer/loss"]))
    assert len(seen) == 3 and all(torch.isfinite(torch.tensor(seen)))
    assert any(not torch.equal(params[k], start[k]) for k in start)
    result = evaluate_omniglot_maml(params, data, ways=3, shots=1, steps=3, tasks=10,
                                    inner_lr=0.4, queries=2, chunk_size=4)
    for s in range(4):
        assert 0 <= result[f"query/accuracy_{s}"] <= 1
        assert result[f"query/accuracy_{s}_ci95"] >= 0
    assert result["accuracy"] == result["query/accuracy_3"]
    # Fine-tuning on the support set helps on these separable tasks.
    assert result["query/accuracy_3"] > result["query/accuracy_0"]


def test_time_limit_stops_training() -> None:
    data = synthetic_omniglot()
    count = []
    train_omniglot_maml(data, ways=3, shots=1, iterations=1000, meta_batch_size=2,
                        params=initial_conv_params(3, 0, "stride", filters=4), time_limit_s=0.0,
                        callback=lambda i, m: count.append(i))
    assert count == [0]
