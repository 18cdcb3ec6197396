"""Sampling throughput: environment steps per second with a policy in the loop.

Compares, for one task family and ``tasks x episodes`` sub-environments:

- ``batched``: metarl's natively vectorised environment (for MuJoCo: ``mujoco.rollout``, one
  threaded C call per step);
- ``sync``: gymnasium's ``SyncVectorEnv`` over the registered single environments;
- ``async``: gymnasium's ``AsyncVectorEnv``, one process per sub-environment. One process per
  sub-environment cannot hold hundreds of MuJoCo copies on a small machine, so it runs
  ``async_envs`` of them and its rate is per step of that many;
- ``physics_limit`` (MuJoCo only): bare ``mj_step`` calls in a tight loop on one core (the
  median rate of five blocks), divided by the frame skip and multiplied by the usable cores:
  what the physics alone allows.

The policy is the meta-policy's architecture with fresh parameters, evaluated for all
sub-environments at once. Prints figures; asserts nothing.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gymnasium
import numpy as np
import torch

from metarl.config import TrainConfig, resolve_threads
from metarl.envs import TaskVectorEnv, env_kwargs, make_task_vector_env
from metarl.envs.base import usable_cores
from metarl.rl.policy import build_policy
from metarl.run.watchdog import deadline


def _policy_fn(config: TrainConfig, env: TaskVectorEnv) -> Callable[[np.ndarray], np.ndarray]:
    policy = build_policy(config, env)
    params = policy.initial_params()
    generator = torch.Generator().manual_seed(0)

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor(obs, dtype=torch.float32)
            action: np.ndarray = policy.sample(params, x, generator).numpy()
        return action

    return act


def _steps_per_second(env: gymnasium.vector.VectorEnv, act: Callable[[np.ndarray], np.ndarray],
                      horizon: int) -> float:
    """Env steps per second of ``horizon`` lockstep steps of all of ``env``'s copies."""
    obs = env.reset(seed=0)[0]
    start = time.perf_counter()
    for _ in range(horizon):
        obs = env.step(act(obs))[0]
    return float(env.num_envs * horizon / (time.perf_counter() - start))


@contextmanager
def _closing(env: gymnasium.vector.VectorEnv, seconds: float, name: str) -> Iterator[None]:
    """Close ``env`` however the block ends, and bound the block by ``seconds`` (0: no limit).
    After an error a worker process may be stuck mid-step, so it is terminated, not awaited."""
    message = (f"the {name} throughput measurement stalled: no result after {seconds:g} s "
               "(rollout_timeout_s)")
    try:
        with deadline(seconds, message):
            yield
    except BaseException:
        if isinstance(env, gymnasium.vector.AsyncVectorEnv):
            env.close(terminate=True)
        else:
            env.close()
        raise
    env.close()


def _make_single(env_id: str, kwargs: dict[str, Any]) -> gymnasium.Env[Any, Any]:
    """A picklable environment factory (spawned workers import metarl.envs to register ids)."""
    import metarl.envs  # noqa: F401

    return gymnasium.make(env_id, **kwargs)


def physics_limit(env_id: str, physics: str, cores: int, calls: int = 20000,
                  blocks: int = 5) -> float | None:
    """Env steps per second that bare ``mj_step`` calls allow on ``cores`` cores: the median
    rate of ``blocks`` blocks of ``calls`` steps (one block read 0.37 to 0.56 s as the
    HalfCheetah bench's floor over four runs on one shared machine)."""
    vector = make_task_vector_env(env_id, 1, physics)
    model = getattr(vector, "model", None)
    if model is None:
        return None
    import mujoco

    data = mujoco.MjData(model)
    rates = []
    for _ in range(blocks):
        mujoco.mj_resetData(model, data)
        start = time.perf_counter()
        for _ in range(calls):
            mujoco.mj_step(model, data)
        rates.append(calls / (time.perf_counter() - start))
    per_core = statistics.median(rates)
    frame_skip: int = vector.frame_skip  # type: ignore[attr-defined]
    return per_core / frame_skip * cores


def run_throughput(config: TrainConfig, horizon: int | None = None,
                   async_envs: int = 8) -> dict[str, Any]:
    """Steps per second of each way of sampling ``config``'s meta-batch (see the module doc)."""
    threads = resolve_threads(config.torch_threads)
    torch.set_num_threads(threads)
    horizon = horizon or config.horizon
    num_envs = config.meta_batch_size * config.episodes_per_task
    batched = make_task_vector_env(config.env_id, num_envs, config.physics,
                                   action_space=config.action_space)
    tasks = batched.sample_tasks(config.meta_batch_size, np.random.default_rng(0))
    batched.set_tasks([t for t in tasks for _ in range(config.episodes_per_task)])
    act = _policy_fn(config, batched)

    limit_s = config.rollout_timeout_s
    with _closing(batched, limit_s, "batched"):
        rates = {"batched": _steps_per_second(batched, act, horizon)}
    kwargs = env_kwargs(config.env_id, config.physics, config.action_space)
    sync = gymnasium.vector.SyncVectorEnv(
        [lambda: gymnasium.make(config.env_id, **kwargs) for _ in range(num_envs)]
    )
    with _closing(sync, limit_s, "sync"):
        sync.call("set_task", tasks[0])
        rates["sync"] = _steps_per_second(sync, act, horizon)
    del sync
    # spawn, not fork: a forked child inherits the parent's MuJoCo arenas (~15 MB reserved per
    # Ant copy), and with hundreds of copies made above the fork failed with ENOMEM here
    asynchronous = gymnasium.vector.AsyncVectorEnv(
        [functools.partial(_make_single, config.env_id, kwargs) for _ in range(async_envs)],
        context="spawn",
    )
    with _closing(asynchronous, limit_s, "async"):
        asynchronous.call("set_task", tasks[0])
        rates["async"] = _steps_per_second(asynchronous, act, horizon)
    cores = usable_cores()
    limit = physics_limit(config.env_id, config.physics, cores)
    result: dict[str, Any] = {
        "env_id": config.env_id,
        "physics": config.physics,
        "sub_environments": num_envs,
        "async_sub_environments": async_envs,
        "horizon": horizon,
        "torch_threads": threads,
        "cores": cores,
        "env_steps_per_second": rates,
        "physics_limit_steps_per_second": limit,
        "batched_over_sync": rates["batched"] / rates["sync"],
    }
    if limit:
        result["batched_fraction_of_physics_limit"] = rates["batched"] / limit
    return result

