"""Task-augmented observations: the current task's parameters appended to every observation.

The MAML paper's oracle baseline (Finn et al. 2017, arXiv:1703.03400, Sec. 5.3) is a policy that
is told the task (goal position, target velocity or direction) and so needs no adaptation.
``TaskObservation`` turns any metarl ``TaskEnv`` into the environment such a policy sees, for an
ordinary RL library (stable-baselines3's PPO, say): each observation is followed by the task's
numeric parameters, and with ``resample=True`` every reset first draws a new task from the
distribution, so one training run covers all of it.

Numeric parameters are those whose values are floats or tuples of floats (``goal``,
``velocity``, ``direction``, Meta-World's ``rand_vec``); strings and integers (``env_name``,
``split``, ``index``) name a task rather than describe it and are left out unless asked for.

Each parameter has a slot of fixed width in the observation, so that every task's observation
has the same size: the widest value of that parameter over the family's tasks, the shorter
values zero-padded at the end. Only Meta-World's ML10 needs it: its ``rand_vec`` has 6 entries
(object and goal positions) for seven classes and 3 for the eight (``button-press-topdown``,
``door-open``, ``drawer-close``, ``sweep``, ``window-open``; test: ``door-close``,
``drawer-open``, ``lever-pull``) whose variation is one position. A family that lists all its
tasks (``all_tasks()``, as the Meta-World environments do) is measured over all of them, both
splits; any other family over its current task (their parameters have one shape per family).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np

from metarl.envs.base import Task, TaskEnv


def _is_real(value: Any) -> bool:
    return isinstance(value, float) and not isinstance(value, bool)


def numeric_parameter_names(task: Task) -> tuple[str, ...]:
    """Names of ``task``'s float and tuple-of-float parameters, in the task's (sorted) order."""
    return tuple(
        name for name, value in task.params
        if _is_real(value) or (isinstance(value, tuple) and value and all(map(_is_real, value)))
    )


def task_features(task: Task, names: Sequence[str],
                  widths: Sequence[int] | None = None) -> np.ndarray:
    """The values of ``names`` in ``task``, flattened and concatenated in that order (float64).

    With ``widths``, the values of ``names[i]`` are zero-padded at the end to ``widths[i]``
    entries (a ``ValueError`` if they have more).
    """
    parts = [np.ravel(np.asarray(task[name], dtype=np.float64)) for name in names]
    if widths is not None:
        if len(widths) != len(parts):
            raise ValueError(f"{len(widths)} widths for {len(parts)} parameters")
        for name, part, width in zip(names, parts, widths):
            if part.size > width:
                raise ValueError(f"task parameter {name!r} has {part.size} values, more than "
                                 f"the {width} its observation slot holds")
        parts = [np.pad(part, (0, width - part.size)) for part, width in zip(parts, widths)]
    return np.concatenate(parts) if parts else np.zeros(0)


def feature_widths(env: Any, names: Sequence[str], tasks: Sequence[Task]) -> tuple[int, ...]:
    """The observation slot width of each parameter in ``names`` for ``env``'s task family
    (``env`` a ``TaskEnv`` or ``TaskVectorEnv``): its widest value over every task of the
    family where ``env.all_tasks()`` lists them (Meta-World), and over ``tasks``."""
    listed = getattr(env, "all_tasks", None)
    pool = [*tasks, *(listed() if listed is not None else ())]
    return tuple(max(np.size(task[name]) for task in pool) for name in names)


class TaskObservation(gymnasium.ObservationWrapper[np.ndarray, Any, np.ndarray],
                      gymnasium.utils.RecordConstructorArgs):
    """``env`` with the current task's parameters ``parameters`` (default: the numeric ones)
    appended to each (flat ``Box``) observation, each in a slot of the family's width
    (``widths``, see the module docstring).

    ``resample``: draw a new task with ``sample_tasks`` before every reset, from a generator
    seeded by ``seed`` and re-seeded by ``reset(seed=...)``. Otherwise the task is whatever
    ``env.unwrapped.set_task`` last chose, read afresh at every step.
    """

    def __init__(self, env: gymnasium.Env[np.ndarray, Any], parameters: Sequence[str] | None = None,
                 resample: bool = False, seed: int | None = None) -> None:
        # recorded so that gymnasium can rebuild the wrapped environment from its spec
        gymnasium.utils.RecordConstructorArgs.__init__(
            self, parameters=None if parameters is None else tuple(parameters),
            resample=resample, seed=seed,
        )
        gymnasium.ObservationWrapper.__init__(self, env)
        task_env = env.unwrapped
        if not isinstance(task_env, TaskEnv):
            raise ValueError(f"{task_env} is not a metarl TaskEnv: it has no task to append")
        self.task_env: TaskEnv[np.ndarray, Any] = task_env
        inner = env.observation_space
        if not isinstance(inner, gymnasium.spaces.Box) or len(inner.shape) != 1:
            raise ValueError(f"TaskObservation needs a flat Box observation space, got {inner}")
        task = task_env.task
        self.parameters = tuple(numeric_parameter_names(task) if parameters is None
                                else parameters)
        self.widths = feature_widths(task_env, self.parameters, [task])
        size = sum(self.widths)
        dtype = inner.dtype
        self.observation_space = gymnasium.spaces.Box(
            np.concatenate([inner.low, np.full(size, -np.inf)]).astype(dtype),
            np.concatenate([inner.high, np.full(size, np.inf)]).astype(dtype),
            dtype=dtype,
        )
        self.resample = resample
        self._rng = np.random.default_rng(seed)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if self.resample:
            if seed is not None:
                self._rng = np.random.default_rng(seed)
            self.task_env.set_task(self.task_env.sample_tasks(1, self._rng)[0])
        return super().reset(seed=seed, options=options)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        features = task_features(self.task_env.task, self.parameters, self.widths)
        dtype = self.observation_space.dtype
        return np.concatenate([np.asarray(observation).ravel(), features]).astype(dtype)
