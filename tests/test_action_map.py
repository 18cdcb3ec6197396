"""action_space "unit": the one map from [-1, 1]^d onto an environment's bounds, and every path
that steps an environment (single, vector, batched MuJoCo, training, Ray workers, evaluation,
videos, the oracle) applying it the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch

from metarl.cli import main
from metarl.config import ConfigError, TrainConfig, load_config
from metarl.envs import ACTION_SPACES, Navigation2DEnv, env_kwargs, make_task_vector_env
from metarl.envs.action_map import ActionMap, env_to_unit, unit_to_env
from metarl.envs.base import Task

NAV = "metarl/Navigation2D-v0"
HALF_CHEETAH = "metarl/HalfCheetahVel-v0"

pytestmark = pytest.mark.filterwarnings("ignore:.*infinity")  # unbounded observation spaces


def test_the_map_sends_the_unit_box_onto_the_bounds_by_hand() -> None:
    low, high = np.array([-0.1, -2.0, 0.0]), np.array([0.1, 6.0, 1.0])
    # -1 -> low, +1 -> high, 0 -> the middle, 0.5 -> three quarters of the way
    np.testing.assert_allclose(unit_to_env(-np.ones(3), low, high), low)
    np.testing.assert_allclose(unit_to_env(np.ones(3), low, high), high)
    np.testing.assert_allclose(unit_to_env(np.zeros(3), low, high), [0.0, 2.0, 0.5])
    np.testing.assert_allclose(unit_to_env(np.full(3, 0.5), low, high), [0.05, 4.0, 0.75])
    # and back, inside the bounds
    actions = np.random.default_rng(0).uniform(-1, 1, size=(5, 3))
    np.testing.assert_allclose(env_to_unit(unit_to_env(actions, low, high), low, high), actions)
    np.testing.assert_allclose(env_to_unit(np.array([0.05, 4.0, 0.75]), low, high), [0.5] * 3)


def test_the_map_clips_actions_outside_the_unit_box() -> None:
    low, high = np.array([-0.1, -2.0]), np.array([0.1, 6.0])
    batch = np.array([[-3.0, 1.5], [1.0001, -1.0001], [0.0, 7.0]])
    expected = np.array([[-0.1, 6.0], [0.1, -2.0], [0.0, 6.0]])
    np.testing.assert_allclose(unit_to_env(batch, low, high), expected)


def test_action_map_spaces_and_errors() -> None:
    bounds = gymnasium.spaces.Box(-0.1, 0.1, shape=(2,), dtype=np.float32)
    env_map, unit_map = ActionMap(bounds, "env"), ActionMap(bounds, "unit")
    assert env_map.space is bounds
    action = np.array([0.7, -3.0])
    assert env_map(action) is action  # the identity, untouched (then clipped by the env)
    assert unit_map.space == gymnasium.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    np.testing.assert_allclose(unit_map(action), [0.07, -0.1])
    with pytest.raises(ValueError, match="action_space must be one of 'env', 'unit'"):
        ActionMap(bounds, "normalised")
    with pytest.raises(ValueError, match="finite"):
        ActionMap(gymnasium.spaces.Box(-np.inf, np.inf, shape=(2,)), "unit")


def test_config_field_defaults_to_env_and_rejects_other_values() -> None:
    assert TrainConfig().action_space == "env"
    assert TrainConfig(action_space="unit").action_space == "unit"
    assert ACTION_SPACES == ("env", "unit")
    with pytest.raises(ConfigError, match="action_space must be one of 'env', 'unit', got 'box'"):
        TrainConfig(action_space="box")
    with pytest.raises(ConfigError, match="action_space must be a string"):
        TrainConfig.from_dict({"action_space": 1})


def test_every_form_of_an_environment_exposes_the_unit_box() -> None:
    unit = gymnasium.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    assert gymnasium.make(NAV, **env_kwargs(NAV, action_space="unit")).action_space == unit
    assert Navigation2DEnv(action_space="unit").action_space == unit
    vector = make_task_vector_env(NAV, 3, action_space="unit")
    assert vector.single_action_space == unit
    made = gymnasium.make_vec(NAV, num_envs=3, vectorization_mode="vector_entry_point",
                              action_space="unit")
    assert made.single_action_space == unit
    # the default stays the environment's own bounds
    assert make_task_vector_env(NAV, 1).single_action_space == gymnasium.spaces.Box(
        -0.1, 0.1, shape=(2,), dtype=np.float32)
    with pytest.raises(ValueError, match="action_space"):
        make_task_vector_env(NAV, 1, action_space="box")


def _nav_steps(env: Any, goal: tuple[float, float], actions: np.ndarray
               ) -> list[tuple[np.ndarray, float]]:
    env.unwrapped.set_task(Task.of(goal=np.asarray(goal)))
    env.reset(seed=0)
    return [(obs, float(r)) for obs, r, *_ in (env.step(a) for a in actions)]


def test_navigation_single_and_vector_envs_step_unit_actions_as_the_env_actions_by_hand() -> None:
    unit_actions = np.array([[0.5, -0.25], [1.0, 3.0], [-2.0, 0.0], [0.2, 0.9]])
    by_hand = 0.1 * np.clip(unit_actions, -1, 1)  # lb + (a + 1)(ub - lb)/2 with lb, ub = -+0.1
    goal = (0.3, -0.2)
    unit = _nav_steps(gymnasium.make(NAV, **env_kwargs(NAV, action_space="unit")), goal,
                      unit_actions)
    plain = _nav_steps(gymnasium.make(NAV), goal, by_hand)
    # the bounds are the float32 action space's, 0.1 to about 1e-9
    for (obs_u, r_u), (obs_e, r_e) in zip(unit, plain, strict=True):
        np.testing.assert_allclose(obs_u, obs_e, atol=1e-7)
        assert r_u == pytest.approx(r_e, abs=1e-7)
    np.testing.assert_allclose(unit[-1][0], np.cumsum(by_hand, axis=0)[-1], atol=1e-6)

    vector = make_task_vector_env(NAV, 2, action_space="unit")
    vector.set_tasks([Task.of(goal=np.asarray(goal))] * 2)
    vector.reset(seed=0)
    for a, (obs_e, r_e) in zip(unit_actions, plain, strict=True):
        obs, rewards, *_ = vector.step(np.stack([a, a]))
        np.testing.assert_allclose(obs, [obs_e, obs_e], atol=1e-7)
        np.testing.assert_allclose(rewards, [r_e, r_e], atol=1e-7)


@pytest.mark.parametrize("physics", ["peers", "maml"])
def test_half_cheetah_paths_agree_on_unit_actions(physics: str) -> None:
    """Single env, gymnasium.make, the video's render env and the batched simulator step the
    same state to the same place for a unit action and for its env action computed by hand."""
    pytest.importorskip("mujoco")
    from metarl.envs.locomotion import LocomotionEnv
    from metarl.rl.video import _env_kwargs, make_render_env

    config = TrainConfig(env_id=HALF_CHEETAH, physics=physics, action_space="unit")
    unit_action = np.array([0.5, -2.0, 0.1, 0.0, 1.3, -0.3])
    low, high = -np.ones(6), np.ones(6)  # gymnasium's actuator range
    env_action = np.clip(low + (unit_action + 1) * (high - low) / 2, low, high)
    task = Task.of(velocity=1.0)

    reference = LocomotionEnv("HalfCheetahVel", physics)
    reference.set_task(task)
    reference.reset(seed=5)
    state = reference.data.qpos.copy(), reference.data.qvel.copy()
    expected_obs, expected_reward, *_ = reference.step(env_action)

    def step_single(env: Any) -> tuple[np.ndarray, float]:
        env.unwrapped.set_task(task)
        env.reset(seed=5)
        env.unwrapped.set_state(*state)
        obs, reward, *_ = env.step(unit_action)
        return np.asarray(obs), float(reward)

    singles = [LocomotionEnv("HalfCheetahVel", physics, action_space="unit"),
               gymnasium.make(HALF_CHEETAH, **env_kwargs(HALF_CHEETAH, physics, "unit")),
               # the video's environment (its OpenGL context is made at the first frame only)
               make_render_env(HALF_CHEETAH, 32, 32, **_env_kwargs(config))]
    for env in singles:
        assert env.action_space == gymnasium.spaces.Box(-1, 1, (6,), np.float32)
        obs, reward = step_single(env)
        np.testing.assert_array_equal(obs, expected_obs)
        assert reward == expected_reward
        env.close()

    vector = make_task_vector_env(HALF_CHEETAH, 2, physics, action_space="unit")
    vector.set_tasks([task, task])
    vector.reset(seed=0)
    full = vector._state.copy()  # type: ignore[attr-defined]
    full[:, vector._qpos_slice] = state[0]  # type: ignore[attr-defined]
    full[:, vector._qvel_slice] = state[1]  # type: ignore[attr-defined]
    vector._state[:] = full  # type: ignore[attr-defined]
    obs, rewards, *_ = vector.step(np.stack([unit_action, env_action]))
    np.testing.assert_allclose(obs, [expected_obs] * 2, atol=1e-6)
    np.testing.assert_allclose(rewards, [expected_reward] * 2, atol=1e-6)
    vector.close()


def _constant_policy(config: TrainConfig, mean: list[float]) -> dict[str, torch.Tensor]:
    """Parameters whose policy acts ``mean`` everywhere with a negligible standard deviation."""
    from metarl.rl.policy import initial_params

    params = {k: torch.zeros_like(v) for k, v in initial_params(config).items()}
    last = len(config.hidden_sizes)
    params[f"layers.{last}.bias"] = torch.tensor(mean)
    params["log_std"] = torch.full((2,), -30.0)
    return params


@pytest.mark.parametrize("action_space", ["env", "unit"])
def test_evaluation_and_video_envs_step_the_configs_action_space(action_space: str) -> None:
    """A policy acting (0.5, -0.3) moves 2D navigation's point by (0.05, -0.03) per step with
    "unit" (0.1 times the action) and by (0.1, -0.1) with "env" (the action, clipped)."""
    from metarl.rl.evaluation import evaluate_adaptation
    from metarl.rl.video import _env_kwargs, make_render_env

    config = TrainConfig(action_space=action_space, horizon=4, hidden_sizes=(4,))
    step = np.array([0.05, -0.03]) if action_space == "unit" else np.array([0.1, -0.1])
    outcome = evaluate_adaptation(config, _constant_policy(config, [0.5, -0.3]), tasks=2,
                                  steps=0, episodes=1, seed=0)
    for path in outcome["paths"][0]:  # observations: the positions before each step
        np.testing.assert_allclose(np.diff(path, axis=0), np.tile(step, (len(path) - 1, 1)),
                                   atol=1e-6)
    env = make_render_env(config.env_id, 32, 32, **_env_kwargs(config))
    env.reset(seed=0)
    obs, *_ = env.step(np.array([0.5, -0.3], dtype=np.float32))
    np.testing.assert_allclose(obs, step, atol=1e-7)


def test_video_refuses_unit_actions_for_an_environment_without_the_setting() -> None:
    from metarl.rl.video import make_render_env

    with pytest.raises(ValueError, match="takes no action_space"):
        make_render_env("CartPole-v1", 32, 32, action_space="unit")


def test_training_and_ray_workers_make_their_envs_in_the_configs_action_space() -> None:
    from metarl.rl.meta_learner import MetaLearner
    from metarl.rl.ray_sampler import ShardSampler

    unit = gymnasium.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    config = TrainConfig(action_space="unit", meta_batch_size=2, episodes_per_task=2,
                         horizon=3, torch_threads=1)
    with MetaLearner(config) as learner:
        assert learner.env.single_action_space == unit
    assert ShardSampler(config, threads=1)._env(2).single_action_space == unit


def test_oracle_acts_in_the_unit_box_whatever_the_runs_action_space() -> None:
    """The oracle's PPO acts in [-1, 1]: +0.5 is a step of 0.05 in 2D navigation with either
    setting of the run."""
    from metarl.rl.oracle import evaluate_oracle

    class HalfThrottle:
        def predict(self, obs: np.ndarray, deterministic: bool = False) -> tuple[np.ndarray, None]:
            return np.full((obs.shape[0], 2), 0.5, np.float32), None

    results = [evaluate_oracle(TrainConfig(horizon=3, action_space=space), HalfThrottle(),
                               tasks=2, episodes=1, seed=0) for space in ("env", "unit")]
    np.testing.assert_array_equal(results[0], results[1])


def test_resume_refuses_a_changed_action_space(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    tiny = ["--iterations", "1", "--meta-batch-size", "2", "--episodes-per-task", "2",
            "--horizon", "5", "--torch-threads", "1", "--no-progress"]
    assert main(["train", "navigation2d", "--run-dir", str(run), *tiny]) == 0
    capsys.readouterr()
    # the navigation2d preset acts in the unit box, as the MAML paper's code did
    assert main(["train", "--resume", str(run), "--action-space", "env", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "cannot resume with a different action_space" in err and err.count("\n") == 1


def test_resuming_a_run_saved_before_the_field_existed_reads_it_as_the_default() -> None:
    from metarl.rl.trainer import check_same_run

    saved = TrainConfig().to_dict()
    del saved["action_space"]
    check_same_run(TrainConfig(), saved)  # no error: that run acted in the env's bounds
    with pytest.raises(ValueError, match="different action_space"):
        check_same_run(TrainConfig(action_space="unit"), saved)


def test_navigation_trains_and_evaluates_with_unit_actions(tmp_path: Path) -> None:
    """A tiny run end to end with --action-space unit; the run's config records it, and eval and
    video read the run's config."""
    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), "--action-space", "unit",
                 "--iterations", "2", "--meta-batch-size", "2", "--episodes-per-task", "2",
                 "--horizon", "8", "--torch-threads", "1", "--no-progress"]) == 0
    assert load_config(run / "config.yaml").action_space == "unit"
    from metarl.run.checkpoint import load_checkpoint

    assert load_checkpoint(run / "checkpoints" / "last.pt")["config"]["action_space"] == "unit"
    assert main(["eval", str(run), "--tasks", "2", "--steps", "1", "--episodes", "2",
                 "--no-progress"]) == 0
    assert (run / "eval.json").is_file()
    assert main(["video", str(run), "--tasks", "1", "--steps", "1", "--episodes", "2",
                 "--size", "32", "--out", str(run / "v.gif"), "--no-progress"]) == 0
    assert (run / "v.gif").stat().st_size > 0
