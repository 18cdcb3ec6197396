"""Synchronous vectorised sampling of tasks x episodes in lockstep.

All ``N * B`` sub-environments of a ``TaskVectorEnv`` advance together, one batched policy
forward pass per time step; there are no worker processes or queues to hang. Episodes that
terminate early stay in the batch with their later steps masked out. An environment whose step
info holds ``success`` (Meta-World) also fills ``Episodes.success``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from metarl.envs.base import Task, TaskVectorEnv
from metarl.episodes import Episodes
from metarl.guards import check_finite
from metarl.policies import GaussianMLPPolicy, Params


def rollout(
    env: TaskVectorEnv,
    policy: GaussianMLPPolicy,
    params: Params,
    tasks: Sequence[Task],
    episodes_per_task: int,
    horizon: int,
    generator: torch.Generator,
    seed: int | None = None,
) -> Episodes:
    """Sample ``episodes_per_task`` episodes of at most ``horizon`` steps for every task.

    ``params`` are either shared by all tasks or stacked per task (leading dimension N), e.g. the
    adapted parameters of a meta-batch. ``env.num_envs`` must equal ``len(tasks) *
    episodes_per_task``; sub-environment ``n * B + b`` runs episode ``b`` of task ``n``.
    """
    n, b = len(tasks), episodes_per_task
    if env.num_envs != n * b:
        raise ValueError(f"environment has {env.num_envs} copies, need {n} tasks x {b} episodes")
    env.set_tasks([task for task in tasks for _ in range(b)])
    obs, _ = env.reset(seed=seed)
    obs_dim, act_dim = env.obs_dim, env.act_dim
    observations = torch.zeros(n, horizon, b, obs_dim)
    actions = torch.zeros(n, horizon, b, act_dim)
    rewards = torch.zeros(n, horizon, b)
    mask = torch.zeros(n, horizon, b)
    success: torch.Tensor | None = None  # created at the first step whose info reports it
    alive = np.ones(n * b, dtype=bool)
    params = {k: v.detach() for k, v in params.items()}
    with torch.no_grad():
        for t in range(horizon):
            obs_t = torch.as_tensor(obs, dtype=torch.float32).view(n, b, obs_dim)
            # before they become NaN actions that the environment would reject, unexplained
            check_finite(f"the observations at step {t}", obs_t.view(n * b, -1)[alive])
            act_t = policy.sample(params, obs_t, generator)
            observations[:, t] = obs_t
            actions[:, t] = act_t
            mask[:, t] = torch.from_numpy(alive.reshape(n, b))
            obs, reward, terminated, truncated, info = env.step(
                act_t.reshape(n * b, act_dim).numpy()
            )
            rewards[:, t] = torch.from_numpy(np.where(alive, reward, 0.0).reshape(n, b))
            if "success" in info:
                if success is None:
                    success = torch.zeros(n, horizon, b)
                succeeded = alive & np.asarray(info["success"], dtype=bool)
                success[:, t] = torch.from_numpy(succeeded.reshape(n, b).astype(np.float32))
            alive &= ~(terminated | truncated)
            if not alive.any():
                break
    return Episodes(observations, actions, rewards, mask, success)
