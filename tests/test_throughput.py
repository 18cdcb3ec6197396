import pytest

from metarl.config import TrainConfig
from metarl.rl.throughput import run_throughput


def _check(result: dict, has_physics_limit: bool) -> None:
    rates = result["env_steps_per_second"]
    assert set(rates) == {"batched", "sync", "async"}
    assert all(rate > 0 for rate in rates.values())
    assert result["batched_over_sync"] == pytest.approx(rates["batched"] / rates["sync"])
    assert (result["physics_limit_steps_per_second"] is not None) == has_physics_limit


def test_navigation_throughput_figures() -> None:
    config = TrainConfig(meta_batch_size=2, episodes_per_task=2, horizon=5, torch_threads=1)
    _check(run_throughput(config, async_envs=2), has_physics_limit=False)


def test_mujoco_throughput_figures() -> None:
    pytest.importorskip("mujoco")
    config = TrainConfig(env_id="metarl/HalfCheetahVel-v0", meta_batch_size=2,
                         episodes_per_task=2, horizon=5, torch_threads=1)
    result = run_throughput(config, async_envs=2)
    _check(result, has_physics_limit=True)
    assert result["batched_fraction_of_physics_limit"] > 0
