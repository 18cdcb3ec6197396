"""MuJoCo locomotion families: rewards by hand, termination, and the batched simulator against the
single environment."""

from __future__ import annotations

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")

import gymnasium  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402

from metarl.envs import LOCOMOTION_FAMILIES, make_task_vector_env  # noqa: E402
from metarl.envs.base import Task  # noqa: E402
from metarl.envs.batched_mujoco import LocomotionVectorEnv  # noqa: E402
from metarl.envs.locomotion import LocomotionEnv  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*infinity")  # observations are unbounded


@pytest.mark.parametrize("family", LOCOMOTION_FAMILIES)
def test_registered_and_passes_env_checker(family: str) -> None:
    env = gymnasium.make(f"metarl/{family}-v0")
    check_env(env.unwrapped, skip_render_check=True)
    vector = gymnasium.make_vec(f"metarl/{family}-v0", num_envs=3,
                                vectorization_mode="vector_entry_point")
    assert isinstance(vector, LocomotionVectorEnv) and vector.num_envs == 3


def _step_by_hand(env: LocomotionEnv, task: Task, action: np.ndarray
                  ) -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray]:
    """Step ``env`` from a fixed state; return its reward and the raw quantities after the step."""
    env.set_task(task)
    env.reset(seed=0)
    x_before = env.data.qpos[:2].copy()
    _, reward, _, _, _ = env.step(action)
    # contact forces at the new state, from a fresh MjData (a cold solver start)
    fresh = mujoco.MjData(env.model)
    fresh.qpos[:], fresh.qvel[:], fresh.ctrl[:] = env.data.qpos, env.data.qvel, env.data.ctrl
    mujoco.mj_forward(env.model, fresh)
    mujoco.mj_rnePostConstraint(env.model, fresh)
    return reward, env.dt, x_before, env.data.qpos[:2].copy(), fresh.cfrc_ext.copy()


def test_half_cheetah_rewards_by_hand() -> None:
    action = np.array([0.5, -2.0, 0.1, 0.0, 1.0, -0.3])  # -2.0 is clipped to -1
    clipped = np.clip(action, -1, 1)
    ctrl = 0.05 * np.sum(clipped**2)
    reward, dt, before, after, _ = _step_by_hand(
        LocomotionEnv("HalfCheetahVel"), Task.of(velocity=1.5), action
    )
    vx = (after[0] - before[0]) / dt
    assert dt == pytest.approx(0.05)
    assert reward == pytest.approx(-abs(vx - 1.5) - ctrl)
    reward, dt, before, after, _ = _step_by_hand(
        LocomotionEnv("HalfCheetahDir"), Task.of(direction=-1.0), action
    )
    assert reward == pytest.approx(-(after[0] - before[0]) / dt - ctrl)


def test_ant_rewards_by_hand() -> None:
    action = np.full(8, 0.5)
    ctrl = 0.005 * np.sum(action**2)
    reward, dt, before, after, forces = _step_by_hand(
        LocomotionEnv("AntVel"), Task.of(velocity=2.0), action
    )
    contact = 0.0005 * np.sum(np.clip(forces, -1, 1) ** 2)
    vx = (after[0] - before[0]) / dt
    assert reward == pytest.approx(-abs(vx - 2.0) + 1.0 - ctrl - contact)
    reward, dt, before, after, forces = _step_by_hand(
        LocomotionEnv("AntDir"), Task.of(direction=1.0), action
    )
    contact = 0.0005 * np.sum(np.clip(forces, -1, 1) ** 2)
    assert reward == pytest.approx((after[0] - before[0]) / dt + 1.0 - ctrl - contact)
    reward, dt, before, after, forces = _step_by_hand(
        LocomotionEnv("AntGoal"), Task.of(goal=[1.0, -2.0]), action
    )
    contact = 0.0005 * np.sum(np.clip(forces, -1, 1) ** 2)
    distance = abs(after[0] - 1.0) + abs(after[1] + 2.0)
    assert reward == pytest.approx(-distance + 1 - ctrl - contact)


def _rllab_centre_of_mass(model, qpos: np.ndarray, qvel: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """The torso subtree's centre of mass and its velocity as the MAML code's rllab computed
    them (``get_body_com`` / ``get_body_comvel``): after a forward pass, each body's mass times
    the linear velocity of its centre of mass (``mj_objectVelocity``, world orientation), summed
    over the torso and its descendants and divided by their mass."""
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:] = qpos, qvel
    mujoco.mj_forward(model, data)
    torso = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "torso")

    def in_subtree(body: int) -> bool:
        while body > 0:
            if body == torso:
                return True
            body = model.body_parentid[body]
        return False

    momentum, moment, mass = np.zeros(3), np.zeros(3), 0.0
    velocity = np.zeros(6)
    for body in range(model.nbody):
        if in_subtree(body):
            mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_BODY, body, velocity, 0)
            momentum += model.body_mass[body] * velocity[3:]
            moment += model.body_mass[body] * data.xipos[body]
            mass += model.body_mass[body]
    return moment / mass, momentum / mass


def _paper_step(family: str, task: Task, action: np.ndarray, warmup: int = 0
                ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, float]:
    """Step ``family`` under physics "maml" from a fixed state (``warmup`` steps after a reset,
    with ``action``); return the reward, the torso subtree's centre of mass and velocity after
    the step (rllab's way), the contact forces at the new state (cold solver start) and the x
    velocity by finite difference."""
    env = LocomotionEnv(family, "maml")
    env.set_task(task)
    env.reset(seed=0)
    for _ in range(warmup):
        env.step(action)
    x_before = env.data.qpos[0]
    _, reward, _, _, info = env.step(action)
    com, com_velocity = _rllab_centre_of_mass(env.model, env.data.qpos, env.data.qvel)
    assert info["x_velocity"] == pytest.approx(com_velocity[0], abs=1e-9)
    fresh = mujoco.MjData(env.model)
    fresh.qpos[:], fresh.qvel[:], fresh.ctrl[:] = env.data.qpos, env.data.qvel, env.data.ctrl
    mujoco.mj_forward(env.model, fresh)
    mujoco.mj_rnePostConstraint(env.model, fresh)
    return reward, com, com_velocity, fresh.cfrc_ext.copy(), (env.data.qpos[0] - x_before) / env.dt


def test_paper_half_cheetah_rewards_by_hand() -> None:
    """physics "maml": v = the torso subtree's centre-of-mass x velocity, ctrl 0.05 sum(a^2)."""
    action = np.array([0.5, -2.0, 0.1, 0.0, 1.0, -0.3])  # -2.0 is clipped to -1
    ctrl = 0.05 * np.sum(np.clip(action, -1, 1) ** 2)
    reward, _, velocity, _, finite_difference = _paper_step(
        "HalfCheetahVel", Task.of(velocity=1.5), action)
    assert reward == pytest.approx(-abs(velocity[0] - 1.5) - ctrl, abs=1e-9)
    # not the torso's displacement over dt: the legs' motion counts
    assert abs(velocity[0] - finite_difference) > 1e-3
    reward, _, velocity, _, _ = _paper_step("HalfCheetahDir", Task.of(direction=-1.0), action)
    assert reward == pytest.approx(-velocity[0] - ctrl, abs=1e-9)


def test_paper_ant_rewards_by_hand() -> None:
    """physics "maml": the MAML code's Ant constants (1.0 / 0 / 4.0, plus the 0.05 survive
    bonus), ctrl 0.005 sum((a / half-range)^2), contact 0.0005 sum(clip(f, -1, 1)^2)."""
    action = np.array([0.5, -0.5, 1.5, 0.2, -0.1, 0.0, 0.3, -0.7])  # 1.5 is clipped to 1
    half_range = 1.0  # gymnasium's actuator range [-1, 1] (rllab's: +-150 with gear 1)
    ctrl = 0.005 * np.sum((np.clip(action, -1, 1) / half_range) ** 2)

    landed = 15  # steps of 0.02 s after the reset: the Ant stands on the floor
    reward, _, velocity, forces, _ = _paper_step("AntVel", Task.of(velocity=2.0), action, landed)
    contact = 0.0005 * np.sum(np.clip(forces, -1, 1) ** 2)
    assert contact > 0
    assert reward == pytest.approx(-abs(velocity[0] - 2.0) + 1.0 + 0.05 - ctrl - contact,
                                   abs=1e-9)
    reward, _, velocity, forces, _ = _paper_step("AntDir", Task.of(direction=-1.0), action,
                                                 landed)
    contact = 0.0005 * np.sum(np.clip(forces, -1, 1) ** 2)
    assert reward == pytest.approx(-velocity[0] + 0.05 - ctrl - contact, abs=1e-9)
    reward, com, _, forces, _ = _paper_step("AntGoal", Task.of(goal=[1.0, -2.0]), action,
                                            landed)
    contact = 0.0005 * np.sum(np.clip(forces, -1, 1) ** 2)
    distance = abs(com[0] - 1.0) + abs(com[1] + 2.0)
    assert reward == pytest.approx(-distance + 4.0 + 0.05 - ctrl - contact, abs=1e-9)


@pytest.mark.parametrize("family", ["HalfCheetahVel", "AntVel"])
def test_batched_centre_of_mass_probe_equals_the_single_env_computation(family: str) -> None:
    """The batched simulator reads the centre of mass through its probe model's sensors, the
    single environment with mj_subtreeVel: the same numbers, for the current state."""
    from metarl.envs.locomotion import torso_com

    vector = make_task_vector_env(f"metarl/{family}-v0", 5, "maml")
    assert isinstance(vector, LocomotionVectorEnv)
    vector.reset(seed=2)
    rng = np.random.default_rng(0)
    for _ in range(3):
        vector.step(rng.uniform(-1, 1, size=(5, vector.act_dim)))
    positions, velocities = vector._torso_com(vector._state)
    scratch = mujoco.MjData(vector.model)
    for i in range(5):
        qpos = vector._state[i, vector._qpos_slice]
        qvel = vector._state[i, vector._qvel_slice]
        position, velocity = torso_com(vector.model, scratch, qpos, qvel)
        np.testing.assert_allclose(positions[i], position, atol=1e-12)
        np.testing.assert_allclose(velocities[i], velocity, atol=1e-12)
        rllab_position, rllab_velocity = _rllab_centre_of_mass(vector.model, qpos, qvel)
        np.testing.assert_allclose(position, rllab_position, atol=1e-10)
        np.testing.assert_allclose(velocity, rllab_velocity, atol=1e-10)
    vector.close()


def test_peers_physics_computes_no_centre_of_mass() -> None:
    """physics "peers" keeps its rewards and its cost: no probe model, no extra pass."""
    vector = make_task_vector_env("metarl/HalfCheetahVel-v0", 2, "peers")
    assert isinstance(vector, LocomotionVectorEnv) and vector._probe is None
    vector.close()


def test_ant_terminates_outside_the_healthy_height_and_cheetah_never() -> None:
    ant = LocomotionEnv("AntVel")
    ant.reset(seed=0)
    qpos = ant.data.qpos.copy()
    qpos[2] = 1.5  # torso above 1.0: it cannot fall back into range within one 0.05 s step
    ant.set_state(qpos, ant.data.qvel.copy())
    _, _, terminated, _, _ = ant.step(np.zeros(8))
    assert terminated
    cheetah = LocomotionEnv("HalfCheetahVel")
    cheetah.reset(seed=0)
    assert not any(cheetah.step(np.ones(6))[2] for _ in range(20))


def test_physics_settings_change_the_time_step() -> None:
    assert LocomotionEnv("HalfCheetahVel", "maml").dt == pytest.approx(0.01)
    assert LocomotionEnv("AntVel", "maml").dt == pytest.approx(0.02)
    assert LocomotionEnv("AntVel", "peers").dt == pytest.approx(0.05)
    with pytest.raises(ValueError, match="physics"):
        LocomotionEnv("AntVel", "rllab")


@pytest.mark.parametrize("family", LOCOMOTION_FAMILIES)
@pytest.mark.parametrize("physics", ["peers", "maml"])
def test_batched_step_equals_the_single_env_step(family: str, physics: str) -> None:
    n = 4
    vector = make_task_vector_env(f"metarl/{family}-v0", n, physics)
    assert isinstance(vector, LocomotionVectorEnv)
    tasks = vector.sample_tasks(n, np.random.default_rng(0))
    vector.set_tasks(tasks)
    obs, _ = vector.reset(seed=3)
    rng = np.random.default_rng(1)
    for _ in range(15):  # first onto the floor: the Ant's contact terms then count
        vector.step(rng.uniform(-1, 1, size=(n, vector.act_dim)))
    single = LocomotionEnv(family, physics)
    for _ in range(3):  # a few steps, each compared from the batched env's current state
        states = vector._state.copy()
        actions = rng.uniform(-1, 1, size=(n, vector.act_dim))
        obs, rewards, terminated, _, _ = vector.step(actions)
        for i in range(n):
            single.set_task(tasks[i])
            single.reset(seed=0)
            single.set_state(states[i, vector._qpos_slice], states[i, vector._qvel_slice])
            o, r, term, _, _ = single.step(actions[i])
            assert np.allclose(obs[i], o, atol=1e-6), np.abs(obs[i] - o).max()
            assert rewards[i] == pytest.approx(r, abs=1e-6)
            assert terminated[i] == term


def test_a_list_of_seeds_resets_each_copy_as_the_single_env() -> None:
    """gymnasium's vector convention: seed i resets copy i as single.reset(seed=i) would."""
    seeds = [7, 123, 7]
    vector = make_task_vector_env("metarl/HalfCheetahVel-v0", 3)
    assert isinstance(vector, LocomotionVectorEnv)
    vector.set_tasks([Task.of(velocity=1.0)] * 3)
    obs, _ = vector.reset(seed=seeds)
    single = LocomotionEnv("HalfCheetahVel")
    single.set_task(Task.of(velocity=1.0))
    for i, seed in enumerate(seeds):
        assert np.array_equal(obs[i], single.reset(seed=seed)[0])
    assert not np.array_equal(obs[0], obs[1]) and np.array_equal(obs[0], obs[2])
    with pytest.raises(ValueError, match="got 2 seeds for 3 sub-environments"):
        vector.reset(seed=[1, 2])


def test_each_sub_environment_runs_its_own_task() -> None:
    vector = make_task_vector_env("metarl/HalfCheetahVel-v0", 2)
    assert isinstance(vector, LocomotionVectorEnv)
    vector.set_tasks([Task.of(velocity=0.0), Task.of(velocity=2.0)])
    vector.reset(seed=0)
    vector._state[1] = vector._state[0]  # same state and zero action: only the task differs
    x_before = vector._state[0, vector._qpos_slice][0]
    _, rewards, _, _, _ = vector.step(np.zeros((2, 6)))
    v = (vector._state[0, vector._qpos_slice][0] - x_before) / vector.dt
    assert rewards == pytest.approx([-abs(v), -abs(v - 2.0)])


def test_batched_episodes_agree_in_distribution_with_single_env_episodes() -> None:
    """Warm-start differences make paths drift apart, so compare returns of a fixed policy."""
    family, episodes, horizon = "HalfCheetahVel", 24, 60
    weights = np.random.default_rng(7).normal(scale=0.3, size=(6, 17))
    task = Task.of(velocity=1.0)

    def policy(obs: np.ndarray) -> np.ndarray:
        return np.tanh(obs @ weights.T)

    vector = make_task_vector_env(f"metarl/{family}-v0", episodes)
    vector.set_tasks([task] * episodes)
    obs, _ = vector.reset(seed=11)
    batched = np.zeros(episodes)
    for _ in range(horizon):
        obs, rewards, _, _, _ = vector.step(policy(obs))
        batched += rewards
    single = LocomotionEnv(family)
    single.set_task(task)
    looped = np.zeros(episodes)
    for e in range(episodes):
        o, _ = single.reset(seed=1000 + e)
        for _ in range(horizon):
            o, r, _, _, _ = single.step(policy(o[None])[0])
            looped[e] += r
    se = np.sqrt(batched.var(ddof=1) / episodes + looped.var(ddof=1) / episodes)
    assert abs(batched.mean() - looped.mean()) < 4 * se + 1e-6


def test_smoke_preset_trains_evaluates_and_films(tmp_path, capsys) -> None:
    """The tiny MuJoCo preset end to end: train, eval, video (skipped without OpenGL)."""
    import json

    from metarl.cli import main

    run = tmp_path / "run"
    assert main(["train", "smoke_mujoco", "--run-dir", str(run), "--no-progress"]) == 0
    assert main(["eval", str(run), "--no-progress"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["env_id"] == "metarl/HalfCheetahVel-v0" and result["steps"] == [0, 1]
    capsys.readouterr()
    code = main(["video", str(run), "--tasks", "1", "--steps", "1", "--size", "48",
                 "--no-progress"])
    if code != 0:
        err = capsys.readouterr().err
        assert "OpenGL" in err or "EGL" in err, err
        pytest.skip(f"no OpenGL backend: {err.strip()}")
    assert (run / "video.mp4").stat().st_size > 1000


def test_locomotion_envs_reject_bad_actions() -> None:
    single = LocomotionEnv("HalfCheetahVel")
    single.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        single.step(np.zeros(5))
    vector = make_task_vector_env("metarl/AntVel-v0", 2)
    vector.reset(seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        vector.step(np.full((2, 8), np.inf))


def test_closing_stops_the_simulator_threads_once_and_for_all() -> None:
    from metarl.config import TrainConfig
    from metarl.rl.meta_learner import MetaLearner

    learner = MetaLearner(TrainConfig(env_id="metarl/HalfCheetahVel-v0", meta_batch_size=2,
                                      episodes_per_task=1, horizon=3, torch_threads=1))
    learner.close()
    learner.close()  # idempotent
    with pytest.raises(RuntimeError, match="thread pool shutdown"):
        learner.env.step(np.zeros((2, 6)))


PAPER_PRESETS = ("halfcheetah_vel_paper", "halfcheetah_dir_paper")


@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_paper_presets_hold_the_papers_settings(preset: str) -> None:
    from pathlib import Path

    from metarl.config import load_config

    config = load_config(Path(__file__).parent.parent / "experiments" / f"{preset}.yaml")
    assert (config.physics, config.action_space, config.horizon) == ("maml", "unit", 200)
    assert (config.hidden_sizes, config.activation) == ((100, 100), "relu")
    # episodes per task as in the runs behind the paper's results files: velocity
    # maml1_fbs10_mbs40_..., direction maml1_fbs20_mbs40_...
    episodes = {"halfcheetah_vel_paper": 10, "halfcheetah_dir_paper": 20}[preset]
    assert (config.inner_lr, config.meta_batch_size, config.episodes_per_task) == (0.1, 40,
                                                                                   episodes)
    assert (config.outer, config.max_kl, config.gamma, config.gae_lambda) == ("trpo", 0.01,
                                                                             0.99, 1.0)
    # the paper's test: 40 tasks, 20 episodes of 200 steps per update
    assert (config.eval_tasks, config.eval_episodes) == (40, 20)


@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_paper_presets_train_and_evaluate_at_tiny_size(preset: str, tmp_path) -> None:
    import json

    from metarl.cli import main

    run = tmp_path / "run"
    assert main(["train", preset, "--run-dir", str(run), "--iterations", "1",
                 "--meta-batch-size", "2", "--episodes-per-task", "2", "--horizon", "10",
                 "--torch-threads", "1", "--no-progress"]) == 0
    assert main(["eval", str(run), "--tasks", "2", "--steps", "2", "--episodes", "2",
                 "--no-progress"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["steps"] == [0, 1, 2] and result["step_sizes"] == [0.1, 0.05]
    assert all(np.isfinite(result["mean"]))


@pytest.mark.parametrize("physics", ["peers", "maml"])
def test_finished_ants_are_not_simulated_and_live_ones_are_unchanged(physics: str) -> None:
    """``step_alive`` skips the fallen copies: the live copies step exactly as when all are
    stepped (the copies are independent), the skipped ones keep their state."""
    actions = np.random.default_rng(1).uniform(-1, 1, size=(6, 8))
    alive = np.array([True, False, True, True, False, True])
    results = []
    for skip in (False, True):
        vector = make_task_vector_env("metarl/AntVel-v0", 6, physics, action_space="unit")
        assert isinstance(vector, LocomotionVectorEnv)
        vector.set_tasks(vector.sample_tasks(6, np.random.default_rng(0)))
        vector.reset(seed=3)
        before = vector._state.copy()
        step = vector.step_alive(actions, alive) if skip else vector.step(actions)
        results.append((step, vector._state.copy(), before))
        vector.close()
    (obs, reward, done, _, _), state, _ = results[0]
    (obs_s, reward_s, done_s, _, _), state_s, before_s = results[1]
    np.testing.assert_array_equal(obs_s[alive], obs[alive])
    np.testing.assert_array_equal(reward_s[alive], reward[alive])
    np.testing.assert_array_equal(done_s[alive], done[alive])
    np.testing.assert_array_equal(state_s[alive], state[alive])
    np.testing.assert_array_equal(state_s[~alive], before_s[~alive])  # not simulated
    assert done_s[~alive].all() and not reward_s[~alive].any()


def test_ant_rollouts_are_the_same_with_fallen_copies_skipped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole rollouts of a random Ant policy, where some episodes end early, give the same
    episodes whether the finished copies are simulated (and masked) or skipped."""
    import torch

    from metarl.core.policies import GaussianMLPPolicy
    from metarl.rl.rollout import rollout

    episodes = []
    for skip in (False, True):
        vector = make_task_vector_env("metarl/AntVel-v0", 8, "maml", action_space="unit")
        if not skip:  # every copy stepped, the finished ones masked
            monkeypatch.setattr(vector, "step_alive",
                                lambda actions, alive, every=vector.step: every(actions))
        torch.manual_seed(0)
        policy = GaussianMLPPolicy(vector.obs_dim, vector.act_dim, (8,), init_log_std=1.0)
        params = policy.initial_params()
        tasks = vector.sample_tasks(2, np.random.default_rng(0))
        episodes.append(rollout(vector, policy, params, tasks, 4, 150,
                                generator=torch.Generator().manual_seed(2), seed=4))
        vector.close()
    full, skipped = episodes
    assert 0 < full.mask.sum() < full.mask.numel()  # some episodes ended early
    torch.testing.assert_close(skipped.mask, full.mask, rtol=0, atol=0)
    torch.testing.assert_close(skipped.rewards, full.rewards, rtol=0, atol=0)
    live = full.mask.bool()  # what a finished copy returns is masked
    torch.testing.assert_close(skipped.actions[live], full.actions[live], rtol=0, atol=0)
    torch.testing.assert_close(skipped.observations[live], full.observations[live], rtol=0,
                               atol=0)
