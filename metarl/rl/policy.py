"""The policy a config names: its construction, the parameters a run starts from, and the
parameters of a checkpoint checked against it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from metarl.config import TrainConfig
from metarl.core.linalg import Params
from metarl.core.policies import GaussianMLPPolicy
from metarl.envs import make_task_vector_env
from metarl.run.checkpoint import check_params, load_checkpoint


def build_policy(config: TrainConfig, obs_dim: int, act_dim: int) -> GaussianMLPPolicy:
    return GaussianMLPPolicy(
        obs_dim, act_dim, config.hidden_sizes, config.activation, config.init_log_std
    )


def initial_params(config: TrainConfig) -> Params:
    """The parameters a run of ``config`` starts from (``MetaLearner`` seeds torch the same):
    the random-initialisation baseline, and the names and shapes a checkpoint must have."""
    env = make_task_vector_env(config.env_id, 1, config.physics,
                               action_space=config.action_space)
    torch.manual_seed(config.seed)
    return build_policy(config, env.obs_dim, env.act_dim).initial_params()


def load_params(path: Path, config: TrainConfig) -> tuple[Params, dict[str, Any]]:
    """A checkpoint's parameters, checked against ``config``'s policy (one-line error if they
    do not fit), and the whole payload."""
    payload = load_checkpoint(path)
    check_params(path, payload["params"], initial_params(config))
    return payload["params"], payload
