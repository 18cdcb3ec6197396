"""The discrete task families of RL^2 (Duan et al. 2016, arXiv:1611.02779): Bernoulli bandits
(``metarl/Bandit-v0``) and random tabular MDPs (``metarl/TabularMDP-v0``).

Statistical checks use tolerances whose chance of failing on a correct environment is at most
about 1e-6 (seeds are fixed, so a run is deterministic; the bound says that the seed was not
picked to make the test pass). For a mean of n values in [0, 1], Hoeffding's inequality gives
P(|mean - p| >= t) <= 2 exp(-2 n t^2); for k means at once the union bound multiplies by k, so
t = sqrt(log(2 k / 1e-6) / (2 n)).
"""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import metarl.envs  # noqa: F401  (registers the metarl/ environments)
from metarl.envs import Task, make_task_vector_env
from metarl.envs.bandit import BanditEnv, BanditVectorEnv, optimal_return
from metarl.envs.tabular_mdp import (
    START_STATE,
    TabularMDPEnv,
    TabularMDPVectorEnv,
    mdp_task,
    value_iteration,
)

FAILURE = 1e-6  # allowed chance that a statistical check fails a correct environment


def hoeffding_tolerance(n: int, k: int) -> float:
    """Half-width t such that k means of n [0, 1] values all lie within t of their
    expectations except with probability at most FAILURE (Hoeffding and a union bound)."""
    return math.sqrt(math.log(2 * k / FAILURE) / (2 * n))


@pytest.mark.parametrize("env_id", ["metarl/Bandit-v0", "metarl/TabularMDP-v0"])
def test_passes_gymnasium_env_checker(env_id: str) -> None:
    env = gymnasium.make(env_id).unwrapped
    assert isinstance(env, BanditEnv | TabularMDPEnv)
    env.set_task(env.sample_tasks(1, np.random.default_rng(0))[0])
    check_env(env, skip_render_check=True)


# ---------------------------------------------------------------- bandit


def test_bandit_reward_frequencies_match_the_arm_probabilities() -> None:
    probabilities = np.array([0.1, 0.5, 0.85])
    task = Task.of(probabilities=probabilities)
    # the vectorised form, one generator for the batch: every arm pulled `pulls` times at once
    pulls = 20_000
    vector = BanditVectorEnv(3 * pulls, arms=3)
    vector.set_tasks([task] * (3 * pulls))
    vector.reset(seed=11)
    _, rewards, _, _, _ = vector.step(np.repeat(np.arange(3), pulls))
    assert set(np.unique(rewards)) <= {0.0, 1.0}
    frequencies = rewards.reshape(3, pulls).mean(axis=1)
    tolerance = hoeffding_tolerance(pulls, 3)  # about 0.020
    assert np.all(np.abs(frequencies - probabilities) < tolerance), (frequencies, tolerance)
    # the single environment, fewer pulls: arm i pulled `pulls` times in a row
    pulls = 4_000
    env = BanditEnv(arms=3, horizon=3 * pulls)
    env.set_task(task)
    env.reset(seed=12)
    single = np.array([[env.step(np.int64(arm))[1] for _ in range(pulls)] for arm in range(3)])
    tolerance = hoeffding_tolerance(pulls, 3)  # about 0.044
    assert np.all(np.abs(single.mean(axis=1) - probabilities) < tolerance)


def test_bandit_episode_observation_and_optimal_return() -> None:
    env = BanditEnv(arms=4, horizon=3)
    task = Task.of(probabilities=[0.2, 0.9, 0.4, 0.0])
    env.set_task(task)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and np.array_equal(obs, [1.0])
    truncations = [env.step(np.int64(1))[3] for _ in range(3)]
    assert truncations == [False, False, True]
    # arm 3 never pays, whatever the draw
    env.reset()
    assert all(env.step(np.int64(3))[1] == 0.0 for _ in range(3))
    assert env.optimal_return() == pytest.approx(3 * 0.9)
    assert optimal_return(task, 100) == pytest.approx(90.0)
    assert BanditVectorEnv(2, arms=4, horizon=3).optimal_return(task) == pytest.approx(2.7)


def test_bandit_tasks_are_uniform_probabilities_drawn_from_the_generator_only() -> None:
    env = BanditEnv(arms=5)
    a = env.sample_tasks(200, np.random.default_rng(1))
    assert a == env.sample_tasks(200, np.random.default_rng(1))
    assert a[:3] == env.sample_tasks(3, np.random.default_rng(1))
    probabilities = np.stack([t.as_array("probabilities") for t in a])
    assert probabilities.shape == (200, 5)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    # 1000 U[0, 1] draws: their mean is within the Hoeffding tolerance of 1/2
    assert abs(probabilities.mean() - 0.5) < hoeffding_tolerance(1000, 1)


# ---------------------------------------------------------------- tabular MDP


def _tiny_mdp() -> tuple[np.ndarray, np.ndarray]:
    """Two states, two actions. State 0: action 0 pays 1 and stays, action 1 pays 0 and moves
    to state 1. State 1: action 0 pays 3 and moves to state 0 or stays with probability 1/2
    each, action 1 pays 2.5 and stays."""
    transitions = np.array([[[1.0, 0.0], [0.0, 1.0]],
                            [[0.5, 0.5], [0.0, 1.0]]])
    mean_rewards = np.array([[1.0, 0.0],
                             [3.0, 2.5]])
    return transitions, mean_rewards


def test_value_iteration_on_a_tiny_mdp_by_hand() -> None:
    transitions, mean_rewards = _tiny_mdp()
    # Steps to go k, V_k(s) = max_a [r(s, a) + sum_s' P(s' | s, a) V_{k-1}(s')], V_0 = 0:
    # k = 1: V(0) = max(1, 0) = 1 (a0);           V(1) = max(3, 2.5) = 3 (a0)
    # k = 2: V(0) = max(1 + 1, 0 + 3) = 3 (a1);   V(1) = max(3 + (1 + 3)/2, 2.5 + 3) = 5.5 (a1)
    # k = 3: V(0) = max(1 + 3, 0 + 5.5) = 5.5 (a1);
    #        V(1) = max(3 + (3 + 5.5)/2, 2.5 + 5.5) = max(7.25, 8) = 8 (a1)
    # From state 0: move to state 1, stay there once for 2.5, then take the 3: 0 + 2.5 + 3.
    values, policy = value_iteration(transitions, mean_rewards, 3)
    assert np.allclose(values, [5.5, 8.0])
    assert policy.tolist() == [[1, 1], [1, 1], [0, 0]]  # by step t = 0, 1, 2
    values_1, policy_1 = value_iteration(transitions, mean_rewards, 1)
    assert np.allclose(values_1, [1.0, 3.0]) and policy_1.tolist() == [[0, 0]]
    values_0, policy_0 = value_iteration(transitions, mean_rewards, 0)
    assert np.array_equal(values_0, [0.0, 0.0]) and policy_0.shape == (0, 2)
    task = mdp_task(transitions, mean_rewards)
    assert TabularMDPEnv(states=2, actions=2, horizon=3).optimal_return(task) == 5.5
    assert START_STATE == 0


def test_value_iteration_takes_a_batch_of_mdps() -> None:
    tasks = TabularMDPEnv().sample_tasks(3, np.random.default_rng(4))
    arrays = [(t.as_array("transitions").reshape(10, 5, 10),
               t.as_array("mean_rewards").reshape(10, 5)) for t in tasks]
    values, policy = value_iteration(np.stack([p for p, _ in arrays]),
                                     np.stack([r for _, r in arrays]), 10)
    assert values.shape == (3, 10) and policy.shape == (3, 10, 10)
    for i, (p, r) in enumerate(arrays):
        v, pi = value_iteration(p, r, 10)
        assert np.allclose(values[i], v) and np.array_equal(policy[i], pi)


def test_mdp_transitions_and_rewards_by_hand() -> None:
    transitions, mean_rewards = _tiny_mdp()
    env = TabularMDPEnv(states=2, actions=2, horizon=4)
    env.set_task(mdp_task(transitions, mean_rewards))
    obs, _ = env.reset(seed=5)
    assert obs.dtype == np.float32 and np.array_equal(obs, [1.0, 0.0])  # one-hot state 0
    # each step draws a uniform (next state) and then a standard normal (reward noise)
    draws = np.random.default_rng(5)
    # state 0, action 1: reward 0 + noise, to state 1 surely
    u, z = draws.random(), draws.standard_normal()
    obs, reward, terminated, truncated, _ = env.step(np.int64(1))
    assert np.array_equal(obs, [0.0, 1.0]) and reward == pytest.approx(0.0 + z)
    assert not terminated and not truncated
    # state 1, action 0: reward 3 + noise, to state 0 when the uniform is below 1/2
    u, z = draws.random(), draws.standard_normal()
    obs, reward, _, _, _ = env.step(np.int64(0))
    assert reward == pytest.approx(3.0 + z)
    assert np.array_equal(obs, [1.0, 0.0] if u < 0.5 else [0.0, 1.0])
    # two more steps and the episode is truncated at the horizon, never terminated
    assert [env.step(np.int64(1))[2:4] for _ in range(2)] == [(False, False), (False, True)]


def test_mdp_transition_and_reward_statistics() -> None:
    # From state 0, action 1 moves to state 1 with probability 0.3; its mean reward is -0.7.
    transitions = np.array([[[1.0, 0.0], [0.7, 0.3]], [[0.5, 0.5], [0.0, 1.0]]])
    mean_rewards = np.array([[1.0, -0.7], [0.0, 0.0]])
    n = 50_000
    vector = TabularMDPVectorEnv(n, states=2, actions=2)
    vector.set_tasks([mdp_task(transitions, mean_rewards)] * n)
    vector.reset(seed=3)
    obs, rewards, _, _, _ = vector.step(np.ones(n, dtype=np.int64))
    assert abs(obs[:, 1].mean() - 0.3) < hoeffding_tolerance(n, 1)  # about 0.012
    # rewards N(-0.7, 1): their mean is N(-0.7, 1/n), beyond 5.3 standard errors w.p. < 1.2e-7
    assert abs(rewards.mean() + 0.7) < 5.3 / math.sqrt(n)
    # and their variance 1: the sample variance's standard error is about sqrt(2 / n)
    assert abs(rewards.var() - 1.0) < 6 * math.sqrt(2 / n)


def test_mdp_tasks_are_dirichlet_rows_and_normal_rewards() -> None:
    env = TabularMDPEnv()
    tasks = env.sample_tasks(100, np.random.default_rng(2))
    assert tasks == env.sample_tasks(100, np.random.default_rng(2))
    assert tasks[:2] == env.sample_tasks(2, np.random.default_rng(2))
    transitions = np.stack([t.as_array("transitions").reshape(10, 5, 10) for t in tasks])
    rewards = np.stack([t.as_array("mean_rewards").reshape(10, 5) for t in tasks])
    assert np.all(transitions >= 0) and np.allclose(transitions.sum(-1), 1.0)
    # a flat Dirichlet's entries have mean 1/10; 5000 rows, each entry a mean of [0, 1] values
    assert np.all(np.abs(transitions.mean(axis=(0, 1, 2)) - 0.1) < hoeffding_tolerance(5000, 10))
    # 5000 N(1, 1) mean rewards: their mean is N(1, 1/5000)
    assert abs(rewards.mean() - 1.0) < 5.3 / math.sqrt(rewards.size)
    hash(tasks[0])  # tasks stay hashable (flat tuples)


# ---------------------------------------------------------------- both families


@pytest.mark.parametrize("env_id, single", [("metarl/Bandit-v0", BanditEnv),
                                            ("metarl/TabularMDP-v0", TabularMDPEnv)])
def test_vector_env_equals_single_envs_with_the_same_seeds(env_id: str, single: type) -> None:
    rng = np.random.default_rng(9)
    vector = make_task_vector_env(env_id, 6)
    assert isinstance(vector, BanditVectorEnv | TabularMDPVectorEnv)
    tasks = vector.sample_tasks(6, rng)
    seeds = [int(s) for s in rng.integers(2**31, size=6)]
    vector.set_tasks(tasks)
    obs, _ = vector.reset(seed=seeds)  # one seed per copy
    envs: list[BanditEnv | TabularMDPEnv] = []
    for task, seed in zip(tasks, seeds):
        env = single()
        env.set_task(task)
        o, _ = env.reset(seed=seed)
        assert np.array_equal(obs[len(envs)], o)
        envs.append(env)
    space = vector.single_action_space
    assert isinstance(space, gymnasium.spaces.Discrete)
    truncated = np.zeros(6, dtype=bool)
    for _ in range(vector.horizon):
        actions = rng.integers(int(space.n), size=6)
        obs, rewards, terminated, truncated, _ = vector.step(actions)
        for i, env in enumerate(envs):
            o, r, term, trunc, _ = env.step(np.int64(actions[i]))
            assert np.array_equal(obs[i], o) and rewards[i] == r
            assert (terminated[i], truncated[i]) == (term, trunc)
    assert truncated.all()


@pytest.mark.parametrize("env_id", ["metarl/Bandit-v0", "metarl/TabularMDP-v0"])
def test_vector_env_spaces_and_accepted_action_shapes(env_id: str) -> None:
    vector = make_task_vector_env(env_id, 3)
    assert vector.act_dim == 1
    vector.set_tasks(vector.sample_tasks(3, np.random.default_rng(0)))
    obs, _ = vector.reset(seed=0)
    assert obs.shape == (3, vector.obs_dim) and vector.observation_space.contains(obs)
    # [N] or [N, 1], integers or integral floats (a float action buffer), are one index per copy
    for actions in (np.array([0, 1, 2]), np.array([[0.0], [1.0], [2.0]])):
        vector.step(actions)


@pytest.mark.parametrize("family", [BanditEnv, TabularMDPEnv])
def test_bad_actions_and_settings_are_rejected(family: type) -> None:
    env = family()
    env.reset(seed=0)
    n = env.action_space.n
    for action, message in [(n, r"in \[0, "), (-1, r"in \[0, "), (0.5, "integral"),
                            (np.nan, "integral"), (np.array([0, 1]), "expected 1"),
                            (True, "integer indices")]:
        with pytest.raises(ValueError, match=message):
            env.step(action)
    with pytest.raises(ValueError, match="no unit box"):
        family(action_space="unit")
    with pytest.raises(ValueError, match="action_space must be one of"):
        family(action_space="box")


def test_tasks_of_another_size_are_rejected() -> None:
    with pytest.raises(ValueError, match="arms"):
        BanditEnv(arms=3).set_task(Task.of(probabilities=[0.5, 0.5]))
    with pytest.raises(ValueError, match="3 states"):
        TabularMDPEnv(states=3, actions=2).set_task(mdp_task(*_tiny_mdp()))
    with pytest.raises(ValueError, match="probability distribution"):
        mdp_task(np.ones((2, 2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="2 sub-environments"):
        BanditVectorEnv(2).set_tasks(BanditVectorEnv(2).sample_tasks(3, np.random.default_rng(0)))
