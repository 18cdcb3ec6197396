"""What every RL meta-learner provides, and the defaults most of them share.

A learner is two things (Finn et al. 2017, arXiv:1703.03400, Algorithm 3, and its variants):

* how it **samples**: the sampling-time adaptation that turns theta into the per-task policies
  that sample the next support step and the query episodes (``support_rollouts``,
  ``adapt_for_sampling``), and how those episodes make its meta-batch (``meta_batch``);
* the **direction** it gives the outer step (``direction``): MAML's meta-gradient through the
  adaptation, iMAML's implicit gradient, Reptile's ``mean_i (theta - phi_i)``, or the plain
  policy gradient of the pretrained baseline.

Its class attributes declare which outer steps and estimators it combines with; the registry
(``metarl.rl.learners``) checks a config against them. Adding a learner is one module with a
subclass and one line in the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from torch import Tensor

from metarl.config import TrainConfig
from metarl.core.adaptation import adapt_step
from metarl.core.episodes import Episodes, StepBatch, mean_return, success_rate
from metarl.core.estimators import reinforce_loss
from metarl.core.linalg import Params
from metarl.core.maml import MetaBatch, QueryBatch
from metarl.rl.objective import MetaObjective

QueryBatchFn = Callable[[Params, Episodes], QueryBatch]


class Learner:
    """A meta-learner; subclasses set ``name`` and ``outer_steps`` and override what differs."""

    name: ClassVar[str]
    outer_steps: ClassVar[tuple[str, ...]]  # the outer steps it works with
    takes_first_order: ClassVar[bool] = False  # whether the config's first_order applies
    adapts: ClassVar[bool] = True  # False: every rollout samples with theta
    # whether its direction is the query surrogate's gradient, so that the surrogate and the
    # adapted policies' KL after an outer step are worth logging
    follows_query_surrogate: ClassVar[bool] = False

    def __init__(self, config: TrainConfig, objective: MetaObjective) -> None:
        self.config = config
        self.objective = objective

    @classmethod
    def second_order(cls, config: TrainConfig) -> bool:
        """Whether its direction differentiates the inner loss twice, which is where an
        estimator other than "maml" (LVC, DiCE) makes a difference."""
        return False

    def support_rollouts(self) -> int:
        """Support rollouts per meta-iteration: one before each inner step by default."""
        return self.config.inner_steps

    def adapt_for_sampling(self, theta: Params, adapted: Params, support: StepBatch) -> Params:
        """The per-task parameters after one more inner step on ``support`` (sampled with
        ``adapted``): they sample the next support step or the query episodes."""
        raise NotImplementedError

    def adapt_at_test(self, adapted: Params, support: StepBatch, lr: float) -> Params:
        """One test-time adaptation step of the per-task parameters on ``support`` (sampled
        with them), of rate ``lr``: a vanilla policy-gradient step (Finn et al. 2017, Sec. 5.3:
        the MAML paper's evaluation protocol, for MAML and its baselines alike)."""
        step = adapt_step(reinforce_loss(self.objective.policy), adapted, support, lr)
        return {k: v.detach() for k, v in step.items()}

    def meta_batch(self, supports: list[Episodes], support_batches: list[StepBatch],
                   query: Episodes, adapted: Params, query_batch: QueryBatchFn
                   ) -> tuple[MetaBatch, dict[str, float]]:
        """One iteration's meta-batch and its sampling metrics: the supports with their
        advantages as the adaptation used them, and the query episodes with the outputs of
        the per-task policies (``adapted``) that sampled them."""
        batch = MetaBatch(support_batches, query_batch(adapted, query))
        steps = sum(e.num_steps for e in supports) + query.num_steps
        return batch, {**return_metrics(supports[0], query),
                       "env/steps_per_iteration": float(steps)}

    def direction(self, params: Params, batch: MetaBatch
                  ) -> tuple[Tensor, Params, dict[str, float]]:
        """The loss it reports, the direction the outer step follows (a gradient to descend),
        and its solver's metrics."""
        raise NotImplementedError


def return_metrics(support: Episodes, query: Episodes) -> dict[str, float]:
    """Mean returns of the first support step and of the query episodes, and their success
    rates where the environment reports success (Meta-World)."""
    metrics = {"support/return": mean_return(support), "query/return": mean_return(query)}
    rates = {"support/success_rate": success_rate(support),
             "query/success_rate": success_rate(query)}
    metrics.update({key: rate for key, rate in rates.items() if rate is not None})
    return metrics
