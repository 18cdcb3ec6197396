"""iMAML (Rajeswaran et al. 2019, arXiv:1909.04630) on policies: the inner problem is the
policy surrogate plus a proximal term ``prox_lambda / 2 |phi - theta|^2``, solved by
``inner_steps`` safeguarded gradient steps on one support rollout; the direction is the implicit
meta-gradient, by conjugate gradient per task (``metarl.core.imaml``). The surrogate's
likelihood ratio is floored (``metarl.core.policy_proximal``) so that the inner problem stays
bounded below; see docs/learners.md."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from metarl.core.episodes import StepBatch
from metarl.core.imaml import imaml_gradient, proximal_adapt
from metarl.core.linalg import Params
from metarl.core.maml import MetaBatch
from metarl.core.policy_proximal import anchored_batch, floored_surrogate_loss
from metarl.rl.learners.base import Learner


class Imaml(Learner):
    name = "imaml"
    outer_steps: ClassVar[tuple[str, ...]] = ("adam", "sgd")

    def support_rollouts(self) -> int:
        return 1  # every inner step reuses the one support rollout

    def adapt_for_sampling(self, theta: Params, adapted: Params, support: StepBatch) -> Params:
        c, policy = self.config, self.objective.policy
        return proximal_adapt(floored_surrogate_loss(policy), theta,
                              anchored_batch(policy, theta, support), c.prox_lambda,
                              c.inner_lr, c.inner_steps).adapted

    def adapt_at_test(self, adapted: Params, support: StepBatch, lr: float) -> Params:
        """A proximal solve anchored at the current policy, as in training."""
        c, policy = self.config, self.objective.policy
        return proximal_adapt(floored_surrogate_loss(policy), adapted,
                              anchored_batch(policy, adapted, support), c.prox_lambda, lr,
                              c.inner_steps, stacked=True).adapted

    def direction(self, params: Params, batch: MetaBatch
                  ) -> tuple[Tensor, Params, dict[str, float]]:
        c, o = self.config, self.objective
        return imaml_gradient(
            floored_surrogate_loss(o.policy), o.outer_loss, params,
            anchored_batch(o.policy, params, batch.supports[0]), batch.query,
            c.prox_lambda, c.inner_lr, c.inner_steps, c.imaml_cg_iters, c.prox_damping,
            chunk_size=c.meta_grad_chunk,
        )
