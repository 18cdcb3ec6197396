"""The gradient outer steps: one Adam step (the REINFORCE-style outer step of the MAML paper's
RL code, Finn et al. 2017, arXiv:1703.03400) or one plain SGD step of rate ``outer_lr`` (with
Reptile's direction, Reptile's own update ``theta + eps mean_i (phi_i - theta)``)."""

from __future__ import annotations

import torch

from metarl.core.adam import adam_step
from metarl.core.guards import check_finite
from metarl.core.linalg import Params
from metarl.core.maml import MetaBatch
from metarl.rl.learners.base import Learner
from metarl.rl.outer_steps.base import OuterStep
from metarl.rl.train_state import TrainState


class GradientStep(OuterStep):
    """Shared by Adam and SGD: follow the learner's direction, then measure the surrogate."""

    def step(self, state: TrainState, direction: Params) -> TrainState:
        raise NotImplementedError

    def update(self, learner: Learner, state: TrainState, batch: MetaBatch
               ) -> tuple[TrainState, dict[str, float]]:
        loss, direction, metrics = learner.direction(state.params, batch)
        check_finite("the meta-loss", loss)
        check_finite("the meta-gradient", direction)
        new = self.step(state, direction)
        metrics["outer/surrogate_before"] = loss.item()
        if learner.follows_query_surrogate:
            with torch.no_grad():
                loss_after, kl = self.objective.loss_and_kl(new.params, batch)
            metrics.update({"outer/surrogate_after": loss_after.item(), "outer/kl": kl.item()})
        return new, metrics


class AdamOuterStep(GradientStep):
    name = "adam"
    keeps_adam_state = True

    def step(self, state: TrainState, direction: Params) -> TrainState:
        assert state.adam is not None
        params, adam = adam_step(state.params, direction, state.adam, self.config.outer_lr)
        return state._replace(params=params, adam=adam)


class SgdOuterStep(GradientStep):
    name = "sgd"

    def step(self, state: TrainState, direction: Params) -> TrainState:
        lr = self.config.outer_lr
        return state._replace(params={k: state.params[k] - lr * direction[k] for k in direction})
