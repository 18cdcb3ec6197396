"""The policy and the losses a run's learner and outer step share: the inner loss (the
config's meta-gradient estimator) with its Hessian-vector products, the query surrogate and the
adapted policies' KL."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from metarl.config import TrainConfig
from metarl.core.distributions import Policy
from metarl.core.estimators import InnerLoss, inner_loss_for
from metarl.core.gaussian_mlp_hessian import gaussian_mlp_reinforce_hessian
from metarl.core.inner_hessian import InnerHessianBuilder, autograd_inner_hessian
from metarl.core.linalg import Params
from metarl.core.maml import MetaBatch, QueryLoss, query_loss_and_kl, surrogate_loss
from metarl.core.policies import GaussianMLPPolicy

# the config's curvature_dtype: the dtype of the curvature's Hessian-vector products (None: the
# parameters' own)
CURVATURE_DTYPES: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16}


@dataclass
class MetaObjective:
    config: TrainConfig
    policy: Policy
    inner_loss: InnerLoss
    outer_loss: QueryLoss
    # the inner loss's gradient and Hessian-vector products, for TRPO's curvature
    inner_hessian: InnerHessianBuilder

    @classmethod
    def for_config(cls, config: TrainConfig, policy: Policy) -> MetaObjective:
        inner = inner_loss_for(policy, config.estimator, config.horizon)
        return cls(config, policy, inner, surrogate_loss(policy),
                   inner_hessian_for(config, policy, inner))

    def loss_and_kl(self, params: Params, batch: MetaBatch) -> tuple[Tensor, Tensor]:
        """The query surrogate of the policies adapted from ``params`` and their mean KL from
        the policies that sampled the query episodes (TRPO's objective and trust region)."""
        c = self.config
        return query_loss_and_kl(self.policy, self.inner_loss, params, batch, c.inner_lr,
                                 c.first_order_meta_gradient, c.meta_grad_chunk)


def inner_hessian_for(config: TrainConfig, policy: Policy, inner_loss: InnerLoss
                      ) -> InnerHessianBuilder:
    """The hand-written products where they apply (the original MAML-RL loss of a Gaussian MLP
    policy: the presets' case, and faster), in the config's ``curvature_dtype``; autograd's
    for every other estimator and policy, which take float32 only."""
    dtype = CURVATURE_DTYPES[config.curvature_dtype]
    if config.estimator == "maml" and isinstance(policy, GaussianMLPPolicy):
        return gaussian_mlp_reinforce_hessian(policy.activation, dtype)
    if dtype is not None:
        raise ValueError(
            f"curvature_dtype {config.curvature_dtype} needs a Gaussian policy (this "
            f"environment's actions are discrete): set curvature_dtype: float32"
        )
    return autograd_inner_hessian(inner_loss)
