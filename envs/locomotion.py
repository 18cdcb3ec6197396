"""MuJoCo locomotion task families: HalfCheetah and Ant with velocity, direction and goal tasks.

Task distributions and rewards follow the MAML paper (Finn et al. 2017, arXiv:1703.03400,
Sec. 5.3), its RL code (github.com/cbfinn/maml_rl, ``rllab/envs/mujoco/*_rand*.py``) and the later
PyTorch reproductions, on gymnasium's MuJoCo models through the official ``mujoco`` bindings.
The observation, reward and termination of every family are pure numpy functions of batched
simulator arrays, shared by the single environment here and the batched simulator in
``batched_mujoco.py``, so both compute exactly the same thing.

Tasks: HalfCheetahVel ``v_goal ~ U[0, 2]``; HalfCheetahDir and AntDir ``d`` = +1 or -1 with
probability 1/2; AntVel ``v_goal ~ U[0, 3]``; AntGoal ``g ~ U[-3, 3]^2``.

Two physics settings (``physics``), each with its own time step and reward terms; ``a`` is the
action after clipping into the actuator range, ``f`` the external contact forces on the Ant's
bodies (``cfrc_ext``).

``"peers"`` (default), what the PyTorch reproductions ran: gymnasium's v5 models with frame
skip 5 (dt = 0.05 s for both robots), horizon 100, and with ``v_x`` the change of the torso's x
position over ``dt``:

- HalfCheetahVel: ``-|v_x - v_goal| - 0.05 sum(a^2)``.
- HalfCheetahDir: ``d v_x - 0.05 sum(a^2)``.
- AntVel: ``-|v_x - v_goal| + 1 - 0.005 sum(a^2) - 0.0005 sum(clip(f, -1, 1)^2)``.
- AntDir: ``d v_x + 1 - 0.005 sum(a^2) - 0.0005 sum(clip(f, -1, 1)^2)``.
- AntGoal: ``-(|x - g_x| + |y - g_y|) + 1 - 0.005 sum(a^2) - 0.0005 sum(clip(f, -1, 1)^2)``,
  ``x, y`` the torso's position.

``"maml"``, the MAML paper's simulation step and reward terms as its code computes them (use
horizon 200, and ``action_space: unit`` for its action normalisation, ``metarl.envs.action_map``):

- Time step: HalfCheetah dt = 0.01 s (one physics step per environment step), Ant dt = 0.02 s.
- ``v`` is the x velocity of the torso's centre of mass at the state after the step. rllab's
  ``get_body_comvel("torso")`` sums, over the subtree rooted at the torso (the whole robot, legs
  included), each body's mass times the linear velocity of its centre of mass, and divides by
  the subtree's mass: MuJoCo's ``subtree_linvel`` of the torso (``mj_subtreeVel``), an
  instantaneous velocity, not a finite difference of positions, and not the torso body's own.
  ``c`` is the torso subtree's centre of mass (``subtree_com``, rllab's ``get_body_com``).
- HalfCheetahVel: ``-|v - v_goal| - 0.05 sum(a^2)``; HalfCheetahDir: ``d v - 0.05 sum(a^2)``.
- Ant, with ``ctrl = 0.005 sum((a / h)^2)`` (``h`` the actuators' half-range), ``contact =
  0.0005 sum(clip(f, -1, 1)^2)`` and a survive bonus of 0.05 on top of each task's own constant:
  AntVel ``-|v - v_goal| + 1.0 + 0.05 - ctrl - contact``; AntDir ``d v + 0.05 - ctrl -
  contact``; AntGoal ``-(|c_x - g_x| + |c_y - g_y|) + 4.0 + 0.05 - ctrl - contact``.

Only the time step and the reward terms follow the paper; observations, resets and termination
are the same under both settings. Where gymnasium's models and this environment differ from the
rllab ones the paper ran (rllab's ``vendor/mujoco_models``):

- HalfCheetah: the same model file (total mass 14, joint ranges, stiffness, damping, gear
  120/90/60/120/60/30, time step 0.01 s); gymnasium only adds a tracking camera.
- Ant: the same bodies, masses (density 5), joint ranges and torques, but rllab's actuators have
  gear 1 and range +-150 where gymnasium's have gear 150 and range +-1 (the same torques; ``h``
  makes the control cost the same); rllab integrates one 0.02 s RK4 step where gymnasium's
  model has a 0.01 s time step (two steps here); rllab's geoms set ``solimp`` .8 .8 .01 where
  gymnasium's take MuJoCo's default.
- Both: rllab ran MuJoCo 1.31, here 3.3; rllab resets to ``qpos + 0.01 N(0, 1)`` where gymnasium
  (and this environment) use ``qpos + U(-0.1, 0.1)`` (both add ``0.1 N(0, 1)`` to ``qvel``);
  rllab's observations also hold the torso's centre of mass (HalfCheetah 20-D) and, for the Ant,
  the torso's x and y, every body's contact forces and the torso's rotation matrix.

Contact forces are evaluated at the state after the step by a forward pass from a cold solver
start (``contact_forces``; gymnasium instead reads them off the last physics sub-step, whose
warm-started solution a batched simulator cannot reproduce: contact forces are not unique, and
cold and warm solves can differ). The Ant terminates when its torso height leaves [0.2, 1.0] or
the state is not finite; HalfCheetah never terminates.

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
SURVIVE_REWARD = 1.0  # "peers": the Ant's bonus in every task
PAPER_SURVIVE_REWARD = 0.05  # "maml": the Ant's survive bonus, on top of each task's constant
PAPER_TASK_BONUS = {"AntVel": 1.0, "AntDir": 0.0, "AntGoal": 4.0}
HEALTHY_Z = (0.2, 1.0)
RESET_NOISE = 0.1
TORSO = "torso"  # the body whose subtree's centre of mass the "maml" rewards use


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
    """Batched simulator quantities one environment step produced, ``n`` sub-environments.

    ``com_position`` and ``com_velocity`` (the torso subtree's centre of mass and its linear
    velocity at the new state, ``subtree_com`` and ``subtree_linvel``) are computed only for the
    ``"maml"`` rewards, which use them; ``ctrl_half_range`` is the actuators' half-range.
    """

    qpos_before: np.ndarray  # [n, nq]
    qpos: np.ndarray  # [n, nq]
    qvel: np.ndarray  # [n, nv]
    action: np.ndarray  # [n, nu], clipped into the actuator range
    contact_forces: np.ndarray | None  # [n, nbody, 6] cfrc_ext, robots with contact terms only
    dt: float
    com_position: np.ndarray | None = None  # [n, 3], physics "maml" only
    com_velocity: np.ndarray | None = None  # [n, 3], physics "maml" only
    ctrl_half_range: np.ndarray | None = None  # [nu]


TaskParams = dict[str, np.ndarray]  # per-task parameters stacked over sub-environments
RewardFn = Callable[[StepArrays, TaskParams], np.ndarray]


@dataclass(frozen=True)
class Family:
    """A task family: robot, task sampler and reward under each physics setting."""

    name: str
    robot: Robot
    sample: Callable[[int, np.random.Generator], list[Task]]
    reward: RewardFn  # physics "peers"
    paper_reward: RewardFn  # physics "maml"
    observe_xy: bool = False  # append the torso's x, y to the observation

    def reward_for(self, physics: str) -> RewardFn:
        return self.paper_reward if physics == "maml" else self.reward


def forward_velocity(step: StepArrays) -> np.ndarray:
    """``"peers"``: the change of the torso's x position over the environment step."""
    velocity: np.ndarray = (step.qpos[:, 0] - step.qpos_before[:, 0]) / step.dt
    return velocity


def com_velocity(step: StepArrays) -> np.ndarray:
    """``"maml"``: the x velocity of the torso subtree's centre of mass after the step."""
    assert step.com_velocity is not None, "physics maml computes the centre-of-mass velocity"
    velocity: np.ndarray = step.com_velocity[:, 0]
    return velocity


def control_cost(step: StepArrays, robot: Robot) -> np.ndarray:
    cost: np.ndarray = CTRL_COST[robot.name] * np.sum(step.action**2, axis=-1)
    return cost


def contact_cost(step: StepArrays) -> np.ndarray:
    assert step.contact_forces is not None
    cost: np.ndarray = CONTACT_COST * np.sum(np.clip(step.contact_forces, -1.0, 1.0) ** 2,
                                             axis=(1, 2))
    return cost


def ant_alive_terms(step: StepArrays) -> np.ndarray:
    """``"peers"``: survive bonus minus control and contact costs, shared by the Ant families."""
    terms: np.ndarray = SURVIVE_REWARD - control_cost(step, ANT) - contact_cost(step)
    return terms


def paper_ant_terms(family: str) -> Callable[[StepArrays], np.ndarray]:
    """``"maml"``: the task's constant plus the 0.05 survive bonus, minus the control cost on
    actions in half-ranges and the contact cost (the MAML code's Ant rewards)."""
    bonus = PAPER_TASK_BONUS[family] + PAPER_SURVIVE_REWARD

    def terms(step: StepArrays) -> np.ndarray:
        assert step.ctrl_half_range is not None
        scaled = step.action / step.ctrl_half_range
        ctrl = CTRL_COST["ant"] * np.sum(scaled**2, axis=-1)
        result: np.ndarray = bonus - ctrl - contact_cost(step)
        return result

    return terms


def com_xy(step: StepArrays) -> np.ndarray:
    assert step.com_position is not None, "physics maml computes the centre of mass"
    xy: np.ndarray = step.com_position[:, :2]
    return xy


def _velocity_tasks(high: float) -> Callable[[int, np.random.Generator], list[Task]]:
    def sample(n: int, rng: np.random.Generator) -> list[Task]:
        return [Task.of(velocity=float(v)) for v in rng.uniform(0.0, high, size=n)]

    return sample


def _direction_tasks(n: int, rng: np.random.Generator) -> list[Task]:
    return [Task.of(direction=float(d)) for d in rng.choice([-1.0, 1.0], size=n)]


def _goal_tasks(n: int, rng: np.random.Generator) -> list[Task]:
    return [Task.of(goal=g) for g in rng.uniform(-3.0, 3.0, size=(n, 2))]


_ANT_VEL, _ANT_DIR, _ANT_GOAL = (paper_ant_terms(f) for f in ("AntVel", "AntDir", "AntGoal"))

FAMILIES: dict[str, Family] = {
    "HalfCheetahVel": Family(
        "HalfCheetahVel", HALF_CHEETAH, _velocity_tasks(2.0),
        lambda s, t: -np.abs(forward_velocity(s) - t["velocity"]) - control_cost(s, HALF_CHEETAH),
        lambda s, t: -np.abs(com_velocity(s) - t["velocity"]) - control_cost(s, HALF_CHEETAH),
    ),
    "HalfCheetahDir": Family(
        "HalfCheetahDir", HALF_CHEETAH, _direction_tasks,
        lambda s, t: t["direction"] * forward_velocity(s) - control_cost(s, HALF_CHEETAH),
        lambda s, t: t["direction"] * com_velocity(s) - control_cost(s, HALF_CHEETAH),
    ),
    "AntVel": Family(
        "AntVel", ANT, _velocity_tasks(3.0),
        lambda s, t: -np.abs(forward_velocity(s) - t["velocity"]) + ant_alive_terms(s),
        lambda s, t: -np.abs(com_velocity(s) - t["velocity"]) + _ANT_VEL(s),
    ),
    "AntDir": Family(
        "AntDir", ANT, _direction_tasks,
        lambda s, t: t["direction"] * forward_velocity(s) + ant_alive_terms(s),
        lambda s, t: t["direction"] * com_velocity(s) + _ANT_DIR(s),
    ),
    "AntGoal": Family(
        "AntGoal", ANT, _goal_tasks,
        lambda s, t: -np.sum(np.abs(s.qpos[:, :2] - t["goal"]), axis=-1) + ant_alive_terms(s),
        lambda s, t: -np.sum(np.abs(com_xy(s) - t["goal"]), axis=-1) + _ANT_GOAL(s),
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


def torso_com(model: mujoco.MjModel, scratch: mujoco.MjData, qpos: np.ndarray,
              qvel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The torso subtree's centre of mass and its linear velocity (``subtree_com`` and
    ``subtree_linvel``, ``[3]`` each) at (qpos, qvel): kinematics only, no dynamics."""
    scratch.qpos[:] = qpos
    scratch.qvel[:] = qvel
    mujoco.mj_kinematics(model, scratch)
    mujoco.mj_comPos(model, scratch)
    mujoco.mj_comVel(model, scratch)
    mujoco.mj_subtreeVel(model, scratch)
    torso = torso_id(model)
    return scratch.subtree_com[torso].copy(), scratch.subtree_linvel[torso].copy()


def torso_id(model: mujoco.MjModel) -> int:
    body: int = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, TORSO)
    if body < 0:
        raise ValueError(f"the model has no body named {TORSO!r}")
    return body


def ctrl_half_range(model: mujoco.MjModel) -> np.ndarray:
    low, high = model.actuator_ctrlrange.T
    half: np.ndarray = (high - low) / 2.0
    return half


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
        self.physics = physics
        self._reward = self.family.reward_for(physics)
        robot = self.family.robot
        MujocoEnv.__init__(self, robot.xml_path, robot.frame_skip[physics], None,
                           render_mode=render_mode, width=width, height=height,
                           default_camera_config={"distance": 4.0, "trackbodyid": 1})
        # MujocoEnv exposes the actuators' range; the policy may act in the unit box instead
        low, high = self.model.actuator_ctrlrange.T.astype(np.float32)
        self._action_map = ActionMap(gymnasium.spaces.Box(low, high, dtype=np.float32),
                                     action_space)
        self.action_space = self._action_map.space
        self._half_range = ctrl_half_range(self.model)
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
        com_pos = com_vel = None
        if self.physics == "maml":
            position, velocity = torso_com(self.model, self._scratch, self.data.qpos,
                                           self.data.qvel)
            com_pos, com_vel = position[None], velocity[None]
        step = StepArrays(qpos_before[None], self.data.qpos[None].copy(),
                          self.data.qvel[None].copy(), action[None],
                          self._contacts if self.family.robot.uses_contacts else None, self.dt,
                          com_pos, com_vel, self._half_range)
        reward = float(self._reward(step, stack_tasks([self._task]))[0])
        done = bool(terminated(self.family, step.qpos, step.qvel)[0])
        if self.render_mode == "human":
            self.render()  # type: ignore[no-untyped-call]
        velocity = com_velocity(step) if self.physics == "maml" else forward_velocity(step)
        return self._get_obs(), reward, done, False, {"x_velocity": velocity[0]}
