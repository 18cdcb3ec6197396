"""The Ray rollout backend: the same episodes and parameters as the local backend, sharded over
actors, and an actor killed in the middle of an iteration costs a retry, not the iteration.

One local Ray with 2 CPUs serves the module; the navigation tests share one pool of actors.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from metarl.config import ConfigError, TrainConfig, load_config
from metarl.core.guards import NonFiniteError
from metarl.envs import make_task_vector_env
from metarl.rl.meta_learner import MetaLearner
from metarl.rl.ray_sampler import (
    INSTALL_HINT,
    RaySampler,
    ShardSampler,
    import_ray,
    join_shards,
    shard_bounds,
)
from metarl.rl.rollout import draw_task_seeds
from metarl.rl.sampling import SampledEpisodes, sample_episodes

ROOT = Path(__file__).resolve().parents[1]
HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (the ray extra)")

# Three tasks over two workers: shards of two and one task, so the join order is tested too.
NAV = TrainConfig(meta_batch_size=3, episodes_per_task=4, horizon=12, hidden_sizes=(8, 8),
                  inner_steps=2, torch_threads=1, seed=5, sampler="ray", ray_workers=2)


def test_sampler_fields_are_validated() -> None:
    assert TrainConfig().sampler == "local"
    with pytest.raises(ConfigError, match="sampler must be one of 'local', 'ray'"):
        TrainConfig(sampler="dask")
    with pytest.raises(ConfigError, match="ray_workers must be >= 1"):
        TrainConfig(ray_workers=0)
    with pytest.raises(ConfigError, match="ray_address must be a string"):
        TrainConfig.from_dict({"ray_address": 6379})


def test_shards_are_contiguous_and_balanced() -> None:
    assert shard_bounds(3, 2) == [(0, 2), (2, 3)]
    assert shard_bounds(40, 3) == [(0, 14), (14, 27), (27, 40)]
    assert shard_bounds(2, 8) == [(0, 1), (1, 2)]  # never an empty shard


def test_without_ray_the_error_is_one_line_naming_the_extra(monkeypatch) -> None:
    real = importlib.import_module

    def no_ray(name: str, *args: Any) -> Any:
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_ray)
    with pytest.raises(ConfigError) as error:
        import_ray()
    assert str(error.value) == INSTALL_HINT and "\n" not in INSTALL_HINT
    assert 'pip install -e ".[ray]"' in INSTALL_HINT


def test_nothing_else_imports_ray() -> None:
    """ray is an optional extra: only metarl/rl/ray_sampler.py may import it."""
    offenders = []
    for path in [*(ROOT / "metarl").rglob("*.py"), *(ROOT / "envs").rglob("*.py")]:
        if path.name == "ray_sampler.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "ray"]
    assert offenders == []


@pytest.mark.parametrize("preset", ["navigation2d", "smoke_mujoco"])
def test_shards_sampled_apart_join_into_the_whole_batchs_episodes(preset: str) -> None:
    """What the actors do, in-process: shards of 1 and 3 tasks sampled by separate workers
    equal one batch of 4, bit for bit (per-task seeds, and MKL's strict reproducibility)."""
    if preset == "smoke_mujoco":
        pytest.importorskip("mujoco")
    config = load_config(ROOT / "experiments" / f"{preset}.yaml",
                         {"meta_batch_size": "4", "episodes_per_task": "3", "horizon": "10",
                          "hidden_sizes": "[16, 16]"})
    params, tasks, seeds, expected = _local_sample(config, seed=0)
    first, rest = ShardSampler(config), ShardSampler(config)
    parts = [first.sample(params, tasks[:1], [s[:1] for s in seeds]),
             rest.sample(params, tasks[1:], [s[1:] for s in seeds])]
    assert all(part.support_batches == [] for part in parts)  # not shipped
    _assert_same_episodes(join_shards(parts), expected)


@pytest.fixture(scope="module")
def ray_module() -> Any:
    if not HAS_RAY:
        pytest.skip("ray is not installed (the ray extra)")
    ray = import_ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


def scripted_worker(control: Path) -> type[ShardSampler]:
    """A worker that behaves unless a file in ``control`` asks it, once, to stall (and say so)
    or to fail. Defined in a function so that Ray ships the class by value."""

    class Scripted(ShardSampler):
        def sample(self, params: Any, tasks: Any, seeds: Any) -> SampledEpisodes:
            for order in ("stall", "fail"):
                try:
                    os.unlink(control / order)  # whoever removes it obeys
                except FileNotFoundError:
                    continue
                if order == "fail":
                    raise NonFiniteError("scripted: the rewards hold 1 NaN")
                (control / "stalled").write_text(str(os.getpid()))
                time.sleep(120)
            return super().sample(params, tasks, seeds)

    return Scripted


class Pools:
    """At most one pool of scripted actors at a time (the 2 CPUs fit one pool of two), kept from
    test to test while they use the same config."""

    def __init__(self, control: Path) -> None:
        self.control = control
        self.sampler: RaySampler | None = None

    def get(self, config: TrainConfig) -> RaySampler:
        if self.sampler is None or self.sampler.config != config:
            self.release()
            self.sampler = RaySampler(config, worker=scripted_worker(self.control))
        return self.sampler

    def release(self) -> None:
        if self.sampler is not None:
            self.sampler.close()
            self.sampler = None


@pytest.fixture(scope="module")
def pools(ray_module: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    shared = Pools(tmp_path_factory.mktemp("control"))
    yield shared
    shared.release()


def _local_and_ray_learners(config: TrainConfig, ray: RaySampler | None = None
                            ) -> tuple[MetaLearner, MetaLearner]:
    local = MetaLearner(dataclasses.replace(config, sampler="local"))
    if ray is None:
        return local, MetaLearner(config)
    remote = MetaLearner(dataclasses.replace(config, sampler="local"))
    remote.ray = ray  # the module's shared pool of actors
    return local, remote


def _leaves(tree: Any) -> list[torch.Tensor]:
    """The tensors of nested named tuples and lists, in order."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in _leaves(item)]
    return []


def _assert_same_runs(local: MetaLearner, remote: MetaLearner, iterations: int) -> None:
    a, b = local.initial_state(), remote.initial_state()
    for _ in range(iterations):
        batch_a, _ = local.sample(a.params)
        batch_b, _ = remote.sample(b.params)
        leaves_a, leaves_b = _leaves(batch_a), _leaves(batch_b)
        assert len(leaves_a) == len(leaves_b) > 0
        for u, v in zip(leaves_a, leaves_b):
            assert torch.equal(u, v)  # the same steps, in the same order
        a, metrics_a = local.update(a, batch_a)
        b, metrics_b = remote.update(b, batch_b)
        assert metrics_a == metrics_b
    assert a.params.keys() == b.params.keys()
    assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)
    assert not all(torch.equal(a.params[k], local.initial_state().params[k]) for k in a.params)
    assert local.dynamics_rng.bit_generator.state == remote.dynamics_rng.bit_generator.state


@needs_ray
def test_the_smoke_mujoco_preset_equals_the_local_backend(ray_module: Any, pools: Pools) -> None:
    pytest.importorskip("mujoco")
    pools.release()  # its CPUs go to this test's workers
    config = load_config(ROOT / "experiments" / "smoke_mujoco.yaml",
                         {"sampler": "ray", "ray_workers": "2"})
    local, remote = _local_and_ray_learners(config)  # the full path: MetaLearner starts Ray's
    with remote:
        _assert_same_runs(local, remote, iterations=config.iterations)
        actors = remote.ray.actors if remote.ray else []
    assert len(actors) == 2
    # closing killed the workers; ray.kill is asynchronous, so a call made at once may still be
    # served: the actor must be gone within a minute
    deadline = time.monotonic() + 60
    with pytest.raises(ray_module.exceptions.RayActorError):
        while time.monotonic() < deadline:
            ray_module.get(actors[0].ready.remote(), timeout=60)
            time.sleep(0.5)


@needs_ray
def test_navigation_runs_equal_the_local_backend(pools: Pools) -> None:
    local, remote = _local_and_ray_learners(NAV, pools.get(NAV))
    _assert_same_runs(local, remote, iterations=2)


def _local_sample(config: TrainConfig, seed: int) -> tuple[Any, Any, Any, SampledEpisodes]:
    env = make_task_vector_env(config.env_id, config.meta_batch_size * config.episodes_per_task,
                               config.physics, action_space=config.action_space)
    worker = ShardSampler(config)
    rng = np.random.default_rng(seed)
    tasks = env.sample_tasks(config.meta_batch_size, rng)
    seeds = [draw_task_seeds(rng, len(tasks)) for _ in range(worker.learner.support_rollouts() + 1)]
    params = worker.policy.initial_params()
    expected = sample_episodes(env, worker.policy, worker.learner, config, params, tasks,
                               seeds)
    return params, tasks, seeds, expected


def _assert_same_episodes(a: SampledEpisodes, b: SampledEpisodes) -> None:
    episodes_a, episodes_b = _leaves([a.supports, a.query]), _leaves([b.supports, b.query])
    assert len(episodes_a) == len(episodes_b) > 0
    assert all(torch.equal(u, v) for u, v in zip(episodes_a, episodes_b))
    assert all(torch.equal(a.adapted[k], b.adapted[k]) for k in a.adapted)


@needs_ray
def test_a_workers_own_error_is_raised_as_it_is_and_not_retried(pools: Pools) -> None:
    sampler, control = pools.get(NAV), pools.control
    params, tasks, seeds, _ = _local_sample(NAV, seed=1)
    retries = sampler.retries
    (control / "fail").touch()
    with pytest.raises(NonFiniteError, match=r"^scripted: the rewards hold 1 NaN$"):
        sampler.sample(params, tasks, seeds)
    assert sampler.retries == retries


@needs_ray
def test_an_actor_killed_mid_iteration_is_replaced_and_the_result_unchanged(
    ray_module: Any, pools: Pools
) -> None:
    sampler, control = pools.get(NAV), pools.control
    params, tasks, seeds, expected = _local_sample(NAV, seed=2)
    by_pid = {ray_module.get(a.ready.remote()): a for a in sampler.actors}
    (control / "stall").touch()
    killed: list[int] = []

    def kill_the_stalled_actor() -> None:
        deadline = time.time() + 60
        while not (control / "stalled").exists() and time.time() < deadline:
            time.sleep(0.02)
        pid = int((control / "stalled").read_text())
        ray_module.kill(by_pid[pid])
        killed.append(pid)

    killer = threading.Thread(target=kill_the_stalled_actor)
    killer.start()
    retries = sampler.retries
    result = sampler.sample(params, tasks, seeds)
    killer.join()
    assert killed and sampler.retries == retries + 1
    _assert_same_episodes(result, expected)
    assert by_pid[killed[0]] not in sampler.actors  # replaced by a fresh actor
