"""Task-distribution environments, registered with gymnasium under the ``metarl/`` namespace.

``gymnasium.make("metarl/Navigation2D-v0")`` gives one environment (call ``set_task`` on its
``unwrapped``); ``make_task_vector_env(env_id, n)`` -- or ``gymnasium.make_vec(env_id, n,
vectorization_mode="vector_entry_point")`` -- gives ``n`` of them stepped together, one task per
sub-environment assigned with ``set_tasks``. The MuJoCo families need the ``mujoco`` extra and
are imported only when made.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import gymnasium

from metarl.envs.base import Task, TaskEnv, TaskVectorEnv
from metarl.envs.navigation import Navigation2DEnv, Navigation2DVectorEnv

__all__ = [
    "LOCOMOTION_FAMILIES",
    "Navigation2DEnv",
    "Navigation2DVectorEnv",
    "Task",
    "TaskEnv",
    "TaskVectorEnv",
    "env_kwargs",
    "make_task_vector_env",
    "registered_env_ids",
]

LOCOMOTION_FAMILIES = ("HalfCheetahVel", "HalfCheetahDir", "AntVel", "AntDir", "AntGoal")


@dataclass(frozen=True)
class _Entry:
    single: str  # "module:Class" of the single environment
    vector: str  # "module:Class" of the natively vectorised form
    kwargs: dict[str, Any] = field(default_factory=dict)
    has_physics: bool = False  # takes a `physics` setting


_ENVS: dict[str, _Entry] = {
    "metarl/Navigation2D-v0": _Entry(
        "metarl.envs.navigation:Navigation2DEnv", "metarl.envs.navigation:Navigation2DVectorEnv"
    ),
    **{
        f"metarl/{family}-v0": _Entry(
            "metarl.envs.locomotion:LocomotionEnv",
            "metarl.envs.batched_mujoco:LocomotionVectorEnv",
            {"family": family},
            has_physics=True,
        )
        for family in LOCOMOTION_FAMILIES
    },
}

for _env_id, _entry in _ENVS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(
            id=_env_id,
            entry_point=_entry.single,
            vector_entry_point=_entry.vector,
            kwargs=dict(_entry.kwargs),
        )


def registered_env_ids() -> list[str]:
    return sorted(_ENVS)


def env_kwargs(env_id: str, physics: str = "peers") -> dict[str, Any]:
    """Keyword arguments that select ``physics`` for ``env_id``: pass them to ``gymnasium.make``
    for a single environment that matches ``make_task_vector_env(env_id, n, physics)``."""
    if env_id not in _ENVS:
        known = ", ".join(registered_env_ids())
        raise ValueError(f"unknown environment id {env_id!r} (known: {known})")
    return {"physics": physics} if _ENVS[env_id].has_physics else {}


def make_task_vector_env(env_id: str, num_envs: int, physics: str = "peers") -> TaskVectorEnv:
    """The natively vectorised form of ``env_id`` with ``num_envs`` sub-environments.

    ``physics`` selects the simulation setting of the MuJoCo families (see
    ``metarl.envs.locomotion``); other environments ignore it.
    """
    physics_kwargs = env_kwargs(env_id, physics)
    entry = _ENVS[env_id]
    module_name, class_name = entry.vector.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"{env_id} needs MuJoCo ({err.name} is missing): pip install -e '.[mujoco]'"
        ) from err
    kwargs = dict(entry.kwargs, **physics_kwargs)
    env: TaskVectorEnv = getattr(module, class_name)(num_envs, **kwargs)
    return env
