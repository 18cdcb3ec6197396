"""ProMP as the outer step (Rothfuss et al. 2018, arXiv:1810.06784): ``promp_steps`` Adam steps
on the clipped surrogate through the adaptation with an adaptive KL penalty on the pre-update
policy (``metarl.core.promp``). It differentiates through the adaptation itself, so it takes
no learner direction; only MAML's unrolled inner step offers that."""

from __future__ import annotations

import torch

from metarl.core.maml import MetaBatch
from metarl.core.promp import promp_step
from metarl.rl.learners.base import Learner
from metarl.rl.outer_steps.base import OuterStep
from metarl.rl.train_state import TrainState


class PrompOuterStep(OuterStep):
    name = "promp"
    keeps_adam_state = True

    def update(self, learner: Learner, state: TrainState, batch: MetaBatch
               ) -> tuple[TrainState, dict[str, float]]:
        c, o = self.config, self.objective
        assert state.adam is not None
        result = promp_step(
            o.policy, o.inner_loss, state.params, state.adam, batch, c.inner_lr,
            c.outer_lr, c.promp_steps, c.clip_eps, state.kl_coef, c.inner_kl_target,
            c.first_order_meta_gradient, c.meta_grad_chunk,
        )
        with torch.no_grad():
            loss_after, kl = o.loss_and_kl(result.params, batch)
        metrics = {
            "outer/surrogate_before": result.loss_before,
            "outer/surrogate_after": loss_after.item(),
            "outer/kl": kl.item(),
            "outer/pre_update_kl": result.pre_update_kl,
            "outer/kl_coef": state.kl_coef,
        }
        return state._replace(params=result.params, adam=result.adam,
                              kl_coef=result.kl_coef), metrics
