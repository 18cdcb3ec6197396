"""``metarl bench`` times what the config's learner computes in training.

On one sampled 2D-navigation batch in float64, every computation ``bench`` times must return the
learner's own meta-gradient: for MAML and FOMAML a reference written here from the formulas
(one inner policy-gradient step phi_i = theta - alpha grad L_i(theta), then the query gradient
through it, or at phi_i alone for first order); for Reptile, iMAML and the pretrained baseline
the trainer's update direction, as ``MetaLearner.meta_gradient`` computes it in training.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from metarl.config import TrainConfig
from metarl.core.maml import MetaBatch
from metarl.rl.bench import gradient_variants, run_bench
from metarl.rl.meta_learner import MetaLearner

TINY: dict[str, Any] = dict(meta_batch_size=3, episodes_per_task=2, horizon=10,
                            hidden_sizes=[8], torch_threads=1, meta_grad_chunk=2, seed=1)
LEARNERS: dict[str, dict[str, Any]] = {
    "maml": {}, "fomaml": {"learner": "fomaml"},
    "reptile": {"learner": "reptile", "outer": "sgd"},
    "imaml": {"learner": "imaml", "outer": "adam", "inner_lr": 0.05, "inner_steps": 20},
    "pretrained": {"learner": "pretrained", "outer": "adam"},
}


def _double(tree: Any) -> Any:
    return torch.utils._pytree.tree_map(
        lambda x: x.double() if isinstance(x, torch.Tensor) and x.is_floating_point() else x,
        tree)


def _case(name: str) -> tuple[MetaLearner, dict[str, torch.Tensor], MetaBatch]:
    learner = MetaLearner(TrainConfig(**TINY, **LEARNERS[name]))
    theta = learner.initial_state().params
    batch, _ = learner.sample(theta)
    return learner, _double(theta), _double(batch)


def _flat(grads: Any) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads.values()])


def _maml_reference(learner: MetaLearner, theta: dict[str, torch.Tensor], batch: MetaBatch,
                    first_order: bool) -> torch.Tensor:
    """mean_i d/dtheta Q_i(theta - alpha grad L_i(theta)), the inner gradient held constant
    for first order."""
    alpha = learner.config.inner_lr
    per_task = []
    for i in range(learner.config.meta_batch_size):
        support = torch.utils._pytree.tree_map(lambda x, i=i: x[i:i + 1], batch.supports[0])
        query = torch.utils._pytree.tree_map(lambda x, i=i: x[i:i + 1], batch.query)

        def objective(p: dict[str, torch.Tensor], support: Any = support,
                      query: Any = query) -> torch.Tensor:
            stacked = {k: v.unsqueeze(0) for k, v in p.items()}
            inner = torch.func.grad(lambda q: learner.inner_loss(q, support).sum())(stacked)
            if first_order:
                inner = {k: v.detach() for k, v in inner.items()}
            adapted = {k: stacked[k] - alpha * inner[k] for k in stacked}
            return learner.outer_loss(adapted, query).sum()

        per_task.append(_flat(torch.func.grad(objective)(theta)))
    return torch.stack(per_task).mean(0)


@pytest.mark.parametrize("name", ["maml", "fomaml"])
def test_maml_variants_compute_the_configured_order(name: str) -> None:
    learner, theta, batch = _case(name)
    variants = gradient_variants(learner, theta, batch)
    assert set(variants) == {"batched_chunk2", "batched_all", "vmap_chunk2", "loop"}
    expected = _maml_reference(learner, theta, batch, first_order=name == "fomaml")
    other = _maml_reference(learner, theta, batch, first_order=name != "fomaml")
    assert (expected - other).abs().max() > 1e-6  # the two orders are told apart
    for variant, gradient in variants.items():
        result: Any = gradient()
        _, grads = result
        assert torch.allclose(_flat(grads), expected, atol=1e-12, rtol=1e-10), variant


@pytest.mark.parametrize("name", ["reptile", "imaml", "pretrained"])
def test_other_learners_time_their_own_update(name: str) -> None:
    learner, theta, batch = _case(name)
    variants = gradient_variants(learner, theta, batch)
    assert list(variants) == [name]
    result: Any = variants[name]()
    _, timed, _ = result
    _, trained, _ = learner.meta_gradient(theta, batch)
    assert torch.allclose(_flat(timed), _flat(trained), atol=0, rtol=0)
    if name != "pretrained":  # pretrained's update is MAML's gradient with no inner step
        maml_result: Any = gradient_variants(_case("maml")[0], theta, batch)["batched_all"]()
        _, maml = maml_result
        assert (_flat(timed) - _flat(maml)).abs().max() > 1e-6


def test_bench_reports_the_learner_it_timed() -> None:
    result = run_bench(TrainConfig(**TINY, **LEARNERS["reptile"]), iterations=1, repeats=1)
    assert result["learner"] == "reptile" and result["first_order"] is False
    assert result["curvature_dtype"] == "float32"
    assert isinstance(result["cpu_bfloat16"], bool)
    assert set(result["meta_gradient_seconds"]) == {"reptile"}
    assert "meta_gradient_ratio_to_batched_all" not in result
    fomaml = run_bench(TrainConfig(**TINY, **LEARNERS["fomaml"]), iterations=1, repeats=1)
    assert fomaml["first_order"] is True
    assert set(fomaml["meta_gradient_ratio_to_batched_all"]) == set(
        fomaml["meta_gradient_seconds"])
    assert "physics_floor_seconds" not in fomaml  # 2D navigation has no physics engine
    bfloat16 = run_bench(TrainConfig(**TINY, curvature_dtype="bfloat16"), iterations=1,
                         repeats=1)
    assert bfloat16["curvature_dtype"] == "bfloat16"


def test_bench_sets_mujoco_sampling_against_the_physics_floor() -> None:
    pytest.importorskip("mujoco")
    config = TrainConfig(**{**TINY, "env_id": "metarl/HalfCheetahVel-v0", "physics": "maml"})
    result = run_bench(config, iterations=1, repeats=1)
    assert result["physics_floor_seconds"] > 0
    assert result["sampling_over_physics_floor"] == pytest.approx(
        result["sampling_seconds_median"] / result["physics_floor_seconds"])
    assert 0 < result["meta_update_fraction"] < 1
