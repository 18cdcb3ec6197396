"""The policy a config names: its construction, the parameters a run starts from, and the
parameters of a checkpoint checked against it.

The policy follows the environment's action space: a categorical MLP policy for a ``Discrete``
one (the bandits and tabular MDPs), a Gaussian MLP policy otherwise. Its kind
(``policy_kind``: the name of its distribution) is recorded in every checkpoint and checked when
one is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium
import torch

from metarl.config import TrainConfig
from metarl.core.categorical import CategoricalMLPPolicy
from metarl.core.linalg import Params
from metarl.core.policies import GaussianMLPPolicy
from metarl.envs import TaskVectorEnv, make_task_vector_env
from metarl.run.checkpoint import check_params, load_checkpoint

PolicyModule = GaussianMLPPolicy | CategoricalMLPPolicy
# what a checkpoint written before the kind was recorded holds: every policy was Gaussian then
LEGACY_POLICY_KIND = "gaussian"


def discrete_actions(env: TaskVectorEnv) -> int | None:
    """The number of actions of ``env``'s ``Discrete`` action space; None for a Box."""
    space = env.single_action_space
    return int(space.n) if isinstance(space, gymnasium.spaces.Discrete) else None


def build_policy(config: TrainConfig, env: TaskVectorEnv) -> PolicyModule:
    """The config's policy for ``env``: categorical for discrete actions, else Gaussian."""
    actions = discrete_actions(env)
    if actions is not None:
        return CategoricalMLPPolicy(env.obs_dim, actions, config.hidden_sizes, config.activation)
    return GaussianMLPPolicy(
        env.obs_dim, env.act_dim, config.hidden_sizes, config.activation, config.init_log_std
    )


def policy_kind(policy: PolicyModule) -> str:
    """What a checkpoint records of the policy: its distribution's name."""
    return policy.distribution.name


def _probe(config: TrainConfig) -> TaskVectorEnv:
    return make_task_vector_env(config.env_id, 1, config.physics,
                                action_space=config.action_space)


def config_policy(config: TrainConfig) -> PolicyModule:
    """The policy a run of ``config`` starts with (``MetaLearner`` seeds torch the same)."""
    env = _probe(config)
    torch.manual_seed(config.seed)
    policy = build_policy(config, env)
    env.close()
    return policy


def initial_params(config: TrainConfig) -> Params:
    """The parameters a run of ``config`` starts from: the random-initialisation baseline, and
    the names and shapes a checkpoint must have."""
    return config_policy(config).initial_params()


def check_policy_kind(path: Path, payload: dict[str, Any], expected: str) -> None:
    """A one-line error unless the checkpoint at ``path`` holds a policy of kind ``expected``."""
    saved = payload.get("policy", LEGACY_POLICY_KIND)
    if saved != expected:
        raise ValueError(f"{path} holds a {saved} policy, but the config's environment needs a "
                         f"{expected} one")


def load_params(path: Path, config: TrainConfig) -> tuple[Params, dict[str, Any]]:
    """A checkpoint's parameters, checked against ``config``'s policy (one-line error if they
    do not fit), and the whole payload."""
    payload = load_checkpoint(path)
    policy = config_policy(config)
    check_policy_kind(path, payload, policy_kind(policy))
    check_params(path, payload["params"], policy.initial_params())
    return payload["params"], payload
