"""The pretrained baseline of the MAML paper (Finn et al. 2017, arXiv:1703.03400, Sec. 5.3):
one policy trained on tasks of the distribution with no adaptation, then fine-tuned at test.

It samples as many episodes per iteration as MAML (every support step and the query), all with
theta, pools them per task as one query batch and follows the plain policy gradient of the
surrogate (the meta-gradient with no inner step)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from metarl.core.episodes import Episodes, StepBatch, concat_episodes
from metarl.core.guards import check_finite
from metarl.core.linalg import Params
from metarl.core.maml import MetaBatch, meta_gradient
from metarl.rl.learners.base import Learner, QueryBatchFn, return_metrics


class Pretrained(Learner):
    name = "pretrained"
    outer_steps: ClassVar[tuple[str, ...]] = ("trpo", "adam", "sgd")
    adapts = False
    follows_query_surrogate = True

    def meta_batch(self, supports: list[Episodes], support_batches: list[StepBatch],
                   query: Episodes, adapted: Params, query_batch: QueryBatchFn
                   ) -> tuple[MetaBatch, dict[str, float]]:
        episodes = concat_episodes([*supports, query], dim=2)
        check_finite("the pretraining observations", episodes.observations)
        check_finite("the pretraining rewards", episodes.rewards)
        metrics = {**return_metrics(episodes, episodes),
                   "env/steps_per_iteration": float(episodes.num_steps)}
        return MetaBatch([], query_batch(adapted, episodes)), metrics

    def direction(self, params: Params, batch: MetaBatch
                  ) -> tuple[Tensor, Params, dict[str, float]]:
        c, o = self.config, self.objective
        loss, grads = meta_gradient(o.inner_loss, o.outer_loss, params, [], batch.query,
                                    c.inner_lr, False, mode="batched",
                                    chunk_size=c.meta_grad_chunk)
        return loss, grads, {}
