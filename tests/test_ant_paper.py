"""The Ant families under the MAML paper's physics (``physics: maml``) and the Ant paper presets.

tests/test_locomotion.py checks one step of each Ant reward after landing, against rllab's
centre-of-mass computation, and termination under "peers" physics. This file adds what those
leave out, for all three Ant families: the rewards in flight, where the centre of mass moves at
a constant horizontal velocity (no external horizontal force), so that the reward follows from
the reset state alone; the paper's actions in [-1, 1] (``action_space: unit``); the task
distributions; termination under the paper's 0.02 s step, in the single and the batched
environment; and the presets ``ant_*_paper`` end to end at tiny size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")

import gymnasium  # noqa: E402

import metarl.envs  # noqa: E402, F401  (registers the metarl/ environments)
from metarl.envs import make_task_vector_env  # noqa: E402
from metarl.envs.base import Task  # noqa: E402
from metarl.envs.batched_mujoco import LocomotionVectorEnv  # noqa: E402
from metarl.envs.locomotion import LocomotionEnv  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*infinity")  # observations are unbounded

FAMILIES = ("AntVel", "AntDir", "AntGoal")
TASKS = {"AntVel": Task.of(velocity=2.0), "AntDir": Task.of(direction=1.0),
         "AntGoal": Task.of(goal=[1.0, -2.0])}
DT = 0.02  # the paper's Ant step: rllab's one 0.02 s step, here two 0.01 s steps
CONTACTS = 13 * 6  # the observation's last entries: clip(cfrc_ext[1:], -1, 1) of 13 bodies


def _paper_env(family: str, task: Task | None = None) -> LocomotionEnv:
    env = gymnasium.make(f"metarl/{family}-v0", physics="maml", action_space="unit").unwrapped
    assert isinstance(env, LocomotionEnv)
    env.set_task(TASKS[family] if task is None else task)
    return env


def _centre_of_mass(model, qpos: np.ndarray, qvel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The whole robot's centre of mass and its velocity, from each body's centre-of-mass
    Jacobian: sum_b m_b J_b qvel / sum_b m_b (every body but the world is in the torso's
    subtree)."""
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:] = qpos, qvel
    mujoco.mj_forward(model, data)
    jacobian = np.zeros((3, model.nv))
    position, momentum = np.zeros(3), np.zeros(3)
    for body in range(1, model.nbody):
        mujoco.mj_jacBodyCom(model, data, jacobian, None, body)
        position += model.body_mass[body] * data.xipos[body]
        momentum += model.body_mass[body] * (jacobian @ qvel)
    mass = model.body_mass[1:].sum()
    return position / mass, momentum / mass


def _task_term(family: str, position: np.ndarray, velocity: np.ndarray) -> float:
    """The paper's task reward plus its constant (1.0 / 0 / 4.0) and the 0.05 survive bonus."""
    if family == "AntVel":
        return -abs(velocity[0] - 2.0) + 1.0 + 0.05
    if family == "AntDir":
        return velocity[0] + 0.05
    return -(abs(position[0] - 1.0) + abs(position[1] + 2.0)) + 4.0 + 0.05


@pytest.mark.parametrize("family", FAMILIES)
def test_rewards_in_flight_follow_from_the_reset_state(family: str) -> None:
    """The Ant starts in the air: for its first steps no contact force acts, the actuators'
    torques are internal, so the centre of mass keeps its reset x-y velocity v0 and moves to
    c0 + v0 t. Policy actions in [-1, 1] (rllab's normalisation onto +-150 with gear 1 is the
    same torque as gymnasium's +-1 with gear 150); 1.6 and -2.0 are clipped to the box."""
    env = _paper_env(family)
    env.reset(seed=3)
    start, velocity = _centre_of_mass(env.model, env.data.qpos, env.data.qvel)
    action = np.array([0.5, -0.5, 1.6, 0.2, -2.0, 0.0, 0.3, -0.7])
    ctrl = 0.005 * np.sum(np.clip(action, -1.0, 1.0) ** 2)  # half-range 1: 0.005 * 3.12
    assert ctrl == pytest.approx(0.0156)
    for k in range(1, 4):
        obs, reward, terminated, _, info = env.step(action)
        assert not terminated
        assert np.all(obs[-CONTACTS:] == 0.0)  # in flight: no contact force, no contact cost
        position = start.copy()
        position[:2] += velocity[:2] * k * DT
        # abs 1e-4: RK4 keeps the momentum to about 4e-5 here; a wrong constant is off by 0.05
        assert reward == pytest.approx(_task_term(family, position, velocity) - ctrl, abs=1e-4)
        assert info["x_velocity"] == pytest.approx(velocity[0], abs=1e-4)


def test_direction_flips_only_the_velocity_term() -> None:
    """AntDir from the same state and action: d = +1 against d = -1 differ by exactly 2 v, with
    v the centre-of-mass x velocity after the step (contact and control costs cancel)."""
    action = np.linspace(-0.9, 0.9, 8)
    rewards = {}
    for direction in (1.0, -1.0):
        env = _paper_env("AntDir", Task.of(direction=direction))
        env.reset(seed=5)
        for _ in range(20):  # onto the floor, where the contact cost counts
            _, rewards[direction], _, _, _ = env.step(action)
    _, velocity = _centre_of_mass(env.model, env.data.qpos, env.data.qvel)
    assert abs(velocity[0]) > 1e-3
    assert rewards[1.0] - rewards[-1.0] == pytest.approx(2.0 * velocity[0], abs=1e-9)


@pytest.mark.parametrize("family", FAMILIES)
def test_task_distributions(family: str) -> None:
    """AntVel v ~ U[0, 3]; AntDir d = +-1 with probability 1/2 (the paper's code draws u ~ U[0, 3]
    and takes -1 below 1.5); AntGoal g ~ U[-3, 3]^2."""
    env = _paper_env(family)
    tasks = env.sample_tasks(2000, np.random.default_rng(0))
    name = {"AntVel": "velocity", "AntDir": "direction", "AntGoal": "goal"}[family]
    values = np.stack([t.as_array(name) for t in tasks])
    if family == "AntVel":
        assert values.min() >= 0.0 and values.max() <= 3.0
        assert values.mean() == pytest.approx(1.5, abs=0.1)
    elif family == "AntDir":
        assert set(np.unique(values)) == {-1.0, 1.0}
        assert (values > 0).mean() == pytest.approx(0.5, abs=0.05)
    else:
        assert values.shape == (2000, 2)
        assert values.min() >= -3.0 and values.max() <= 3.0
        assert values.mean(axis=0) == pytest.approx([0.0, 0.0], abs=0.2)
    again = env.sample_tasks(2000, np.random.default_rng(0))
    assert all(a == b for a, b in zip(tasks, again))


HEIGHTS = (1.5, 0.6, -0.3)  # torso z set before the step: above, inside, below [0.2, 1.0]


@pytest.mark.parametrize("family", FAMILIES)
def test_termination_by_torso_height_under_the_papers_step(family: str) -> None:
    """Termination when the torso's height after the 0.02 s step leaves [0.2, 1.0], the same
    rule in every family and in the single and the batched environment."""
    single = _paper_env(family)
    vector = make_task_vector_env(f"metarl/{family}-v0", len(HEIGHTS), "maml",
                                  action_space="unit")
    assert isinstance(vector, LocomotionVectorEnv)
    vector.set_tasks([TASKS[family]] * len(HEIGHTS))
    vector.reset(seed=0)
    single.reset(seed=0)
    states = []
    for i, z in enumerate(HEIGHTS):
        qpos = single.init_qpos.copy()
        qpos[2] = z
        qvel = np.zeros(single.model.nv)
        states.append((qpos, qvel))
        vector._state[i, vector._qpos_slice] = qpos
        vector._state[i, vector._qvel_slice] = qvel
    _, _, batched, _, _ = vector.step(np.zeros((len(HEIGHTS), 8)))
    for i, (qpos, qvel) in enumerate(states):
        single.set_state(qpos, qvel)
        _, _, terminated, _, _ = single.step(np.zeros(8))
        height = single.data.qpos[2]
        assert terminated == (not 0.2 <= height <= 1.0), (HEIGHTS[i], height)
        assert batched[i] == terminated
    # 0.02 s of free fall from 1.5 m cannot bring the torso under 1.0, nor lift it from 0.6
    assert batched[0] and not batched[1]
    vector.close()


# --- the presets ---------------------------------------------------------------------------

EXPERIMENTS = Path(__file__).parent.parent / "experiments"
PAPER_PRESETS = {"ant_vel_paper": ("metarl/AntVel-v0", 20),
                 "ant_dir_paper": ("metarl/AntDir-v0", 40),
                 "ant_goal_paper": ("metarl/AntGoal-v0", 20)}
CPU_PRESETS = sorted(p.stem for p in EXPERIMENTS.glob("ant_*_paper_cpu.yaml"))


def _load(preset: str):
    from metarl.config import load_config

    return load_config(EXPERIMENTS / f"{preset}.yaml")


@pytest.mark.parametrize("preset", sorted(PAPER_PRESETS))
def test_paper_presets_hold_the_papers_settings(preset: str) -> None:
    """Finn et al. 2017, Sec. 5.3 and Appendix A.2, and the Ant script of its code."""
    config = _load(preset)
    env_id, episodes = PAPER_PRESETS[preset]
    assert config.env_id == env_id
    assert (config.physics, config.action_space, config.horizon) == ("maml", "unit", 200)
    assert (config.hidden_sizes, config.activation) == ((100, 100), "relu")
    assert (config.learner, config.inner_lr, config.inner_steps) == ("maml", 0.1, 1)
    assert (config.meta_batch_size, config.episodes_per_task) == (40, episodes)
    assert (config.outer, config.max_kl, config.gamma, config.gae_lambda) == ("trpo", 0.01,
                                                                             0.99, 1.0)
    assert config.trpo_pre_update_kl and config.fvp_task_fraction == 0.25
    assert config.iterations == 800
    # the paper's test: 40 tasks, 20 episodes of 200 steps per update (AntDir 40)
    assert (config.eval_tasks, config.eval_episodes) == (40, episodes)


@pytest.mark.parametrize("preset", CPU_PRESETS)
def test_cpu_presets_change_only_the_batch(preset: str) -> None:
    """The CPU presets keep the paper preset's physics, rewards, policy, optimiser and
    evaluation; only the sampling budget and the time limit differ."""
    config, paper = _load(preset), _load(preset.removesuffix("_cpu"))
    budget = ("meta_batch_size", "episodes_per_task", "max_minutes")
    assert (config.meta_batch_size * config.episodes_per_task
            < paper.meta_batch_size * paper.episodes_per_task)
    for name, value in vars(paper).items():
        if name not in budget:
            assert getattr(config, name) == value, name


@pytest.mark.parametrize("preset", sorted(PAPER_PRESETS) + CPU_PRESETS)
def test_ant_preset_trains_evaluates_and_films_at_tiny_size(preset: str, tmp_path,
                                                             capsys) -> None:
    """Through the CLI: one iteration of 2 tasks x 2 episodes x 10 steps, an evaluation with two
    steps, and (for the paper presets, one per family: a CPU preset only changes the batch) a
    video, skipped when no OpenGL backend can be created."""
    from metarl.cli import main

    run = tmp_path / "run"
    assert main(["train", preset, "--run-dir", str(run), "--iterations", "1",
                 "--meta-batch-size", "2", "--episodes-per-task", "2", "--horizon", "10",
                 "--torch-threads", "1", "--no-progress"]) == 0
    assert main(["eval", str(run), "--tasks", "2", "--steps", "2", "--episodes", "2",
                 "--no-progress"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["env_id"] == PAPER_PRESETS[preset.removesuffix("_cpu")][0]
    assert result["steps"] == [0, 1, 2] and result["step_sizes"] == [0.1, 0.05]
    assert all(np.isfinite(result["mean"]))
    if preset not in PAPER_PRESETS:
        return
    capsys.readouterr()
    code = main(["video", str(run), "--tasks", "1", "--steps", "1", "--size", "48",
                 "--no-progress"])
    if code != 0:
        err = capsys.readouterr().err
        assert "OpenGL" in err or "EGL" in err, err
        pytest.skip(f"no OpenGL backend: {err.strip()}")
    assert (run / "video.mp4").stat().st_size > 1000
