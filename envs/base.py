"""The task-distribution environment API shared by every metarl environment.

A meta-RL benchmark is a distribution over tasks (goals, target velocities, ...). A ``TaskEnv`` is
an ordinary ``gymnasium.Env`` for one fixed task plus two methods: ``sample_tasks`` draws tasks
from the distribution and ``set_task`` selects one. ``reset`` never changes the task, so an
episode always belongs to the task that was set, which is what the inner loop of MAML
(Finn et al. 2017, arXiv:1703.03400) assumes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import gymnasium
import numpy as np

ObsT = TypeVar("ObsT")
ActT = TypeVar("ActT")


@dataclass(frozen=True)
class Task:
    """One task of a distribution: an immutable bag of named parameters.

    ``params`` maps a name (``"goal"``, ``"velocity"``, ...) to a value; array-valued parameters
    are stored as tuples so tasks are hashable and compare by value.
    """

    params: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, **params: Any) -> Task:
        frozen = tuple(
            (name, tuple(np.asarray(v).tolist()) if np.ndim(v) else v)
            for name, v in sorted(params.items())
        )
        return cls(frozen)

    def __getitem__(self, name: str) -> Any:
        for key, value in self.params:
            if key == name:
                return value
        raise KeyError(f"task has no parameter {name!r}")

    def as_array(self, name: str) -> np.ndarray:
        return np.asarray(self[name], dtype=np.float64)


class TaskEnv(gymnasium.Env[ObsT, ActT], Generic[ObsT, ActT]):
    """A gymnasium environment whose dynamics or reward depend on a settable ``Task``."""

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        """Draw ``n`` tasks from the task distribution using ``rng`` only."""
        raise NotImplementedError

    def set_task(self, task: Task) -> None:
        """Make ``task`` the current task; takes effect from the next ``reset``."""
        raise NotImplementedError

    @property
    def task(self) -> Task:
        raise NotImplementedError


class TaskVectorEnv(gymnasium.vector.VectorEnv):
    """Many copies of one task family stepped together, one task per sub-environment.

    Autoreset is disabled: a rollout resets every sub-environment once and then steps a fixed
    horizon, masking the steps that follow a termination.
    """

    metadata = {"autoreset_mode": gymnasium.vector.AutoresetMode.DISABLED}

    def __init__(self, num_envs: int) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs

    @property
    def obs_dim(self) -> int:
        """Length of one sub-environment's (flat) observation."""
        return int(np.prod(self.single_observation_space.shape or (1,)))

    @property
    def act_dim(self) -> int:
        """Length of one sub-environment's (flat) action."""
        return int(np.prod(self.single_action_space.shape or (1,)))

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        raise NotImplementedError

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        """Assign ``tasks[i]`` to sub-environment ``i``; ``len(tasks)`` must equal ``num_envs``."""
        raise NotImplementedError

    def step_alive(
        self, actions: np.ndarray, alive: np.ndarray
    ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step the copies where ``alive`` (bool ``[num_envs]``) is true; what the others return
        is unspecified (a rollout masks it). Here all copies are stepped; a simulator whose
        finished copies would still cost time skips them."""
        return self.step(actions)


def usable_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def checked_action(action: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``action`` as float64 of exactly ``shape``; a wrong shape or a NaN/inf is a ValueError."""
    array = np.asarray(action, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"action has shape {array.shape}, expected {shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"action holds {int((~np.isfinite(array)).sum())} non-finite value(s)")
    return array


def check_task_count(tasks: Sequence[Task], num_envs: int) -> None:
    if len(tasks) != num_envs:
        raise ValueError(f"got {len(tasks)} tasks for {num_envs} sub-environments")


def per_copy_generators(seed: int | list[int] | None,
                        num_envs: int) -> list[np.random.Generator] | None:
    """For gymnasium's one-seed-per-sub-environment ``reset(seed=[...])``: one generator per
    copy, so that each copy draws as a single environment reset with its seed would; None for
    one seed (or none) for the whole batch."""
    if not isinstance(seed, list):
        return None
    if len(seed) != num_envs:
        raise ValueError(f"got {len(seed)} seeds for {num_envs} sub-environments")
    return [np.random.default_rng(s) for s in seed]
