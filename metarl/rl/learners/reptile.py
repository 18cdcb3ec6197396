"""Reptile (Nichol, Achiam & Schulman 2018, arXiv:1803.02999) on policies: ``inner_steps``
policy-gradient steps per task, each on a fresh support rollout, and the direction
``mean_i (theta - phi_i)`` (``metarl.core.reptile``); an SGD outer step of rate eps on it is
Reptile's update. No query surrogate: it has no KL to bound, hence no TRPO or ProMP."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from metarl.core.adaptation import adapt_step
from metarl.core.episodes import StepBatch
from metarl.core.linalg import Params
from metarl.core.maml import MetaBatch
from metarl.core.reptile import reptile_direction
from metarl.rl.learners.base import Learner


class Reptile(Learner):
    name = "reptile"
    outer_steps: ClassVar[tuple[str, ...]] = ("adam", "sgd")

    def adapt_for_sampling(self, theta: Params, adapted: Params, support: StepBatch) -> Params:
        return adapt_step(self.objective.inner_loss, adapted, support, self.config.inner_lr)

    def direction(self, params: Params, batch: MetaBatch
                  ) -> tuple[Tensor, Params, dict[str, float]]:
        loss, direction = reptile_direction(self.objective.inner_loss, params, batch.supports,
                                            self.config.inner_lr,
                                            chunk_size=self.config.meta_grad_chunk)
        return loss, direction, {}
