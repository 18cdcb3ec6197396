"""Random tabular MDPs, the second benchmark of RL^2 (Duan et al. 2016, "RL^2: Fast
Reinforcement Learning via Slow Reinforcement Learning", arXiv:1611.02779, Sec. 4.2).

A task is an MDP with ``states`` states (10 in the paper) and ``actions`` actions (5): for every
(state, action) pair a distribution over next states drawn from a flat Dirichlet (all
concentrations 1, i.e. uniform on the simplex) and a mean reward drawn from N(1, 1). A step in
state s with action a (an index in ``Discrete(actions)``) pays a reward drawn from N(mean(s, a),
1) and moves to a next state drawn from the (s, a) distribution. An episode lasts ``horizon``
steps (10 in the paper; the paper's trials are n such episodes of one MDP); it is truncated after
the last step, never terminated. The observation is the one-hot encoding of the current state.

Start state: every episode starts in state 0. This is a choice of this implementation, not a
setting quoted from the paper (check Sec. 4.2 before comparing numbers with it). It costs no
generality in distribution: the Dirichlet and normal draws are exchangeable across states, so
a fixed start state is as good as any other, and it makes ``optimal_return`` one value.

The best expected return of an episode on a task is the finite-horizon optimal value of the
start state, by backward induction over the ``horizon`` steps (``value_iteration``; Bellman
1957; Puterman 1994, Sec. 4.5); ``optimal_return`` is that value, the ceiling of an adaptive
policy that does not know the MDP.

Randomness: each step draws one uniform (the next state, by inverting the cumulative
distribution) and then one standard normal (the reward's noise). The single environment draws
them from its ``np_random``; the vector form reset with a list of seeds gives every copy its own
generator seeded as a single environment's ``reset(seed=...)`` seeds it, so that it reproduces
single environments; reset with one seed or none, it draws the whole batch from one generator.
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

DEFAULT_STATES = 10
DEFAULT_ACTIONS = 5
DEFAULT_HORIZON = 10
START_STATE = 0


def sample_mdps(n: int, states: int, actions: int, rng: np.random.Generator) -> list[Task]:
    """``n`` MDPs drawn with ``rng`` only, one task after another (so that the first tasks do
    not depend on ``n``): flat-Dirichlet transitions, then N(1, 1) mean rewards."""
    tasks = []
    for _ in range(n):
        transitions = rng.dirichlet(np.ones(states), size=(states, actions))
        mean_rewards = rng.normal(1.0, 1.0, size=(states, actions))
        tasks.append(mdp_task(transitions, mean_rewards))
    return tasks


def mdp_task(transitions: np.ndarray, mean_rewards: np.ndarray) -> Task:
    """The task of an MDP with ``transitions [S, A, S]`` (rows sum to 1) and ``mean_rewards
    [S, A]``, stored flat so that the task stays hashable (``Task`` keeps 1-D tuples)."""
    transitions = np.asarray(transitions, dtype=np.float64)
    mean_rewards = np.asarray(mean_rewards, dtype=np.float64)
    s, a = mean_rewards.shape
    if transitions.shape != (s, a, s):
        raise ValueError(f"transitions have shape {transitions.shape}, expected {(s, a, s)}")
    if np.any(transitions < 0) or not np.allclose(transitions.sum(-1), 1.0):
        raise ValueError("every transitions[s, a] must be a probability distribution")
    return Task.of(transitions=transitions.ravel(), mean_rewards=mean_rewards.ravel())


def task_arrays(task: Task, states: int, actions: int) -> tuple[np.ndarray, np.ndarray]:
    """``(transitions [S, A, S], mean_rewards [S, A])`` of ``task``, checked against the sizes."""
    transitions = task.as_array("transitions")
    mean_rewards = task.as_array("mean_rewards")
    if transitions.size != states * actions * states or mean_rewards.size != states * actions:
        raise ValueError(f"task does not describe an MDP with {states} states and {actions} "
                         "actions")
    return transitions.reshape(states, actions, states), mean_rewards.reshape(states, actions)


def value_iteration(
    transitions: np.ndarray, mean_rewards: np.ndarray, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Finite-horizon optimal values and policy by backward induction (undiscounted).

    With V_0 = 0 and, for k = 1..horizon steps to go, Q_k(s, a) = r(s, a) + sum_s' P(s' | s, a)
    V_{k-1}(s') and V_k(s) = max_a Q_k(s, a), returns ``(V_horizon [..., S], policy [...,
    horizon, S])``, where ``policy[..., t, s]`` is an optimal action at step t (horizon - t steps
    to go). ``transitions`` is ``[..., S, A, S]`` and ``mean_rewards`` ``[..., S, A]``; leading
    dimensions are a batch of MDPs.
    """
    if horizon < 0:
        raise ValueError(f"horizon must be >= 0, got {horizon}")
    values = np.zeros(mean_rewards.shape[:-1])
    greedy = []
    for _ in range(horizon):
        q = mean_rewards + np.einsum("...san,...n->...sa", transitions, values)
        values = q.max(axis=-1)
        greedy.append(q.argmax(axis=-1))
    # computed from the last step backwards; the policy is indexed by step from the first
    policy = (np.stack(greedy[::-1], axis=-2) if greedy
              else np.zeros((*mean_rewards.shape[:-2], 0, mean_rewards.shape[-2]), np.int64))
    return values, policy


def optimal_return(task: Task, states: int, actions: int, horizon: int) -> float:
    """The best expected return of an episode of ``horizon`` steps from ``START_STATE``."""
    values, _ = value_iteration(*task_arrays(task, states, actions), horizon)
    return float(values[START_STATE])


def mdp_step(
    transitions: np.ndarray, mean_rewards: np.ndarray, states: np.ndarray, actions: np.ndarray,
    uniforms: np.ndarray, noise: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """One step of ``N`` MDPs (``transitions [N, S, A, S]``, ``mean_rewards [N, S, A]``) in
    ``states [N]`` with ``actions [N]``; returns ``(next_states, rewards)``.

    The next state is the first s' whose cumulative probability exceeds the uniform draw
    (inverse-CDF sampling, so s' has probability P(s' | s, a)); the reward is the mean plus the
    standard normal ``noise``.
    """
    rows = np.arange(len(states))
    cumulative = np.cumsum(transitions[rows, states, actions], axis=-1)
    # clipped: rounding may leave the last cumulative value a hair under a uniform near 1
    next_states = np.minimum((cumulative <= uniforms[:, None]).sum(-1), transitions.shape[-1] - 1)
    rewards = mean_rewards[rows, states, actions] + noise
    return next_states, rewards


def _check_settings(states: int, actions: int, horizon: int, action_space: str) -> None:
    check_action_space(action_space)
    if action_space != "env":
        raise ValueError("a tabular MDP's actions are indices; there is no unit box to map from "
                         f"(action_space={action_space!r})")
    if states < 1 or actions < 1 or horizon < 1:
        raise ValueError(f"states, actions and horizon must be >= 1, got {states}, {actions} "
                         f"and {horizon}")


def _observation_space(states: int) -> gymnasium.spaces.Box:
    return gymnasium.spaces.Box(0.0, 1.0, shape=(states,), dtype=np.float32)


def _one_hot(states: np.ndarray, count: int) -> np.ndarray:
    obs = np.zeros((len(states), count), dtype=np.float32)
    obs[np.arange(len(states)), states] = 1.0
    return obs


def _uniform_mdp(states: int, actions: int) -> Task:
    # until a task is set: uniform transitions and the prior mean reward, a valid MDP
    return mdp_task(np.full((states, actions, states), 1.0 / states),
                    np.ones((states, actions)))


class TabularMDPEnv(TaskEnv[np.ndarray, np.int64]):
    """One random tabular MDP. Registered as ``metarl/TabularMDP-v0``."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, states: int = DEFAULT_STATES, actions: int = DEFAULT_ACTIONS,
                 horizon: int = DEFAULT_HORIZON, action_space: str = "env") -> None:
        _check_settings(states, actions, horizon, action_space)
        self.states, self.actions, self.horizon = states, actions, horizon
        self.observation_space = _observation_space(states)
        self.action_space = gymnasium.spaces.Discrete(actions)
        self.set_task(_uniform_mdp(states, actions))
        self._state = np.array([START_STATE])
        self._steps = 0

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return sample_mdps(n, self.states, self.actions, rng)

    def set_task(self, task: Task) -> None:
        transitions, mean_rewards = task_arrays(task, self.states, self.actions)
        self._task = task
        self._transitions, self._mean_rewards = transitions[None], mean_rewards[None]

    @property
    def task(self) -> Task:
        return self._task

    def optimal_return(self, task: Task | None = None) -> float:
        """The best expected return of one episode on ``task`` (default: the current one)."""
        return optimal_return(self._task if task is None else task, self.states, self.actions,
                              self.horizon)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._state = np.array([START_STATE])
        self._steps = 0
        return _one_hot(self._state, self.states)[0], {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        index = checked_indices(action, 1, self.actions)
        uniform = self.np_random.random(1)
        noise = self.np_random.standard_normal(1)
        self._state, reward = mdp_step(self._transitions, self._mean_rewards, self._state, index,
                                       uniform, noise)
        self._steps += 1
        truncated = self._steps >= self.horizon
        return _one_hot(self._state, self.states)[0], float(reward[0]), False, truncated, {}


class TabularMDPVectorEnv(TaskVectorEnv):
    """``num_envs`` tabular MDPs stepped as one array operation, each with its own task."""

    def __init__(self, num_envs: int, states: int = DEFAULT_STATES,
                 actions: int = DEFAULT_ACTIONS, horizon: int = DEFAULT_HORIZON,
                 action_space: str = "env") -> None:
        super().__init__(num_envs)
        _check_settings(states, actions, horizon, action_space)
        self.states, self.actions, self.horizon = states, actions, horizon
        self.single_observation_space = _observation_space(states)
        self.single_action_space = gymnasium.spaces.Discrete(actions)
        self.observation_space = gymnasium.vector.utils.batch_space(
            self.single_observation_space, num_envs
        )
        self.action_space = gymnasium.vector.utils.batch_space(self.single_action_space, num_envs)
        self.set_tasks([_uniform_mdp(states, actions)] * num_envs)
        self._state = np.full(num_envs, START_STATE)
        self._steps = 0
        self._rng = np.random.default_rng()
        self._copy_rngs: list[np.random.Generator] | None = None

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return sample_mdps(n, self.states, self.actions, rng)

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        check_task_count(tasks, self.num_envs)
        arrays = [task_arrays(t, self.states, self.actions) for t in tasks]
        self._transitions = np.stack([p for p, _ in arrays])
        self._mean_rewards = np.stack([r for _, r in arrays])

    def optimal_return(self, task: Task) -> float:
        """The best expected return of one episode on ``task``."""
        return optimal_return(task, self.states, self.actions, self.horizon)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._copy_rngs = per_copy_generators(seed, self.num_envs)
        if self._copy_rngs is None and seed is not None:
            self._rng = np.random.default_rng(seed)
        self._state = np.full(self.num_envs, START_STATE)
        self._steps = 0
        return _one_hot(self._state, self.states), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        indices = checked_indices(actions, self.num_envs, self.actions)
        if self._copy_rngs is None:
            uniforms = self._rng.random(self.num_envs)
            noise = self._rng.standard_normal(self.num_envs)
        else:  # the single environment's order: the uniform, then the normal
            draws = [(rng.random(), rng.standard_normal()) for rng in self._copy_rngs]
            uniforms = np.array([u for u, _ in draws])
            noise = np.array([z for _, z in draws])
        self._state, rewards = mdp_step(self._transitions, self._mean_rewards, self._state,
                                        indices, uniforms, noise)
        self._steps += 1
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.full(self.num_envs, self._steps >= self.horizon)
        return _one_hot(self._state, self.states), rewards, terminated, truncated, {}
