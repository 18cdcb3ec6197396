"""The policy and the losses a run's learner and outer step share: the inner loss (the
config's meta-gradient estimator), the query surrogate and the adapted policies' KL."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from metarl.config import TrainConfig
from metarl.core.distributions import Policy
from metarl.core.estimators import InnerLoss, inner_loss_for
from metarl.core.linalg import Params
from metarl.core.maml import MetaBatch, QueryLoss, query_loss_and_kl, surrogate_loss


@dataclass
class MetaObjective:
    config: TrainConfig
    policy: Policy
    inner_loss: InnerLoss
    outer_loss: QueryLoss

    @classmethod
    def for_config(cls, config: TrainConfig, policy: Policy) -> MetaObjective:
        inner = inner_loss_for(policy, config.estimator, config.horizon)
        return cls(config, policy, inner, surrogate_loss(policy))

    def loss_and_kl(self, params: Params, batch: MetaBatch) -> tuple[Tensor, Tensor]:
        """The query surrogate of the policies adapted from ``params`` and their mean KL from
        the policies that sampled the query episodes (TRPO's objective and trust region)."""
        c = self.config
        return query_loss_and_kl(self.policy, self.inner_loss, params, batch, c.inner_lr,
                                 c.first_order_meta_gradient, c.meta_grad_chunk)
