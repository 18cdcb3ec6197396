"""K-armed Bernoulli bandits, the first benchmark of RL^2 (Duan et al. 2016, "RL^2: Fast
Reinforcement Learning via Slow Reinforcement Learning", arXiv:1611.02779, Sec. 4.1).

A task is a vector of arm probabilities p_1..p_K, each drawn from U[0, 1]. Pulling arm a (the
action, an index in ``Discrete(K)``) pays 1 with probability p_a and 0 otherwise. An episode is
``horizon`` pulls of the same bandit (the paper's n; it reports n in {10, 100, 500} and K in
{5, 10, 50}); it is truncated after the last pull, never terminated. The observation carries no
information -- a constant single feature 1.0, so that a policy MLP has an input -- and
everything a policy learns about the task it has to learn from its rewards.

The best expected return on a task is ``horizon * max_a p_a`` (pull the best arm every time;
``optimal_return``), the ceiling against which an adaptive policy's return is measured (the
paper compares against Gittins indices, UCB1 and Thompson sampling, which do not know p).

Randomness: the single environment draws one uniform per pull from its ``np_random`` (seeded by
``reset(seed=...)``). The vector form, reset with a list of seeds (gymnasium's one seed per
sub-environment), gives each copy its own generator seeded the same way, so that it reproduces
single environments reset with those seeds; reset with one seed or none, it draws the whole
batch's uniforms from one generator in one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np

from metarl.envs.action_map import check_action_space
from metarl.envs.base import (
    Task,
    TaskEnv,
    TaskVectorEnv,
    check_task_count,
    per_copy_generators,
)
from metarl.envs.discrete_actions import checked_indices

DEFAULT_ARMS = 5
DEFAULT_HORIZON = 10


def sample_bandits(n: int, arms: int, rng: np.random.Generator) -> list[Task]:
    """``n`` tasks, each with ``arms`` probabilities drawn from U[0, 1] with ``rng`` only."""
    probabilities = rng.uniform(0.0, 1.0, size=(n, arms))
    return [Task.of(probabilities=p) for p in probabilities]


def bandit_rewards(probabilities: np.ndarray, arms: np.ndarray,
                   uniforms: np.ndarray) -> np.ndarray:
    """Rewards (float64, 0 or 1) of pulling ``arms`` ``[N]`` on bandits ``[N, K]``: 1 where the
    uniform draw ``[N]`` falls below the pulled arm's probability, so with that probability."""
    pulled = np.take_along_axis(probabilities, arms[:, None], axis=1)[:, 0]
    rewards: np.ndarray = (uniforms < pulled).astype(np.float64)
    return rewards


def optimal_return(task: Task, horizon: int) -> float:
    """The best expected return of ``horizon`` pulls on ``task``: the best arm every time."""
    return float(horizon * np.max(task.as_array("probabilities")))


def _check_settings(arms: int, horizon: int, action_space: str) -> None:
    check_action_space(action_space)
    if action_space != "env":
        raise ValueError("a bandit's actions are arm indices; there is no unit box to map from "
                         f"(action_space={action_space!r})")
    if arms < 1 or horizon < 1:
        raise ValueError(f"arms and horizon must be >= 1, got {arms} and {horizon}")


def _observation_space() -> gymnasium.spaces.Box:
    return gymnasium.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)


class BanditEnv(TaskEnv[np.ndarray, np.int64]):
    """One Bernoulli bandit. Registered as ``metarl/Bandit-v0``."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, arms: int = DEFAULT_ARMS, horizon: int = DEFAULT_HORIZON,
                 action_space: str = "env") -> None:
        _check_settings(arms, horizon, action_space)
        self.arms, self.horizon = arms, horizon
        self.observation_space = _observation_space()
        self.action_space = gymnasium.spaces.Discrete(arms)
        # until a task is set: every arm at 1/2, so that the env is usable (and checkable)
        self._task = Task.of(probabilities=np.full(arms, 0.5))
        self._pulls = 0

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return sample_bandits(n, self.arms, rng)

    def set_task(self, task: Task) -> None:
        if task.as_array("probabilities").shape != (self.arms,):
            raise ValueError(f"task has {len(task['probabilities'])} arms, env has {self.arms}")
        self._task = task

    @property
    def task(self) -> Task:
        return self._task

    def optimal_return(self, task: Task | None = None) -> float:
        """The best expected return of one episode on ``task`` (default: the current one)."""
        return optimal_return(self._task if task is None else task, self.horizon)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._pulls = 0
        return np.ones(1, dtype=np.float32), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        arm = checked_indices(action, 1, self.arms)
        uniform = self.np_random.random(1)
        reward = bandit_rewards(self._task.as_array("probabilities")[None], arm, uniform)
        self._pulls += 1
        truncated = self._pulls >= self.horizon
        return np.ones(1, dtype=np.float32), float(reward[0]), False, truncated, {}


class BanditVectorEnv(TaskVectorEnv):
    """``num_envs`` bandits pulled as one array operation, each with its own probabilities."""

    def __init__(self, num_envs: int, arms: int = DEFAULT_ARMS, horizon: int = DEFAULT_HORIZON,
                 action_space: str = "env") -> None:
        super().__init__(num_envs)
        _check_settings(arms, horizon, action_space)
        self.arms, self.horizon = arms, horizon
        self.single_observation_space = _observation_space()
        self.single_action_space = gymnasium.spaces.Discrete(arms)
        self.observation_space = gymnasium.vector.utils.batch_space(
            self.single_observation_space, num_envs
        )
        self.action_space = gymnasium.vector.utils.batch_space(self.single_action_space, num_envs)
        self._probabilities = np.full((num_envs, arms), 0.5)
        self._pulls = 0
        self._rng = np.random.default_rng()
        self._copy_rngs: list[np.random.Generator] | None = None

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return sample_bandits(n, self.arms, rng)

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        check_task_count(tasks, self.num_envs)
        probabilities = np.stack([t.as_array("probabilities") for t in tasks])
        if probabilities.shape != (self.num_envs, self.arms):
            raise ValueError(f"tasks have {probabilities.shape[1]} arms, env has {self.arms}")
        self._probabilities = probabilities

    def optimal_return(self, task: Task) -> float:
        """The best expected return of one episode on ``task``."""
        return optimal_return(task, self.horizon)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._copy_rngs = per_copy_generators(seed, self.num_envs)
        if self._copy_rngs is None and seed is not None:
            self._rng = np.random.default_rng(seed)
        self._pulls = 0
        return np.ones((self.num_envs, 1), dtype=np.float32), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        arms = checked_indices(actions, self.num_envs, self.arms)
        if self._copy_rngs is None:
            uniforms = self._rng.random(self.num_envs)
        else:
            uniforms = np.array([rng.random() for rng in self._copy_rngs])
        rewards = bandit_rewards(self._probabilities, arms, uniforms)
        self._pulls += 1
        obs = np.ones((self.num_envs, 1), dtype=np.float32)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.full(self.num_envs, self._pulls >= self.horizon)
        return obs, rewards, terminated, truncated, {}
