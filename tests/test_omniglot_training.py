"""MAML's meta-gradient through the 4-block classifier's cross-entropy: it agrees across task
batching modes and with finite differences (float64)."""

import pytest
import torch

from metarl.core.maml import GradientMode, meta_gradient
from metarl.fewshot.conv import PerTaskMode, Pool
from metarl.fewshot.omniglot import FewShotBatch, OmniglotTasks, synthetic_omniglot
from metarl.fewshot.omniglot_training import cross_entropy_loss, initial_conv_params


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

