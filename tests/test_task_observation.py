"""TaskObservation: the appended values are the current task's parameters, for every family."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from metarl.config import TrainConfig
from metarl.envs import Task, make_task_vector_env, sample_held_out_tasks
from metarl.envs.task_observation import (
    TaskObservation,
    numeric_parameter_names,
    task_features,
)
from metarl.rl.oracle import evaluate_oracle


def test_navigation_goal_is_appended() -> None:
    env = gymnasium.make("metarl/Navigation2D-v0")
    env.unwrapped.set_task(Task.of(goal=[0.3, -0.2]))  # type: ignore[attr-defined]
    wrapped = TaskObservation(env)
    assert wrapped.parameters == ("goal",)
    obs, _ = wrapped.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (4,)
    np.testing.assert_array_equal(obs, np.array([0.0, 0.0, 0.3, -0.2], np.float32))
    obs, *_ = wrapped.step(np.array([0.1, 0.05], np.float32))
    np.testing.assert_allclose(obs, [0.1, 0.05, 0.3, -0.2], rtol=1e-6)
    assert wrapped.observation_space.contains(obs)
    # a task set later shows up from then on
    env.unwrapped.set_task(Task.of(goal=[-0.4, 0.1]))  # type: ignore[attr-defined]
    obs, _ = wrapped.reset()
    np.testing.assert_array_equal(obs[2:], np.array([-0.4, 0.1], np.float32))


def test_resampling_draws_a_task_per_reset_seeded() -> None:
    wrapped = TaskObservation(gymnasium.make("metarl/Navigation2D-v0"), resample=True, seed=0)
    first, _ = wrapped.reset(seed=7)
    goal = wrapped.task_env.task.as_array("goal")
    np.testing.assert_array_equal(first[2:], goal.astype(np.float32))
    second, _ = wrapped.reset()
    assert not np.array_equal(first[2:], second[2:])  # a new task
    again, _ = wrapped.reset(seed=7)
    np.testing.assert_array_equal(again, first)  # the seed fixes the task drawn
    expected = wrapped.task_env.sample_tasks(1, np.random.default_rng(7))[0]
    np.testing.assert_array_equal(again[2:], expected.as_array("goal").astype(np.float32))


def test_numeric_parameters_leave_names_and_indices_out() -> None:
    task = Task.of(env_name="reach-v3", split="test", index=3, rand_vec=[0.1, 0.6, 0.02],
                   direction=-1.0, flag=True)
    assert numeric_parameter_names(task) == ("direction", "rand_vec")
    np.testing.assert_array_equal(task_features(task, ("rand_vec", "direction", "index")),
                                  [0.1, 0.6, 0.02, -1.0, 3.0])
    assert task_features(task, ()).shape == (0,)


def test_locomotion_velocity_is_appended() -> None:
    pytest.importorskip("mujoco")
    env = gymnasium.make("metarl/HalfCheetahVel-v0")
    env.unwrapped.set_task(Task.of(velocity=1.25))  # type: ignore[attr-defined]
    wrapped = TaskObservation(env)
    obs, _ = wrapped.reset(seed=0)
    assert obs.shape == (18,) and obs[-1] == 1.25
    obs, *_ = wrapped.step(np.zeros(6, np.float32))
    assert obs[-1] == 1.25


def test_meta_world_variation_is_appended() -> None:
    pytest.importorskip("metaworld")
    env = gymnasium.make("metarl/ML1-reach-v3")
    task = env.unwrapped.sample_tasks(1, np.random.default_rng(2))[0]  # type: ignore[attr-defined]
    env.unwrapped.set_task(task)  # type: ignore[attr-defined]
    wrapped = TaskObservation(env)
    assert wrapped.parameters == ("rand_vec",)
    obs, _ = wrapped.reset()
    assert obs.shape == (45,)
    np.testing.assert_array_equal(obs[39:], np.asarray(task["rand_vec"]))
    by_index = TaskObservation(env, parameters=["index"])
    assert by_index.reset()[0][-1] == task["index"]


def test_passes_gymnasiums_checker_and_refuses_plain_envs() -> None:
    check_env(TaskObservation(gymnasium.make("metarl/Navigation2D-v0"), resample=True),
              skip_render_check=True)
    with pytest.raises(ValueError, match="not a metarl TaskEnv"):
        TaskObservation(gymnasium.make("Pendulum-v1"))


def _padded(rand_vec: Any, width: int = 6) -> np.ndarray:
    values = np.asarray(rand_vec, dtype=np.float64)
    return np.concatenate([values, np.zeros(width - values.size)])


def test_meta_world_ml10_variations_share_one_zero_padded_slot() -> None:
    """ML10's rand_vec has 6 entries for some classes and 3 for others: every task's
    observation is 39 + 6 entries, a 3-entry vector followed by three zeros, whichever task
    the wrapper starts on or draws; SB3's checker accepts it."""
    pytest.importorskip("metaworld")
    sb3_check_env = pytest.importorskip("stable_baselines3.common.env_checker").check_env
    env = gymnasium.make("metarl/ML10-v3")
    benchmark = env.unwrapped.benchmark  # type: ignore[attr-defined]
    short = next(t for t in benchmark.tasks["train"] if len(t["rand_vec"]) == 3)
    long = next(t for t in benchmark.tasks["train"] if len(t["rand_vec"]) == 6)
    short_test = next(t for t in benchmark.tasks["test"] if len(t["rand_vec"]) == 3)
    env.unwrapped.set_task(short)  # type: ignore[attr-defined]
    wrapped = TaskObservation(env)  # built on a 3-entry task: the slot is still 6 wide
    assert wrapped.observation_space.shape == (45,)
    for task in (short, long, short_test):
        env.unwrapped.set_task(task)  # type: ignore[attr-defined]
        obs, _ = wrapped.reset(seed=0)
        assert obs.shape == (45,) and wrapped.observation_space.contains(obs)
        np.testing.assert_array_equal(obs[39:], _padded(task["rand_vec"]))
        obs, *_ = wrapped.step(np.zeros(4))
        np.testing.assert_array_equal(obs[39:], _padded(task["rand_vec"]))
    resampled = TaskObservation(gymnasium.make("metarl/ML10-v3"), resample=True, seed=0)
    widths = set()
    for seed in range(12):
        obs, _ = resampled.reset(seed=seed)
        task = resampled.task_env.task
        widths.add(len(task["rand_vec"]))
        assert resampled.observation_space.contains(obs)
        np.testing.assert_array_equal(obs[39:], _padded(task["rand_vec"]))
    assert widths == {3, 6}
    sb3_check_env(resampled, warn=True)


def test_oracle_evaluation_reveals_ml10_tasks_as_the_wrapper_does() -> None:
    """``metarl compare``'s oracle evaluation builds the same padded observations on ML10's
    held-out tasks (3- and 6-entry vectors alike) that PPO trained on."""
    pytest.importorskip("metaworld")
    seen: list[np.ndarray] = []

    class Recorder:
        def predict(self, obs: np.ndarray, deterministic: bool = False) -> tuple[np.ndarray, Any]:
            seen.append(obs.copy())
            return np.zeros((obs.shape[0], 4), np.float32), None

    config = TrainConfig(env_id="metarl/ML10-v3", horizon=2)
    evaluate_oracle(config, Recorder(), tasks=6, episodes=1, seed=0)
    env = make_task_vector_env(config.env_id, 1)
    held_out = sample_held_out_tasks(env, 6, np.random.default_rng(0))
    assert {len(t["rand_vec"]) for t in held_out} == {3, 6}
    expected = np.stack([_padded(t["rand_vec"]) for t in held_out]).astype(np.float32)
    assert seen and all(obs.shape == (6, 45) for obs in seen)
    np.testing.assert_array_equal(seen[0][:, 39:], expected)
