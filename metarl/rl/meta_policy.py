"""A trained meta-policy from Python: load a run's checkpoint, adapt it to a task, act.

    from metarl.rl.meta_policy import MetaPolicy

    meta = MetaPolicy.load("runs/nav")                    # the best checkpoint and its config
    env = meta.make_env()                                 # one environment, as the run saw it
    task = env.unwrapped.sample_tasks(1, np.random.default_rng(0))[0]
    adapted = meta.adapt(task, steps=1)                   # the test-time protocol of metarl eval
    env.unwrapped.set_task(task)
    obs, _ = env.reset(seed=0)
    action = meta.act(obs, adapted)                       # the adapted policy's mean action

Adaptation samples fresh episodes of the task with the current policy and takes the learner's
test-time steps (``inner_lr``, then ``inner_lr / 2``; iMAML's proximal solves), exactly as
``metarl eval`` does; actions are in the space the run's policy acted in (``action_space``),
which ``make_env`` builds the environment for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch

from metarl.config import TrainConfig, load_config
from metarl.core.adaptation import per_task
from metarl.core.linalg import Params, params_device, params_to
from metarl.envs import Task, env_kwargs, make_task_vector_env
from metarl.rl.advantages import advantages_batch
from metarl.rl.device import resolve_device
from metarl.rl.evaluation import step_learning_rates
from metarl.rl.learners import build_learner
from metarl.rl.policy import PolicyModule, config_policy, load_params
from metarl.rl.step_budget import sample_batch


@dataclass
class MetaPolicy:
    config: TrainConfig
    policy: PolicyModule
    params: Params  # the meta-parameters theta

    @classmethod
    def load(cls, run_dir: str | Path, checkpoint: str = "best",
             device: str = "cpu") -> MetaPolicy:
        """The meta-policy of ``run_dir``'s ``checkpoint`` ("best" or "last"), its parameters
        on ``device`` ("cpu", "cuda" or "auto"; the CPU by default, whatever the run trained
        on: acting on one observation at a time gains nothing from a GPU)."""
        run_dir = Path(run_dir)
        config = load_config(run_dir / "config.yaml")
        params, _ = load_params(run_dir / "checkpoints" / f"{checkpoint}.pt", config)
        return cls(config, config_policy(config), params_to(params, resolve_device(device)))

    def make_env(self) -> Any:
        """One environment of the run's family, physics and action space."""
        c = self.config
        return gymnasium.make(c.env_id, **env_kwargs(c.env_id, c.physics, c.action_space))

    def adapt(self, task: Task, steps: int = 1, episodes: int | None = None,
              seed: int = 0) -> Params:
        """The parameters after ``steps`` test-time steps on ``task``, each on ``episodes``
        fresh episodes (default: the run's ``eval_episodes``; with ``batch_unit: steps``, whole
        episodes until that many horizons of steps) sampled with the current ones."""
        c = self.config
        episodes = c.eval_episodes if episodes is None else episodes
        env = make_task_vector_env(c.env_id, episodes, c.physics, action_space=c.action_space)
        learner = build_learner(c, self.policy)
        generator = torch.Generator().manual_seed(seed)
        adapted = per_task({k: v.detach() for k, v in self.params.items()}, 1)
        try:
            for step, rate in enumerate(step_learning_rates(c.inner_lr, steps)):
                sampled = sample_batch(env, self.policy, adapted, [task], episodes, c.horizon,
                                       c.batch_unit, generator, seed + step)
                adapted = learner.adapt_at_test(adapted, advantages_batch(sampled, c), rate)
        finally:
            env.close()
        return {k: v[0] for k, v in adapted.items()}

    def act(self, observation: np.ndarray, params: Params | None = None,
            deterministic: bool = True) -> np.ndarray:
        """The action of the policy with ``params`` (default: theta) at one observation: the
        mean (the most likely action, for a categorical policy), or a sample when not
        ``deterministic``."""
        chosen = self.params if params is None else params
        obs = torch.as_tensor(np.asarray(observation), dtype=torch.float32,
                              device=params_device(chosen))
        with torch.no_grad():
            dist = self.policy.distribution_params(chosen, obs)
            distribution = self.policy.distribution
            action = (distribution.mode(dist) if deterministic else
                      distribution.sample(dist, distribution.draw_noise(
                          distribution.mode(dist).shape, None)))
        return action.cpu().numpy()
