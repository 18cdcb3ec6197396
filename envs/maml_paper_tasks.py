"""The MAML paper's own held-out test tasks (Finn et al. 2017, arXiv:1703.03400, Fig. 5).

The paper's test scripts (github.com/cbfinn/maml_rl, ``maml_examples/test_maml_*.py``) drew their
40 test goals with numpy's legacy global generator, ``np.random.seed(s)`` followed by one
``np.random.uniform`` call; the per-task results that accompany that code (``icml/*.pkl``) were
measured on them, in that order. The draws are reproducible, so a run can be evaluated on the
very tasks the paper's Figure 5 was: for 2D navigation the paper's MAML returns before any step
are a near-exact function of the distance to these goals (correlation -0.9996 over the 40 tasks).

| family | the paper's draw | task |
| --- | --- | --- |
| 2D navigation | seed 1, uniform(-0.5, 0.5) of shape (n, 2) | the goal |
| HalfCheetahVel | seed 1, uniform(0, 2) of shape (n,) | the goal velocity |
| HalfCheetahDir | seed 1, uniform(0, 2) | backward (-1) below 1, forward (+1) from 1 |
| AntVel | seed 1, uniform(0, 3) | the goal velocity |
| AntDir | seed 2, uniform(0, 3) | backward below 1.5, forward from 1.5 |

The paper evaluated 40; ``n`` above 40 continues the same stream (its first 40 tasks are the
paper's). The paper has no test script for the Ant's goal-position family.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from metarl.envs.base import Task

TASK_SETS = ("sampled", "maml_paper")  # TrainConfig.eval_task_set


def _legacy_uniform(seed: int, low: float, high: float, shape: tuple[int, ...]) -> np.ndarray:
    """What ``np.random.seed(seed); np.random.uniform(low, high, shape)`` returns."""
    draws: np.ndarray = np.random.RandomState(seed).uniform(low, high, size=shape)
    return draws


def _navigation(n: int) -> list[Task]:
    return [Task.of(goal=g) for g in _legacy_uniform(1, -0.5, 0.5, (n, 2))]


def _velocity(seed: int, high: float) -> Callable[[int], list[Task]]:
    def tasks(n: int) -> list[Task]:
        return [Task.of(velocity=float(v)) for v in _legacy_uniform(seed, 0.0, high, (n,))]

    return tasks


def _direction(seed: int, high: float) -> Callable[[int], list[Task]]:
    """The paper's direction environments took a draw in [0, high) and ran backward below its
    middle (``half_cheetah_env_rand_direc.py``, ``ant_env_rand_direc.py``)."""

    def tasks(n: int) -> list[Task]:
        draws = _legacy_uniform(seed, 0.0, high, (n,))
        return [Task.of(direction=-1.0 if d < high / 2 else 1.0) for d in draws]

    return tasks


_TEST_TASKS: dict[str, Callable[[int], list[Task]]] = {
    "metarl/Navigation2D-v0": _navigation,
    "metarl/HalfCheetahVel-v0": _velocity(1, 2.0),
    "metarl/HalfCheetahDir-v0": _direction(1, 2.0),
    "metarl/AntVel-v0": _velocity(1, 3.0),
    "metarl/AntDir-v0": _direction(2, 3.0),
}


def has_maml_paper_test_tasks(env_id: str) -> bool:
    return env_id in _TEST_TASKS


def maml_paper_test_tasks(env_id: str, n: int) -> list[Task]:
    """The first ``n`` of the MAML paper's test tasks for ``env_id``; a one-line error naming
    the environments that have them otherwise."""
    if not has_maml_paper_test_tasks(env_id):
        raise ValueError(f"the MAML paper has no test tasks for {env_id} (it has them for "
                         f"{', '.join(sorted(_TEST_TASKS))}); evaluate with --task-set sampled")
    return _TEST_TASKS[env_id](n)
