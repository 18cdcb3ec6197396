"""TRPO as MAML's outer step (Finn et al. 2017, arXiv:1703.03400, Sec. 5.3; Schulman et al.
2015, arXiv:1502.05477): the meta-gradient, the exact curvature of the adapted policies' KL
through the adaptation on a random subsample (``fvp_task_fraction`` of the tasks, each with all
its support data, and ``fvp_fraction`` of their query steps), and a line search on the query
surrogate within ``max_kl``. With ``trpo_pre_update_kl`` the pre-update policy's KL on the
support states joins the curvature and the line search's check (docs/learners.md explains why).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from metarl.core.guards import check_finite
from metarl.core.linalg import Params, flatten
from metarl.core.maml import (
    MetaBatch,
    curvature_subsample,
    fisher_vector_product,
    pre_update_fisher_product,
    random_subset,
)
from metarl.core.promp import pre_update_kl
from metarl.core.trpo import trpo_step
from metarl.rl.learners.base import Learner
from metarl.rl.outer_steps.base import OuterStep
from metarl.rl.train_state import TrainState

FisherProduct = Callable[[Tensor], Tensor]
LossAndKl = Callable[[Params], tuple[Tensor, Tensor]]


class TrpoOuterStep(OuterStep):
    name = "trpo"

    def update(self, learner: Learner, state: TrainState, batch: MetaBatch
               ) -> tuple[TrainState, dict[str, float]]:
        c, o = self.config, self.objective
        loss, grads, metrics = learner.direction(state.params, batch)
        check_finite("the meta-loss", loss)
        check_finite("the meta-gradient", grads)

        def loss_and_kl(params: Params) -> tuple[Tensor, Tensor]:
            return o.loss_and_kl(params, batch)

        curvature_batch = curvature_subsample(batch, c.fvp_fraction, self.generator,
                                              c.fvp_task_fraction)
        fisher = fisher_vector_product(
            o.policy, o.inner_loss, state.params, curvature_batch, c.inner_lr,
            c.first_order_meta_gradient, c.cg_damping, o.inner_hessian,
        )
        trust_region: LossAndKl = loss_and_kl
        if c.trpo_pre_update_kl and batch.supports:  # the pretrained baseline has none
            fisher, trust_region = self._with_pre_update_kl(state.params, batch,
                                                            curvature_batch, fisher)
        result = trpo_step(
            state.params, flatten(grads), loss.item(), fisher, trust_region,
            c.max_kl, c.cg_iters, c.ls_backtrack, c.ls_max_steps,
        )
        post_update_kl = result.kl
        if trust_region is not loss_and_kl:  # result.kl includes the pre-update term
            with torch.no_grad():
                post_update_kl = loss_and_kl(result.params)[1].item()
        metrics.update({
            "outer/surrogate_before": result.loss_before,
            "outer/surrogate_after": result.loss_after,
            "outer/kl": post_update_kl,
            "outer/trust_region_kl": result.kl,
            "outer/ls_steps": float(result.line_search_steps),
            "outer/accepted": float(result.accepted),
            "outer/cg_residual": result.cg_residual,
        })
        return state._replace(params=result.params), metrics

    def _with_pre_update_kl(self, params: Params, batch: MetaBatch, curvature_batch: MetaBatch,
                            post_update: FisherProduct) -> tuple[FisherProduct, LossAndKl]:
        """TRPO's curvature and trust-region measure with the pre-update policy's KL on the
        first support batch's states added to the adapted policies' KL: its curvature on the
        curvature batch's tasks and a ``fvp_fraction`` of their steps, the line search's check
        on all of them."""
        c, o = self.config, self.objective
        support = batch.supports[0]
        with torch.no_grad():
            old = o.policy.distribution_params(params, support.observations)
        curvature_support = curvature_batch.supports[0]
        index = random_subset(curvature_support.mask.shape[-1], c.fvp_fraction, self.generator,
                              curvature_support.mask.device)
        pre_update = pre_update_fisher_product(o.policy, params,
                                               curvature_support.subsample(index))

        def fisher(vector: Tensor) -> Tensor:
            return post_update(vector) + pre_update(vector)

        def loss_and_total_kl(candidate: Params) -> tuple[Tensor, Tensor]:
            loss, kl = o.loss_and_kl(candidate, batch)
            return loss, kl + pre_update_kl(o.policy, candidate, support, old)

        return fisher, loss_and_total_kl
