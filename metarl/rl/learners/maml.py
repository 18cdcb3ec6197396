"""MAML (Finn et al. 2017, arXiv:1703.03400, Algorithm 3) and first-order MAML (its Sec. 5.2):
policy-gradient inner steps, and the query surrogate differentiated through them.

The meta-gradient unrolls the inner steps on every support step (``metarl.core.maml``), a few
tasks at a time (``meta_grad_chunk``); FOMAML drops the second-order terms. The estimator of
the inner loss (``estimator``: the original surrogate, LVC or DiCE) shapes those terms.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from metarl.config import TrainConfig
from metarl.core.adaptation import adapt_step
from metarl.core.episodes import StepBatch
from metarl.core.linalg import Params
from metarl.core.maml import MetaBatch, meta_gradient
from metarl.rl.learners.base import Learner


class Maml(Learner):
    name = "maml"
    outer_steps: ClassVar[tuple[str, ...]] = ("trpo", "adam", "sgd", "promp")
    takes_first_order = True
    follows_query_surrogate = True

    @classmethod
    def second_order(cls, config: TrainConfig) -> bool:
        return not config.first_order_meta_gradient

    def adapt_for_sampling(self, theta: Params, adapted: Params, support: StepBatch) -> Params:
        return adapt_step(self.objective.inner_loss, adapted, support, self.config.inner_lr)

    def direction(self, params: Params, batch: MetaBatch
                  ) -> tuple[Tensor, Params, dict[str, float]]:
        c, o = self.config, self.objective
        loss, grads = meta_gradient(
            o.inner_loss, o.outer_loss, params, batch.supports, batch.query, c.inner_lr,
            c.first_order_meta_gradient, mode="batched", chunk_size=c.meta_grad_chunk,
        )
        return loss, grads, {}


class FirstOrderMaml(Maml):
    """``learner: fomaml``, the same as ``learner: maml`` with ``first_order: true``."""

    name = "fomaml"
