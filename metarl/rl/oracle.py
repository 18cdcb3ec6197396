"""The oracle baseline: a policy that observes the task, trained with stable-baselines3 PPO.

The MAML paper's oracle (Finn et al. 2017, arXiv:1703.03400, Sec. 5.3) receives the task's
parameters (goal position, target velocity or direction) as part of its observation, so it needs
no adaptation: it is the upper reference line of the comparison. Here it is SB3's PPO
(Schulman et al. 2017, arXiv:1707.06347) with its default hyperparameters on the registered
gymnasium environment wrapped in ``TaskObservation``: a new task drawn from the distribution at
every reset and its numeric parameters appended to the observation. PPO acts in [-1, 1]^d,
whatever the run's ``action_space``: the environment is made with ``action_space="unit"``, the
same map onto the environment's bounds that a run with that setting uses
(``metarl.envs.action_map``; SB3's advice for Box actions, and PPO's Gaussian starts at std 1,
which on 2D navigation's +-0.1 bounds would clip nearly every sample). Evaluation uses the same
held-out tasks, seeds and horizon as ``metarl.rl.evaluation``, with the oracle's mean actions.

The discrete families (bandits, tabular MDPs) need no PPO: their environments know each task's
optimal expected return (the best arm's probability times the horizon; the MDP's optimal value
by value iteration), and that exact ceiling is their oracle (``known_optimal_returns``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from metarl.config import TrainConfig
from metarl.envs import env_kwargs, held_out_tasks, make_task_vector_env
from metarl.envs.task_observation import (
    TaskObservation,
    feature_widths,
    numeric_parameter_names,
    task_features,
)
from metarl.run.atomic_write import write_json

# PPO environment steps per task family: enough for the oracle to plateau (measured on 2D
# navigation; the locomotion budgets are the order SB3's MuJoCo benchmarks use).
DEFAULT_TIMESTEPS = {"metarl/Navigation2D": 200_000}
LOCOMOTION_TIMESTEPS = 1_000_000
PPO_ENVS = 8
ORACLE_ACTION_SPACE = "unit"  # PPO acts in [-1, 1]^d, mapped onto the environment's bounds


def known_optimal_returns(config: TrainConfig, tasks: int, seed: int) -> np.ndarray | None:
    """The optimal expected return of one episode on each of the ``tasks`` held-out tasks that
    ``metarl.rl.evaluation`` draws with ``seed``, where ``config``'s environment knows it (its
    ``optimal_return``); None for the other families. A one-line error if the run's horizon is
    not the environment's, for which the optimum is computed."""
    env = make_task_vector_env(config.env_id, 1, config.physics)
    optimal = getattr(env, "optimal_return", None)
    if optimal is None:
        return None
    horizon = getattr(env, "horizon", config.horizon)
    if horizon != config.horizon:
        raise ValueError(f"{config.env_id}'s optimal return is for its horizon {horizon}, but the "
                         f"run's horizon is {config.horizon}")
    held_out = held_out_tasks(config.env_id, env, tasks, seed, config.eval_task_set)
    return np.array([float(optimal(task)) for task in held_out])


def check_oracle_available(config: TrainConfig) -> None:
    """A one-line error if the oracle cannot be built for ``config``."""
    if known_optimal_returns(config, 1, 0) is not None:
        return  # the exact optimum: no PPO to train
    try:
        import stable_baselines3  # noqa: F401
    except ImportError as err:
        raise ValueError("the oracle baseline needs stable-baselines3: pip install -e "
                         "'.[baselines]' (or leave it out: --baselines pretrained,random)") from err
    env = make_task_vector_env(config.env_id, 1, config.physics)
    tasks = env.sample_tasks(1, np.random.default_rng(0))
    if not numeric_parameter_names(tasks[0]):
        raise ValueError(f"{config.env_id}'s tasks have no numeric parameters to reveal")


def default_timesteps(env_id: str) -> int:
    base = env_id.rsplit("-v", 1)[0]
    return DEFAULT_TIMESTEPS.get(base, LOCOMOTION_TIMESTEPS)


def train_oracle(config: TrainConfig, out_dir: Path, timesteps: int | None = None,
                 progress: bool = True) -> tuple[Any, int | None]:
    """Train (or load, when ``out_dir/model.zip`` exists) the PPO oracle for ``config``'s env;
    the model and the PPO steps it was trained for (None: a model saved before the budget was
    recorded). A saved oracle of another budget than
    ``timesteps`` is refused with one line (it is not silently reused)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    model_path, budget_path = out_dir / "model.zip", out_dir / "budget.json"
    if model_path.is_file():
        saved = (json.loads(budget_path.read_text())["timesteps"] if budget_path.is_file()
                 else None)
        if timesteps is not None and saved != timesteps:
            trained = "an unknown number of" if saved is None else f"{saved}"
            raise ValueError(f"{out_dir} holds an oracle trained for {trained} PPO steps, not "
                             f"{timesteps}; omit --oracle-timesteps to reuse it, or remove that "
                             "folder to retrain")
        return PPO.load(model_path, device="cpu"), saved
    steps = default_timesteps(config.env_id) if timesteps is None else timesteps
    print(f"training the PPO oracle for {steps} steps into {out_dir}")

    def make(index: int) -> Any:
        def build() -> gymnasium.Env[np.ndarray, np.ndarray]:
            env = gymnasium.make(config.env_id, max_episode_steps=config.horizon,
                                 **env_kwargs(config.env_id, config.physics,
                                              ORACLE_ACTION_SPACE))
            return TaskObservation(env, resample=True, seed=config.seed * PPO_ENVS + index)
        return build

    vec_env = DummyVecEnv([make(i) for i in range(PPO_ENVS)])
    model = PPO("MlpPolicy", vec_env, seed=config.seed, device="cpu", verbose=0)
    model.learn(total_timesteps=steps, progress_bar=progress and _has_rich())
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "model.tmp.zip"
    model.save(tmp)
    tmp.replace(model_path)  # atomic: a killed training never leaves half a model
    write_json(budget_path, {"timesteps": steps})
    return model, steps


def evaluate_oracle(config: TrainConfig, model: Any, tasks: int, episodes: int,
                    seed: int, deterministic: bool = True) -> np.ndarray:
    """Mean return per held-out task (``[tasks]``), on the tasks and reset seed that
    ``metarl.rl.evaluation.evaluate_adaptation`` uses for its step 0. The oracle acts with its
    mean action by default: it is the upper reference, not a policy still exploring."""
    env = make_task_vector_env(config.env_id, tasks * episodes, config.physics,
                               action_space=ORACLE_ACTION_SPACE)
    held_out = held_out_tasks(config.env_id, env, tasks, seed, config.eval_task_set)
    env.set_tasks([task for task in held_out for _ in range(episodes)])
    names = numeric_parameter_names(held_out[0])
    widths = feature_widths(env, names, held_out)  # TaskObservation's layout, as in training
    features = np.repeat(np.stack([task_features(t, names, widths) for t in held_out]),
                         episodes, axis=0).astype(np.float32)
    obs, _ = env.reset(seed=seed)
    totals = np.zeros(tasks * episodes)
    alive = np.ones(tasks * episodes, dtype=bool)
    for _ in range(config.horizon):
        revealed = np.concatenate([np.asarray(obs, np.float32), features], axis=1)
        actions, _ = model.predict(revealed, deterministic=deterministic)
        obs, reward, terminated, truncated, _ = env.step(np.asarray(actions))
        totals += np.where(alive, reward, 0.0)
        alive &= ~(np.asarray(terminated) | np.asarray(truncated))
        if not alive.any():
            break
    result: np.ndarray = totals.reshape(tasks, episodes).mean(axis=1)
    return result


def _has_rich() -> bool:
    """SB3's progress bar needs tqdm and rich; without rich, train quietly."""
    return importlib.util.find_spec("rich") is not None
