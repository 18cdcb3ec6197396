"""TaskObservation: the appended values are the current task's parameters, for every family."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import metarl.envs  # noqa: F401  (registers the metarl/ environments)
from metarl.envs import Task
from metarl.envs.task_observation import (
    TaskObservation,
    numeric_parameter_names,
    task_features,
)


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
