"""MuJoCo locomotion task families: HalfCheetah and Ant with velocity, direction and goal tasks.

Task distributions and rewards follow REFERENCE.md section 1 (MAML, Finn et al. 2017,
arXiv:1703.03400, Sec. 5.3, and the peers' reproductions), on gymnasium's MuJoCo models through
the official ``mujoco`` bindings. The observation, reward and termination of every family are
pure numpy functions of batched simulator arrays, shared by the single environment here and the
batched simulator in ``batched_mujoco.py``, so both compute exactly the same thing.

Rewards per step (``v_x`` = change of the torso's x position over the environment step ``dt``,
``a`` = the action after clipping into the actuator range):

- HalfCheetahVel: ``-|v_x - v_goal| - 0.05 sum(a^2)``, ``v_goal ~ U[0, 2]``.
- HalfCheetahDir: ``d v_x - 0.05 sum(a^2)``, ``d`` = +1 or -1 with probability 1/2.
- AntVel: ``-|v_x - v_goal| + 1 - 0.005 sum(a^2) - 0.0005 sum(clip(f, -1, 1)^2)``,
  ``v_goal ~ U[0, 3]``.
- AntDir: ``d v_x + 1 - 0.005 sum(a^2) - 0.0005 sum(clip(f, -1, 1)^2)``.
- AntGoal: ``-(|x - g_x| + |y - g_y|) + 1 - 0.005 sum(a^2) - 0.0005 sum(clip(f, -1, 1)^2)``,
  ``g ~ U[-3, 3]^2``.

``f`` are the external contact forces on the Ant's bodies (``cfrc_ext``), evaluated at the state
after the step by a forward pass from a cold solver start (``contact_forces``; gymnasium instead
reads them off the last physics sub-step, whose warm-started solution a batched simulator
cannot reproduce: contact forces are not unique, and cold and warm solves can differ). The
survive bonus 1.0 is REFERENCE.md's; the control and contact coefficients are those of the
MAML-RL ant (0.5 * 1e-2 and 0.5 * 1e-3). The Ant terminates when its torso height leaves
[0.2, 1.0] or the state is not finite; HalfCheetah never terminates.

Physics settings (``physics``):

- ``"peers"`` (default): gymnasium's v5 models with frame skip 5 (dt = 0.05 s for both robots);
  use horizon 100. This is what the PyTorch reproductions ran.
- ``"maml"``: the MAML paper's simulation step: HalfCheetah dt = 0.01 s (frame skip 1), Ant
  dt = 0.02 s (frame skip 2); use horizon 200. The models are still gymnasium's, not rllab's:
  masses, joint limits and gear differ from the paper's (rllab's Ant also had gear 150, which
  gymnasium's Ant shares), so returns are comparable in time scale but not identical.

Observations are gymnasium v5's: HalfCheetah ``qpos[1:], qvel`` (17-D); Ant ``qpos[2:], qvel,
clip(cfrc_ext[1:], -1, 1)`` (105-D). AntGoal also observes the torso's x and y, which gymnasium's
Ant hides: the goal itself stays hidden and must be inferred from rewards, but without its own
position the policy could not tell where it is relative to any goal.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium
import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

from metarl.envs.action_map import ActionMap
from metarl.envs.base import Task, TaskEnv, checked_action

PHYSICS = ("peers", "maml")
CTRL_COST = {"half_cheetah": 0.05, "ant": 0.5 * 1e-2}
CONTACT_COST = 0.5 * 1e-3
SURVIVE_REWARD = 1.0
HEALTHY_Z = (0.2, 1.0)
RESET_NOISE = 0.1


@dataclass(frozen=True)
class Robot:
    """A gymnasium MuJoCo model and how its state maps to observations."""

    name: str
    xml_file: str
    frame_skip: dict[str, int]  # per physics setting
    skip_qpos: int  # leading qpos entries hidden from the observation (torso position)

    @property
    def xml_path(self) -> str:
        assets = os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets")
        return os.path.join(assets, self.xml_file)

    @property
    def uses_contacts(self) -> bool:
        return self.name == "ant"


HALF_CHEETAH = Robot("half_cheetah", "half_cheetah.xml", {"peers": 5, "maml": 1}, skip_qpos=1)
ANT = Robot("ant", "ant.xml", {"peers": 5, "maml": 2}, skip_qpos=2)


@dataclass(frozen=True)
class StepArrays:
    """Batched simulator quantities one environment step produced, ``n`` sub-environments."""

    qpos_before: np.ndarray  # [n, nq]
    qpos: np.ndarray  # [n, nq]
    qvel: np.ndarray  # [n, nv]
    action: np.ndarray  # [n, nu], clipped into the actuator range
    contact_forces: np.ndarray | None  # [n, nbody, 6] cfrc_ext, robots with contact terms only
    dt: float


TaskParams = dict[str, np.ndarray]  # per-task parameters stacked over sub-environments
RewardFn = Callable[[StepArrays, TaskParams], np.ndarray]


@dataclass(frozen=True)
class Family:
    """A task family: robot, task sampler and reward."""

    name: str
    robot: Robot
    sample: Callable[[int, np.random.Generator], list[Task]]
    reward: RewardFn
    observe_xy: bool = False  # append the torso's x, y to the observation


def forward_velocity(step: StepArrays) -> np.ndarray:
    velocity: np.ndarray = (step.qpos[:, 0] - step.qpos_before[:, 0]) / step.dt
    return velocity


def control_cost(step: StepArrays, robot: Robot) -> np.ndarray:
    cost: np.ndarray = CTRL_COST[robot.name] * np.sum(step.action**2, axis=-1)
    return cost


def ant_alive_terms(step: StepArrays) -> np.ndarray:
    """Survive bonus minus control and contact costs, shared by the Ant families."""
    assert step.contact_forces is not None
    contact = CONTACT_COST * np.sum(np.clip(step.contact_forces, -1.0, 1.0) ** 2, axis=(1, 2))
    terms: np.ndarray = SURVIVE_REWARD - control_cost(step, ANT) - contact
    return terms


def _velocity_tasks(high: float) -> Callable[[int, np.random.Generator], list[Task]]:
    def sample(n: int, rng: np.random.Generator) -> list[Task]:
        return [Task.of(velocity=float(v)) for v in rng.uniform(0.0, high, size=n)]

    return sample


def _direction_tasks(n: int, rng: np.random.Generator) -> list[Task]:
    return [Task.of(direction=float(d)) for d in rng.choice([-1.0, 1.0], size=n)]


def _goal_tasks(n: int, rng: np.random.Generator) -> list[Task]:
    return [Task.of(goal=g) for g in rng.uniform(-3.0, 3.0, size=(n, 2))]


FAMILIES: dict[str, Family] = {
    "HalfCheetahVel": Family(
        "HalfCheetahVel", HALF_CHEETAH, _velocity_tasks(2.0),
        lambda s, t: -np.abs(forward_velocity(s) - t["velocity"]) - control_cost(s, HALF_CHEETAH),
    ),
    "HalfCheetahDir": Family(
        "HalfCheetahDir", HALF_CHEETAH, _direction_tasks,
        lambda s, t: t["direction"] * forward_velocity(s) - control_cost(s, HALF_CHEETAH),
    ),
    "AntVel": Family(
        "AntVel", ANT, _velocity_tasks(3.0),
        lambda s, t: -np.abs(forward_velocity(s) - t["velocity"]) + ant_alive_terms(s),
    ),
    "AntDir": Family(
        "AntDir", ANT, _direction_tasks,
        lambda s, t: t["direction"] * forward_velocity(s) + ant_alive_terms(s),
    ),
    "AntGoal": Family(
        "AntGoal", ANT, _goal_tasks,
        lambda s, t: -np.sum(np.abs(s.qpos[:, :2] - t["goal"]), axis=-1) + ant_alive_terms(s),
        observe_xy=True,
    ),
}


def stack_tasks(tasks: list[Task]) -> TaskParams:
    """Task parameters as arrays over sub-environments (``{"goal": [n, 2]}``, ...)."""
    names = [name for name, _ in tasks[0].params]
    return {name: np.stack([t.as_array(name) for t in tasks]) for name in names}


def observation(family: Family, qpos: np.ndarray, qvel: np.ndarray,
                contact_forces: np.ndarray | None) -> np.ndarray:
    """gymnasium v5's observation for ``[n, ...]`` arrays (plus x, y for AntGoal)."""
    parts = [qpos[:, family.robot.skip_qpos:], qvel]
    if family.robot.uses_contacts:
        assert contact_forces is not None
        parts.append(np.clip(contact_forces[:, 1:], -1.0, 1.0).reshape(len(qpos), -1))
    if family.observe_xy:
        parts.insert(0, qpos[:, :2])
    return np.concatenate(parts, axis=1)


def terminated(family: Family, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    finite = np.isfinite(qpos).all(axis=1) & np.isfinite(qvel).all(axis=1)
    if family.robot.uses_contacts:
        z = qpos[:, 2]
        finite = finite & (z >= HEALTHY_Z[0]) & (z <= HEALTHY_Z[1])
    done: np.ndarray = ~finite
    return done


def contact_forces(model: mujoco.MjModel, scratch: mujoco.MjData, qpos: np.ndarray,
                   qvel: np.ndarray, ctrl: np.ndarray) -> np.ndarray:
    """``cfrc_ext [nbody, 6]`` at (qpos, qvel) under ctrl, from a forward pass started cold."""
    scratch.qpos[:] = qpos
    scratch.qvel[:] = qvel
    scratch.ctrl[:] = ctrl
    scratch.qacc_warmstart[:] = 0.0
    mujoco.mj_forward(model, scratch)
    mujoco.mj_rnePostConstraint(model, scratch)
    forces: np.ndarray = scratch.cfrc_ext.copy()
    return forces


def reset_state(init_qpos: np.ndarray, init_qvel: np.ndarray, n: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """gymnasium v5's reset noise: qpos + U(-0.1, 0.1), qvel + 0.1 N(0, 1)."""
    qpos = init_qpos + rng.uniform(-RESET_NOISE, RESET_NOISE, size=(n, init_qpos.size))
    qvel = init_qvel + RESET_NOISE * rng.standard_normal(size=(n, init_qvel.size))
    return qpos, qvel


def check_physics(physics: str) -> None:
    if physics not in PHYSICS:
        raise ValueError(f"unknown physics setting {physics!r} (known: {', '.join(PHYSICS)})")


class LocomotionEnv(MujocoEnv, TaskEnv[np.ndarray, np.ndarray]):
    """One robot of a locomotion task family; registered as ``metarl/<Family>-v0``."""

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"]}

    def __init__(self, family: str, physics: str = "peers", render_mode: str | None = None,
                 width: int = 480, height: int = 480, action_space: str = "env") -> None:
        if family not in FAMILIES:
            raise ValueError(f"unknown locomotion family {family!r} (known: {', '.join(FAMILIES)})")
        check_physics(physics)
        self.family = FAMILIES[family]
        robot = self.family.robot
        MujocoEnv.__init__(self, robot.xml_path, robot.frame_skip[physics], None,
                           render_mode=render_mode, width=width, height=height,
                           default_camera_config={"distance": 4.0, "trackbodyid": 1})
        # MujocoEnv exposes the actuators' range; the policy may act in the unit box instead
        low, high = self.model.actuator_ctrlrange.T.astype(np.float32)
        self._action_map = ActionMap(gymnasium.spaces.Box(low, high, dtype=np.float32),
                                     action_space)
        self.action_space = self._action_map.space
        self.metadata = {"render_modes": ["human", "rgb_array", "depth_array"],
                         "render_fps": int(np.round(1.0 / self.dt))}
        obs_dim = observation(self.family, self.init_qpos[None], self.init_qvel[None],
                              np.zeros((1, self.model.nbody, 6))).shape[1]
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float64)
        self._task = self.family.sample(1, np.random.default_rng(0))[0]
        self._scratch = mujoco.MjData(self.model)
        self._contacts = np.zeros((1, self.model.nbody, 6))  # none computed before a step

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return self.family.sample(n, rng)

    def set_task(self, task: Task) -> None:
        self._task = task

    @property
    def task(self) -> Task:
        return self._task

    def _get_obs(self) -> np.ndarray:
        obs: np.ndarray = observation(self.family, self.data.qpos[None], self.data.qvel[None],
                                      self._contacts)[0]
        return obs

    def reset_model(self) -> np.ndarray:
        qpos, qvel = reset_state(self.init_qpos, self.init_qvel, 1, self.np_random)
        self.set_state(qpos[0], qvel[0])  # type: ignore[no-untyped-call]
        self._contacts = np.zeros((1, self.model.nbody, 6))
        return self._get_obs()

    def step(  # type: ignore[override]
        self, action: np.ndarray
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        low, high = self.model.actuator_ctrlrange.T
        action = np.clip(self._action_map(checked_action(action, (self.model.nu,))), low, high)
        qpos_before = self.data.qpos.copy()
        self.do_simulation(action, self.frame_skip)
        if self.family.robot.uses_contacts:
            self._contacts = contact_forces(self.model, self._scratch, self.data.qpos,
                                            self.data.qvel, action)[None]
        step = StepArrays(qpos_before[None], self.data.qpos[None].copy(),
                          self.data.qvel[None].copy(), action[None],
                          self._contacts if self.family.robot.uses_contacts else None, self.dt)
        reward = float(self.family.reward(step, stack_tasks([self._task]))[0])
        done = bool(terminated(self.family, step.qpos, step.qvel)[0])
        if self.render_mode == "human":
            self.render()  # type: ignore[no-untyped-call]
        return self._get_obs(), reward, done, False, {"x_velocity": forward_velocity(step)[0]}
