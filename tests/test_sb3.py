"""stable-baselines3 compatibility: every metarl/ gymnasium id passes SB3's environment checker
and trains under PPO unchanged, and so does the task-augmented (oracle) wrapper.

The fast set covers every non-Meta-World id and one Meta-World id; the sweep over all 51
Meta-World ids (ML1 x 50 and ML10) is marked slow: each builds its benchmark first.
"""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

import metarl.envs  # noqa: F401  (registers the metarl/ environments)
from metarl.envs import registered_env_ids
from metarl.envs.task_observation import TaskObservation

sb3 = pytest.importorskip("stable_baselines3")
from stable_baselines3.common.env_checker import check_env  # noqa: E402

METAWORLD = [i for i in registered_env_ids() if i.startswith(("metarl/ML1-", "metarl/ML10-"))]
OTHERS = [i for i in registered_env_ids() if i not in METAWORLD]
STEPS = 256  # two PPO rollouts of 128 steps, each followed by an update


def _needs(env_id: str) -> None:
    if env_id in METAWORLD:
        pytest.importorskip("metaworld")
    elif env_id not in ("metarl/Navigation2D-v0", "metarl/Bandit-v0", "metarl/Bandit-K10-v0",
                        "metarl/TabularMDP-v0"):
        pytest.importorskip("mujoco")


def _trains_under_ppo(env: gymnasium.Env) -> None:
    model = sb3.PPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=1, seed=0,
                    policy_kwargs={"net_arch": [16]}, device="cpu")
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(total_timesteps=STEPS)
    assert model.num_timesteps == STEPS
    after = model.policy.state_dict()
    assert any(not np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)
    action, _ = model.predict(env.reset(seed=1)[0], deterministic=True)
    assert env.action_space.contains(action)


def _check_and_train(env_id: str) -> None:
    _needs(env_id)
    check_env(gymnasium.make(env_id).unwrapped, warn=True)
    _trains_under_ppo(gymnasium.make(env_id))


@pytest.mark.parametrize("env_id", OTHERS + ["metarl/ML1-reach-v3"])
def test_ppo_trains_on_the_registered_environment(env_id: str) -> None:
    _check_and_train(env_id)


def test_ppo_trains_on_the_task_augmented_wrapper() -> None:
    env = TaskObservation(gymnasium.make("metarl/Navigation2D-v0"), resample=True, seed=0)
    check_env(env, warn=True)
    _trains_under_ppo(env)


@pytest.mark.slow
@pytest.mark.parametrize("env_id", [i for i in METAWORLD if i != "metarl/ML1-reach-v3"])
def test_ppo_trains_on_every_meta_world_id(env_id: str) -> None:
    _check_and_train(env_id)
