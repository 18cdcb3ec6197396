"""Synchronous vectorised sampling of tasks x episodes in lockstep.

All ``N * B`` sub-environments of a ``TaskVectorEnv`` advance together, one batched policy
forward pass per time step; there are no worker processes or queues to hang. Episodes that
terminate early stay in the batch with their later steps masked out and zero (and a simulator
that can, ``TaskVectorEnv.step_alive``, stops simulating them). An environment whose step info
holds ``success`` (Meta-World) also fills ``Episodes.success``.

With ``task_seeds`` the randomness of a rollout is per task: each task's seed alone fixes its
sub-environments' reset states and its action noise, so a task's episodes do not depend on which
other tasks share the batch. That is what lets a meta-batch be split over workers (``sampler:
ray``) and still give exactly the episodes of one local rollout.

The simulators run on the host; the policy runs where its parameters are (``device: cuda``
puts them on the GPU). Each step sends the whole batch of observations to that device in one
transfer (with the step's noise when a ``generator`` draws it step by step; ``task_seeds``
noise goes once per rollout) and brings the actions back in one, never one transfer per
environment. The episodes are gathered on the host and moved to the parameters' device once,
at the end, for the advantages and the losses. The action noise is drawn on the host either
way, so a seed gives the same episodes on every device (up to the device's rounding of the
policy's outputs).

Torch runs on one CPU thread during a rollout: its forward passes are small, and between them
its idle worker threads spin on the cores that the simulator's own threads (MuJoCo's
``rollout`` pool) need. On 2 cores a HalfCheetah rollout (400 copies x 200 steps) took 0.84 and
0.87 s with two torch threads and 0.65 and 0.66 s with one (docs/results/speed.md); 2D
navigation's was unchanged. The episodes are the same either way (tested).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from metarl.core.distributions import Distribution, Policy
from metarl.core.episodes import Episodes
from metarl.core.guards import check_finite
from metarl.core.linalg import Params, params_device
from metarl.envs.base import Task, TaskVectorEnv


def rollout(
    env: TaskVectorEnv,
    policy: Policy,
    params: Params,
    tasks: Sequence[Task],
    episodes_per_task: int,
    horizon: int,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    task_seeds: Sequence[int] | None = None,
) -> Episodes:
    """Sample ``episodes_per_task`` episodes of at most ``horizon`` steps for every task.

    ``params`` are either shared by all tasks or stacked per task (leading dimension N), e.g. the
    adapted parameters of a meta-batch. ``env.num_envs`` must equal ``len(tasks) *
    episodes_per_task``; sub-environment ``n * B + b`` runs episode ``b`` of task ``n``.

    The action noise comes from ``generator`` and the reset from ``seed``, for the whole batch;
    or, with ``task_seeds`` (one per task, instead of both), from each task's own seed. Actions
    are drawn by the policy's distribution from that noise (``Distribution.sample``) and stored
    as floats ``[N, T, B, act]``: a discrete action is its index, ``[..., 1]``.
    """
    n, b = len(tasks), episodes_per_task
    device = params_device(params)
    host = torch.device("cpu")
    if env.num_envs != n * b:
        raise ValueError(f"environment has {env.num_envs} copies, need {n} tasks x {b} episodes")
    noise: torch.Tensor | None = None
    reset_seed: int | list[int] | None = seed
    if task_seeds is not None:
        if generator is not None or seed is not None:
            raise ValueError("pass task_seeds or generator and seed, not both")
        if len(task_seeds) != n:
            raise ValueError(f"got {len(task_seeds)} task seeds for {n} tasks")
        reset_seed, noise = _per_task_randomness(task_seeds, b, horizon, env.act_dim,
                                                 policy.distribution)
        noise = noise.to(device)  # the whole rollout's noise in one transfer
    env.set_tasks([task for task in tasks for _ in range(b)])
    # a list holds one seed per copy, as gymnasium's vector envs take it (its annotation says int)
    obs, _ = env.reset(seed=reset_seed)  # type: ignore[arg-type]
    obs_dim, act_dim = env.obs_dim, env.act_dim
    observations = torch.zeros(n, horizon, b, obs_dim, device=host)
    actions = torch.zeros(n, horizon, b, act_dim, device=host)
    rewards = torch.zeros(n, horizon, b, device=host)
    mask = torch.zeros(n, horizon, b, device=host)
    success: torch.Tensor | None = None  # created at the first step whose info reports it
    alive = np.ones(n * b, dtype=bool)
    params = {k: v.detach() for k, v in params.items()}
    with torch.no_grad(), one_torch_thread():
        for t in range(horizon):
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=host).view(n, b, obs_dim)
            # before they become NaN actions that the environment would reject, unexplained
            check_finite(f"the observations at step {t}", obs_t.view(n * b, -1)[alive])
            dist = policy.distribution_params(params, obs_t.to(device))
            noise_t = (policy.distribution.draw_noise((n, b, act_dim), generator)
                       if noise is None else noise[:, t])
            act_t = policy.distribution.sample(dist, noise_t).to(host)
            observations[:, t] = obs_t
            actions[:, t] = act_t
            mask[:, t] = torch.from_numpy(alive.reshape(n, b))
            # a simulator may skip the finished copies (their steps are masked)
            obs, reward, terminated, truncated, info = env.step_alive(
                act_t.reshape(n * b, act_dim).numpy(), alive.copy()
            )
            rewards[:, t] = torch.from_numpy(np.where(alive, reward, 0.0).reshape(n, b))
            if "success" in info:
                if success is None:
                    success = torch.zeros(n, horizon, b, device=host)
                succeeded = alive & np.asarray(info["success"], dtype=bool)
                success[:, t] = torch.from_numpy(succeeded.reshape(n, b).astype(np.float32))
            alive &= ~(terminated | truncated)
            if not alive.any():
                break
    # a finished episode's later places hold zeros, whatever its copy did after the end: a
    # task's batch then does not depend on whether other tasks kept the rollout going
    observations *= mask.unsqueeze(-1)
    actions *= mask.unsqueeze(-1)
    return Episodes(observations, actions, rewards, mask, success).to(device)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one CPU thread inside the block, its earlier count restored after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def draw_task_seeds(rng: np.random.Generator, n: int) -> list[int]:
    """One seed per task for one rollout (see ``rollout``'s ``task_seeds``), drawn from ``rng``."""
    return [int(x) for x in rng.integers(2**31, size=n)]


def _per_task_randomness(
    task_seeds: Sequence[int], episodes: int, horizon: int, act_dim: int,
    distribution: Distribution,
) -> tuple[list[int], torch.Tensor]:
    """Reset seeds of every sub-environment (gymnasium's one seed per copy) and the action
    noise ``[N, T, B, act]`` of ``distribution`` (standard normal for the Gaussian, uniform
    for the categorical's inverse CDF), each task's from its own seed only.

    A task's seed is expanded by ``numpy.random.SeedSequence`` into ``B`` reset seeds and one
    seed of a torch generator that draws the task's whole noise at once (one call per task).
    """
    reset_seeds: list[int] = []
    noise = torch.empty(len(task_seeds), horizon, episodes, act_dim, device="cpu")
    for i, task_seed in enumerate(task_seeds):
        words = np.random.SeedSequence(task_seed).generate_state(episodes + 1).tolist()
        reset_seeds.extend(words[:episodes])
        generator = torch.Generator().manual_seed(words[episodes])
        noise[i] = distribution.draw_noise((horizon, episodes, act_dim), generator)
    return reset_seeds, noise
