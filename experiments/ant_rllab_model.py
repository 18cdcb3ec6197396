"""How much the Ant's differences from the model the MAML paper ran change what it does.

    python experiments/ant_rllab_model.py --episodes 200

metarl's Ant under ``physics: maml`` is gymnasium's model stepped twice at 0.01 s per action
(``metarl.envs.locomotion`` lists every difference from rllab's). Two of the differences change
the simulation itself; this script applies them to gymnasium's model one at a time, as rllab's
``vendor/mujoco_models/ant.xml`` sets them (github.com/cbfinn/maml_rl):

- ``rllab_time_step``: one 0.02 s RK4 step per action instead of two of 0.01 s;
- ``rllab_contacts``: that, and every geom's contact softness ``solimp`` .8 .8 .01 (MuJoCo's
  default: 0.9 0.95 0.001).

(rllab's actuators, gear 1 with range +-150 against gymnasium's gear 150 with range +-1, give
the same torques, and MuJoCo 1.31 against 3.3 cannot be tried here.) Every variant runs the same
episodes of the AntVel task (goal velocity ``--velocity``, the paper's reward): the same reset
states and the same uniformly random actions in [-1, 1]^8, for up to 200 steps. Printed per
variant: the mean return with its 95% interval over the episodes, the mean difference from
metarl's model on the same episodes (paired), the share of episodes that fell (an Ant whose
torso leaves [0.2, 1.0] in height stops), their length and the torso's mean forward velocity. A
random policy is what this measures; a trained gait may be more or less sensitive.
"""

from __future__ import annotations

import argparse

import gymnasium
import mujoco
import numpy as np

from metarl.core.confidence import ci95
from metarl.envs.base import Task
from metarl.envs.locomotion import ANT, LocomotionEnv

VARIANTS = ("metarl", "rllab_time_step", "rllab_contacts")


def variant_model(name: str) -> mujoco.MjModel:
    """gymnasium's Ant model with ``name``'s changes (see the module's docstring)."""
    with open(ANT.xml_path) as file:
        xml = file.read()
    edits = []
    if name != "metarl":
        edits.append(('timestep="0.01"', 'timestep="0.02"'))
    if name == "rllab_contacts":  # the first geom element is the default class's
        edits.append(('<geom conaffinity="0"', '<geom solimp=".8 .8 .01" conaffinity="0"'))
    for old, new in edits:
        if old not in xml:
            raise RuntimeError(f"gymnasium's {ANT.xml_path} no longer holds {old!r}")
        xml = xml.replace(old, new, 1)
    return mujoco.MjModel.from_xml_string(xml)


def make_env(name: str) -> LocomotionEnv:
    env = LocomotionEnv("AntVel", physics="maml", action_space="unit")
    if name != "metarl":  # the same environment around the variant's model, one step an action
        env.model = variant_model(name)
        env.data = mujoco.MjData(env.model)
        env._scratch = mujoco.MjData(env.model)
        env.frame_skip = 1
    assert abs(env.dt - 0.02) < 1e-12, env.dt
    return env


def run_episodes(name: str, episodes: int, velocity: float, horizon: int) -> dict[str, np.ndarray]:
    env = make_env(name)
    env.set_task(Task.of(velocity=velocity))
    returns, lengths, speeds = [], [], []
    for episode in range(episodes):
        env.reset(seed=episode)
        actions = np.random.default_rng(episode).uniform(-1.0, 1.0, size=(horizon, 8))
        total, steps, speed = 0.0, 0, 0.0
        for action in actions:
            _, reward, done, _, info = env.step(action)
            total += reward
            steps += 1
            speed += info["x_velocity"]
            if done:
                break
        returns.append(total)
        lengths.append(steps)
        speeds.append(speed / steps)
    env.close()
    return {"return": np.array(returns), "length": np.array(lengths),
            "velocity": np.array(speeds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--velocity", type=float, default=1.5,
                        help="AntVel's goal velocity (the paper's tasks: U[0, 3])")
    parser.add_argument("--horizon", type=int, default=200)
    args = parser.parse_args()
    gymnasium.logger.min_level = 40  # the environment's own warnings are not this script's
    results = {name: run_episodes(name, args.episodes, args.velocity, args.horizon)
               for name in VARIANTS}
    base = results["metarl"]["return"]
    print(f"AntVel, goal velocity {args.velocity}, {args.episodes} episodes of up to "
          f"{args.horizon} steps, uniformly random actions\n")
    print("| model | return | minus metarl's (paired) | fell | steps | forward velocity |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        difference = r["return"] - base
        print(f"| {name} | {r['return'].mean():.2f} ({ci95(r['return']):.2f}) | "
              f"{difference.mean():.2f} ({ci95(difference):.2f}) | "
              f"{np.mean(r['length'] < args.horizon):.1%} | "
              f"{r['length'].mean():.1f} ({ci95(r['length']):.1f}) | "
              f"{r['velocity'].mean():.4f} ({ci95(r['velocity']):.4f}) |")


if __name__ == "__main__":
    main()
