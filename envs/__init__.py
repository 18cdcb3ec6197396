"""Task-distribution environments, registered with gymnasium under the ``metarl/`` namespace.

``gymnasium.make("metarl/Navigation2D-v0")`` gives one environment;
``make_task_vector_env("metarl/Navigation2D-v0", n)`` gives ``n`` of them stepped together.
"""

from __future__ import annotations

from typing import Any

import gymnasium

from metarl.envs.base import Task, TaskEnv, TaskVectorEnv
from metarl.envs.navigation import Navigation2DEnv, Navigation2DVectorEnv

__all__ = [
    "Navigation2DEnv",
    "Navigation2DVectorEnv",
    "Task",
    "TaskEnv",
    "TaskVectorEnv",
    "make_task_vector_env",
    "registered_env_ids",
]

# env id -> (single environment, natively vectorised form)
_ENVS: dict[str, tuple[type[TaskEnv[Any, Any]], type[TaskVectorEnv]]] = {
    "metarl/Navigation2D-v0": (Navigation2DEnv, Navigation2DVectorEnv),
}

for _env_id, (_single, _vector) in _ENVS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(
            id=_env_id,
            entry_point=f"{_single.__module__}:{_single.__name__}",
            vector_entry_point=f"{_vector.__module__}:{_vector.__name__}",
        )


def registered_env_ids() -> list[str]:
    return sorted(_ENVS)


def make_task_vector_env(env_id: str, num_envs: int) -> TaskVectorEnv:
    """The natively vectorised form of ``env_id`` with ``num_envs`` sub-environments."""
    if env_id not in _ENVS:
        known = ", ".join(registered_env_ids())
        raise ValueError(f"unknown environment id {env_id!r} (known: {known})")
    return _ENVS[env_id][1](num_envs)
