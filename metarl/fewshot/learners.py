"""One training iteration of every supervised learner, through the shared meta-learning pieces.

The learners differ only in the direction they give the outer step, all computed for the whole
meta-batch at once (tasks are a tensor dimension):

* ``maml`` / ``fomaml``: ``metarl.core.maml.meta_gradient`` through ``inner_steps`` SGD steps on the
  support set, the query loss of the adapted parameters (Finn et al. 2017, arXiv:1703.03400).
* ``imaml``: ``metarl.core.imaml.imaml_gradient``, the implicit gradient of the proximal inner
  problem (Rajeswaran et al. 2019, arXiv:1909.04630).
* ``reptile``: ``metarl.core.reptile.reptile_direction``, ``mean_i (theta - phi_i)`` after
  ``inner_steps`` steps, each on its own ``train_shots`` examples per class (Nichol et al.
  2018, arXiv:1803.02999: different inner batches keep the term that favours generalisation
  within a task).
* ``protonet``: the gradient of the query cross-entropy of nearest-prototype logits (Snell et
  al. 2017, arXiv:1703.05175).
* ``pretrained``: the gradient of the MSE of one shared network on every point of every task
  (the MAML paper's baseline).
* ``scratch``: nothing is trained.

The outer step is Adam or plain SGD (``metarl.core.adam.adam_step``) at the scheduled rate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor
from torch.nn import functional as F

from metarl.core.adam import AdamState, adam_init, adam_step
from metarl.core.guards import check_finite
from metarl.core.imaml import imaml_gradient
from metarl.core.linalg import Params
from metarl.core.maml import meta_gradient
from metarl.core.reptile import InnerOptimizer, reptile_direction
from metarl.fewshot.config import FewShotConfig
from metarl.fewshot.conv import Pool
from metarl.fewshot.problems import Problem
from metarl.fewshot.protonet import protonet_logits
from metarl.fewshot.supervised import mixture_loss

REPTILE_ADAM_BETAS = (0.0, 0.999)  # Nichol et al.'s inner Adam: no first-moment averaging


class FewShotState(NamedTuple):
    """Everything a run carries from one iteration to the next, besides the task generator."""

    params: Params
    adam: AdamState | None  # the "adam" outer step's optimiser state
    iteration: int


def initial_state(config: FewShotConfig, params: Params) -> FewShotState:
    adam = adam_init(params) if config.outer == "adam" else None
    return FewShotState({k: v.detach().clone() for k, v in params.items()}, adam, 0)


def outer_lr_at(config: FewShotConfig, iteration: int) -> float:
    """The outer learning rate of the step that makes iteration ``iteration + 1`` (0-based)."""
    if config.outer_lr_schedule == "linear":  # Reptile: eps decays linearly to 0
        return config.outer_lr * (1 - iteration / config.iterations)
    if config.outer_lr_schedule == "halving":  # ProtoNets: halved every 2000 episodes
        return config.outer_lr * 0.5 ** (iteration // config.lr_halving_every)
    return config.outer_lr


def reptile_supports(batch: Any, steps: int, shots: int) -> list[Any]:
    """The support set of ``steps * shots`` examples per class cut into ``steps`` sets of
    ``shots`` per class, one per inner step (every set holds every class).

    Sinusoid batches have one "class": consecutive points. Omniglot support examples come in a
    random order, so they are first grouped by label (a stable sort keeps that order random
    within a class).
    """
    x, y = batch.support_x, batch.support_y
    if y.dtype.is_floating_point:  # regression: [N, steps * shots, 1]
        return [batch._replace(support_x=xs, support_y=ys)
                for xs, ys in zip(torch.split(x, shots, 1), torch.split(y, shots, 1))]
    n, total = y.shape
    order = y.argsort(dim=1, stable=True)  # [N, ways * steps * shots], grouped by label
    ways = total // (steps * shots)
    grouped = order.reshape(n, ways, steps, shots)
    out = []
    for s in range(steps):
        index = grouped[:, :, s].reshape(n, ways * shots)
        pick = index.reshape(n, -1, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
        out.append(batch._replace(support_x=x.gather(1, pick), support_y=y.gather(1, index)))
    return out


Direction = Callable[[FewShotConfig, Problem, Params, Any], tuple[Tensor, Params,
                                                               dict[str, float]]]


def _maml_direction(c: FewShotConfig, problem: Problem, params: Params, batch: Any
                    ) -> tuple[Tensor, Params, dict[str, float]]:
    loss, grads = meta_gradient(problem.support_loss, problem.query_loss, params,
                                [batch] * c.inner_steps, batch, c.inner_lr,
                                first_order=c.learner == "fomaml",
                                chunk_size=c.meta_grad_chunk or None)
    return loss.detach(), grads, {}


def _imaml_direction(c: FewShotConfig, problem: Problem, params: Params, batch: Any
                     ) -> tuple[Tensor, Params, dict[str, float]]:
    return imaml_gradient(problem.support_loss, problem.query_loss, params, batch, batch,
                          c.prox_lambda, c.inner_lr, c.inner_steps, c.cg_iters, c.cg_damping)


def _reptile_direction(c: FewShotConfig, problem: Problem, params: Params, batch: Any
                       ) -> tuple[Tensor, Params, dict[str, float]]:
    supports = reptile_supports(batch, c.inner_steps, c.training_shots)
    loss, direction = reptile_direction(problem.support_loss, params, supports, c.inner_lr,
                                        cast(InnerOptimizer, c.inner_optimizer),
                                        REPTILE_ADAM_BETAS)
    return loss, direction, {}


def _protonet_direction(c: FewShotConfig, problem: Problem, params: Params, batch: Any
                        ) -> tuple[Tensor, Params, dict[str, float]]:
    ways, pool = c.training_ways, cast(Pool, c.pool)

    def objective(p: Params) -> tuple[Tensor, Tensor]:
        logits = protonet_logits(p, batch, ways, pool)
        loss = F.cross_entropy(logits.reshape(-1, ways), batch.query_y.reshape(-1))
        return loss, (logits.argmax(-1) == batch.query_y).float().mean()

    grads, (loss, acc) = torch.func.grad_and_value(objective, has_aux=True)(params)
    return loss.detach(), grads, {"train/accuracy": float(acc)}


def _pretrained_direction(c: FewShotConfig, problem: Problem, params: Params, batch: Any
                          ) -> tuple[Tensor, Params, dict[str, float]]:
    grads, loss = torch.func.grad_and_value(mixture_loss())(params, batch)
    return loss.detach(), grads, {}


# The learners that train, by name ("scratch" trains nothing): each gives the outer step its
# direction on a meta-batch.
DIRECTIONS: dict[str, Direction] = {
    "maml": _maml_direction,
    "fomaml": _maml_direction,
    "imaml": _imaml_direction,
    "reptile": _reptile_direction,
    "protonet": _protonet_direction,
    "pretrained": _pretrained_direction,
}


def learner_direction(config: FewShotConfig, problem: Problem, params: Params, batch: Any
                      ) -> tuple[Tensor, Params, dict[str, float]]:
    """The learner's training loss on ``batch``, the direction for the outer step (a
    gradient to descend) and extra metrics; all detached."""
    if config.learner not in DIRECTIONS:
        raise ValueError(f"learner {config.learner!r} has no training step")
    return DIRECTIONS[config.learner](config, problem, params, batch)


def training_step(config: FewShotConfig, problem: Problem, state: FewShotState,
                  generator: torch.Generator) -> tuple[FewShotState, dict[str, float]]:
    """One iteration: fresh training tasks from ``generator``, the learner's direction, the
    outer step. A NaN or inf raises ``NonFiniteError`` before the step is applied."""
    batch = problem.sample("train", config.meta_batch_size, generator)
    loss, direction, metrics = learner_direction(config, problem, state.params, batch)
    check_finite("the training loss", loss)
    check_finite("the meta-gradient", direction)
    rate = outer_lr_at(config, state.iteration)
    direction = {k: g.detach() for k, g in direction.items()}
    if config.outer == "adam":
        assert state.adam is not None
        params, adam = adam_step(state.params, direction, state.adam, rate)
    else:  # sgd: with Reptile's direction, theta + rate * mean_i (phi_i - theta)
        params, adam = {k: state.params[k] - rate * direction[k] for k in direction}, None
    check_finite("the updated parameters", params)
    metrics = {"train/loss": float(loss), **metrics, "outer/lr": rate}
    return FewShotState(params, adam, state.iteration + 1), metrics

