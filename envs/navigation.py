"""2D point navigation, the MAML paper's simplest meta-RL benchmark (Finn et al. 2017,
arXiv:1703.03400, Sec. 5.3).

A point starts at the origin and must reach a goal drawn uniformly from [-0.5, 0.5]^2. The
observation is its 2-D position, the action a velocity clipped to [-0.1, 0.1] per axis, and the
reward after each step minus the Euclidean distance to the goal. An episode ends when the point is
within 0.01 of the goal on both axes; the horizon (100 in the paper) is the rollout's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np

from metarl.envs.base import Task, TaskEnv, TaskVectorEnv, check_task_count

GOAL_LOW, GOAL_HIGH = -0.5, 0.5
MAX_SPEED = 0.1
SUCCESS_RADIUS = 0.01


def sample_goals(n: int, rng: np.random.Generator) -> list[Task]:
    goals = rng.uniform(GOAL_LOW, GOAL_HIGH, size=(n, 2))
    return [Task.of(goal=g) for g in goals]


def navigation_step(
    positions: np.ndarray, actions: np.ndarray, goals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Advance points ``[..., 2]`` by clipped velocities; returns positions, rewards, terminated."""
    positions = positions + np.clip(actions, -MAX_SPEED, MAX_SPEED)
    offset = positions - goals
    rewards = -np.sqrt(np.sum(offset**2, axis=-1))
    terminated = np.all(np.abs(offset) < SUCCESS_RADIUS, axis=-1)
    return positions, rewards, terminated


def _spaces() -> tuple[gymnasium.spaces.Box, gymnasium.spaces.Box]:
    observation = gymnasium.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
    action = gymnasium.spaces.Box(-MAX_SPEED, MAX_SPEED, shape=(2,), dtype=np.float32)
    return observation, action


class Navigation2DEnv(TaskEnv[np.ndarray, np.ndarray]):
    """One point, one goal. Registered as ``metarl/Navigation2D-v0``."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, goal: Sequence[float] = (0.0, 0.0)) -> None:
        self.observation_space, self.action_space = _spaces()
        self._task = Task.of(goal=np.asarray(goal, dtype=np.float64))
        self._position = np.zeros(2)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return sample_goals(n, rng)

    def set_task(self, task: Task) -> None:
        self._task = task

    @property
    def task(self) -> Task:
        return self._task

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._position = np.zeros(2)
        return self._position.astype(np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        position, reward, terminated = navigation_step(
            self._position, np.asarray(action, dtype=np.float64), self._task.as_array("goal")
        )
        self._position = position
        return position.astype(np.float32), float(reward), bool(terminated), False, {}


class Navigation2DVectorEnv(TaskVectorEnv):
    """``num_envs`` points stepped as one array operation, each with its own goal."""

    def __init__(self, num_envs: int) -> None:
        super().__init__(num_envs)
        self.single_observation_space, self.single_action_space = _spaces()
        self.observation_space = gymnasium.vector.utils.batch_space(
            self.single_observation_space, num_envs
        )
        self.action_space = gymnasium.vector.utils.batch_space(self.single_action_space, num_envs)
        self._goals = np.zeros((num_envs, 2))
        self._positions = np.zeros((num_envs, 2))

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return sample_goals(n, rng)

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        check_task_count(tasks, self.num_envs)
        self._goals = np.stack([t.as_array("goal") for t in tasks])

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._positions = np.zeros((self.num_envs, 2))
        return self._positions.astype(np.float32), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        self._positions, rewards, terminated = navigation_step(
            self._positions, np.asarray(actions, dtype=np.float64), self._goals
        )
        truncated = np.zeros(self.num_envs, dtype=bool)
        return self._positions.astype(np.float32), rewards, terminated, truncated, {}
