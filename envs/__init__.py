"""Task-distribution environments, registered with gymnasium under the ``metarl/`` namespace.

``gymnasium.make("metarl/Navigation2D-v0")`` gives one environment (call ``set_task`` on its
``unwrapped``); ``make_task_vector_env(env_id, n)`` -- or ``gymnasium.make_vec(env_id, n,
vectorization_mode="vector_entry_point")`` -- gives ``n`` of them stepped together, one task per
sub-environment assigned with ``set_tasks``. The MuJoCo families need the ``mujoco`` extra and
are imported only when made; so are Meta-World's ML1 and ML10 benchmarks (``metarl/ML1-<task>-v3``,
``metarl/ML10-v3``, the ``metaworld`` extra; see ``metarl.envs.metaworld_tasks``).

Every environment takes ``action_space``: ``"env"`` (the default: the policy acts in the
environment's own bounds) or ``"unit"`` (it acts in [-1, 1]^d, mapped onto the bounds inside the
environment; ``metarl.envs.action_map``), in both forms. ``env_kwargs`` gives the keyword
arguments of ``gymnasium.make`` that match ``make_task_vector_env``'s settings.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np

from metarl.envs.action_map import ACTION_SPACES, check_action_space
from metarl.envs.base import Task, TaskEnv, TaskVectorEnv
from metarl.envs.maml_paper_tasks import TASK_SETS, maml_paper_test_tasks
from metarl.envs.metaworld_tasks import ML1_TASK_NAMES
from metarl.envs.navigation import Navigation2DEnv, Navigation2DVectorEnv

__all__ = [
    "ACTION_SPACES",
    "LOCOMOTION_FAMILIES",
    "TASK_SETS",
    "Navigation2DEnv",
    "Navigation2DVectorEnv",
    "Task",
    "TaskEnv",
    "TaskVectorEnv",
    "env_kwargs",
    "held_out_tasks",
    "make_task_vector_env",
    "registered_env_ids",
    "sample_held_out_tasks",
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
    "metarl/Bandit-v0": _Entry(
        "metarl.envs.bandit:BanditEnv", "metarl.envs.bandit:BanditVectorEnv"
    ),
    # RL^2's K = 10 bandits (Duan et al. 2016, arXiv:1611.02779, Sec. 4.1); Bandit-v0 has K = 5
    "metarl/Bandit-K10-v0": _Entry(
        "metarl.envs.bandit:BanditEnv", "metarl.envs.bandit:BanditVectorEnv", {"arms": 10}
    ),
    "metarl/TabularMDP-v0": _Entry(
        "metarl.envs.tabular_mdp:TabularMDPEnv", "metarl.envs.tabular_mdp:TabularMDPVectorEnv"
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
    **{
        f"metarl/ML1-{name}": _Entry(
            "metarl.envs.metaworld_tasks:MetaWorldEnv",
            "metarl.envs.metaworld_tasks:MetaWorldVectorEnv",
            {"benchmark": "ML1", "env_name": name},
        )
        for name in ML1_TASK_NAMES
    },
    "metarl/ML10-v3": _Entry(
        "metarl.envs.metaworld_tasks:MetaWorldEnv",
        "metarl.envs.metaworld_tasks:MetaWorldVectorEnv",
        {"benchmark": "ML10"},
    ),
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


def env_kwargs(env_id: str, physics: str = "peers", action_space: str = "env") -> dict[str, Any]:
    """Keyword arguments that select ``physics`` and ``action_space`` for ``env_id``: pass them to
    ``gymnasium.make`` for a single environment that matches ``make_task_vector_env(env_id, n,
    physics, action_space=action_space)``."""
    if env_id not in _ENVS:
        close = difflib.get_close_matches(env_id, registered_env_ids(), n=3, cutoff=0.8)
        hint = (f"did you mean {' or '.join(close)}?" if close else
                "the task families are listed in docs/environments.md")
        raise ValueError(f"unknown environment id {env_id!r}; {hint}")
    check_action_space(action_space)
    kwargs: dict[str, Any] = {"physics": physics} if _ENVS[env_id].has_physics else {}
    return {**kwargs, "action_space": action_space}


def make_task_vector_env(env_id: str, num_envs: int, physics: str = "peers",
                         threads: int | None = None, action_space: str = "env") -> TaskVectorEnv:
    """The natively vectorised form of ``env_id`` with ``num_envs`` sub-environments.

    ``physics`` selects the simulation setting of the MuJoCo families (see
    ``metarl.envs.locomotion``) and ``threads`` their simulator's threads (default: the usable
    cores; a Ray worker given one CPU asks for 1); other environments ignore both.
    ``action_space`` is the space the policy acts in (``metarl.envs.action_map``).
    """
    physics_kwargs = env_kwargs(env_id, physics, action_space)
    entry = _ENVS[env_id]
    module_name, class_name = entry.vector.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"{env_id} needs MuJoCo ({err.name} is missing): pip install -e '.[mujoco]'"
        ) from err
    kwargs = dict(entry.kwargs, **physics_kwargs)
    if threads is not None and entry.has_physics:
        kwargs["nthread"] = threads
    env: TaskVectorEnv = getattr(module, class_name)(num_envs, **kwargs)
    return env


def sample_held_out_tasks(env: TaskVectorEnv, n: int, rng: np.random.Generator) -> list[Task]:
    """``n`` tasks to evaluate on: the benchmark's test tasks where it has a fixed test split
    (Meta-World's ``sample_test_tasks``), else fresh draws from the task distribution."""
    sample_test = getattr(env, "sample_test_tasks", None)
    tasks: list[Task] = sample_test(n, rng) if sample_test is not None else env.sample_tasks(n, rng)
    return tasks


def held_out_tasks(env_id: str, env: TaskVectorEnv, n: int, seed: int,
                   task_set: str = "sampled") -> list[Task]:
    """The ``n`` held-out tasks of an evaluation: drawn with ``seed``
    (``sample_held_out_tasks``), or with ``task_set="maml_paper"`` the MAML paper's own test
    tasks, whatever the seed (``metarl.envs.maml_paper_tasks``)."""
    if task_set == "maml_paper":
        return maml_paper_test_tasks(env_id, n)
    return sample_held_out_tasks(env, n, np.random.default_rng(seed))
