"""Supervised meta-training and evaluation on the sinusoid tasks (Finn et al. 2017,
arXiv:1703.03400, Sec. 5.1).

Every learner reuses the shared pieces, so comparisons differ only in the meta-update:
``metarl.maml.meta_gradient`` (MAML, and FOMAML with ``first_order``),
``metarl.reptile.reptile_direction``, ``metarl.imaml.imaml_gradient``, the one inner loop
``metarl.adaptation.adapt`` and the pure Adam step ``metarl.outer.adam_step``. The
``"pretrained"`` learner is the paper's baseline: the same network regressed on the mixture of
all tasks (no inner loop while training), then fine-tuned at test time like the others.

Data per learner, one meta-batch of ``meta_batch_size`` fresh tasks per iteration:

* MAML / FOMAML: ``inner_steps`` steps on the same K support points (as in the paper), the
  meta-loss on the task's query points.
* iMAML: the proximal inner problem on the K support points, the meta-loss on the query points.
* Reptile: ``inner_steps`` steps, each on its own K fresh points of the task (Nichol et al. 2018,
  arXiv:1803.02999: different minibatches keep the "AvgGradInner" term; with one step Reptile is
  joint training).
* pretrained: the MSE on all support and query points of every task, shared parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Literal, get_args

import torch
from torch import Tensor

from metarl.adaptation import adapt, per_task
from metarl.confidence import ci95
from metarl.fewshot.models import MLP, Activation, mlp, mse_loss
from metarl.fewshot.sinusoid import SinusoidBatch, SinusoidTasks
from metarl.guards import check_finite
from metarl.imaml import imaml_gradient
from metarl.maml import meta_gradient
from metarl.outer import adam_init, adam_step
from metarl.reptile import reptile_direction

Params = dict[str, Tensor]
Learner = Literal["maml", "fomaml", "reptile", "imaml", "pretrained"]
LEARNERS: tuple[str, ...] = get_args(Learner)
Callback = Callable[[int, dict[str, float]], None]


def initial_params(seed: int = 0, hidden_sizes: Sequence[int] = (40, 40),
                   activation: Activation = "relu") -> Params:
    """The 1-in 1-out MLP's initial parameters, seeded without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP(1, 1, hidden_sizes, activation).initial_params()


def train_sinusoid(
    learner: Learner,
    iterations: int,
    meta_batch_size: int = 25,
    shots: int = 10,
    inner_lr: float = 0.01,
    inner_steps: int = 1,
    outer_lr: float = 1e-3,
    seed: int = 0,
    queries: int | None = None,
    hidden_sizes: Sequence[int] = (40, 40),
    activation: Activation = "relu",
    prox_lambda: float = 2.0,
    cg_iters: int = 5,
    cg_damping: float = 0.0,
    chunk_size: int | None = None,
    distribution: SinusoidTasks | None = None,
    params: Params | None = None,
    callback: Callback | None = None,
) -> Params:
    """Meta-train the MLP for ``iterations`` outer Adam steps and return the meta-parameters.

    ``queries`` query points per task (default: ``shots``, as in the paper). ``prox_lambda``,
    ``cg_iters`` and ``cg_damping`` are iMAML's; ``chunk_size`` bounds MAML's graph memory.
    Training starts from ``params`` if given, else from ``initial_params(seed)``; tasks come
    from a generator seeded with ``seed``. After every iteration ``callback(iteration, metrics)``
    is called if given, with ``outer/loss`` (the learner's training loss: the query MSE after
    adaptation for MAML, FOMAML and iMAML, the support MSE after adaptation for Reptile, the
    mixture MSE for pretrained) and, for iMAML, its solver metrics.
    """
    if learner not in LEARNERS:
        raise ValueError(f"unknown learner {learner!r} (known: {', '.join(LEARNERS)})")
    for name, value in (("iterations", iterations), ("meta_batch_size", meta_batch_size),
                        ("shots", shots), ("inner_steps", inner_steps)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    for name, rate in (("inner_lr", inner_lr), ("outer_lr", outer_lr)):
        if not rate > 0:
            raise ValueError(f"{name} must be positive, got {rate}")
    queries = shots if queries is None else queries
    if queries < 1:
        raise ValueError(f"queries must be >= 1, got {queries}")
    if learner == "reptile" and inner_steps == 1:
        warnings.warn("Reptile with inner_steps=1 is joint training on the task mixture "
                      "(Nichol et al. 2018, Sec. 5); use inner_steps >= 2", stacklevel=2)
    distribution = distribution or SinusoidTasks()
    generator = torch.Generator().manual_seed(seed)
    theta = initial_params(seed, hidden_sizes, activation) if params is None else params
    theta = {k: v.detach().clone() for k, v in theta.items()}
    support_loss = mse_loss("support", activation)
    query_loss = mse_loss("query", activation)
    mixture = mixture_loss(activation)
    state = adam_init(theta)
    for iteration in range(iterations):
        info: dict[str, float] = {}
        if learner in ("maml", "fomaml"):
            batch = distribution.sample(meta_batch_size, shots, queries, generator)
            loss, grads = meta_gradient(support_loss, query_loss, theta, [batch] * inner_steps,
                                        batch, inner_lr, first_order=learner == "fomaml",
                                        chunk_size=chunk_size)
        elif learner == "imaml":
            batch = distribution.sample(meta_batch_size, shots, queries, generator)
            loss, grads, info = imaml_gradient(support_loss, query_loss, theta, batch, batch,
                                               prox_lambda, inner_lr, inner_steps, cg_iters,
                                               cg_damping)
        elif learner == "reptile":
            batch = distribution.sample(meta_batch_size, shots * inner_steps, 0, generator)
            loss, grads = reptile_direction(support_loss, theta, _split_support(batch, shots),
                                            inner_lr)
        else:
            batch = distribution.sample(meta_batch_size, shots, queries, generator)
            grads, loss = torch.func.grad_and_value(mixture)(theta, batch)
        check_finite("outer/loss", loss)
        check_finite("meta-gradient", grads)
        theta, state = adam_step(theta, {k: g.detach() for k, g in grads.items()}, state,
                                 outer_lr)
        if callback is not None:
            callback(iteration, {"outer/loss": float(loss), **info})
    return theta


def _split_support(batch: SinusoidBatch, shots: int) -> list[SinusoidBatch]:
    """The support points cut into consecutive sets of ``shots``, one per inner step."""
    xs = torch.split(batch.support_x, shots, dim=1)
    ys = torch.split(batch.support_y, shots, dim=1)
    return [batch._replace(support_x=x, support_y=y) for x, y in zip(xs, ys)]


def mixture_loss(activation: Activation = "relu"
                 ) -> Callable[[Params, SinusoidBatch], Tensor]:
    """The mean squared error of shared parameters on every point of every task."""

    def loss(params: Params, batch: SinusoidBatch) -> Tensor:
        x = torch.cat([batch.support_x, batch.query_x], dim=1)
        y = torch.cat([batch.support_y, batch.query_y], dim=1)
        return (mlp(params, x, activation) - y).pow(2).mean()

    return loss


def evaluate_sinusoid(
    params: Params,
    tasks: int = 600,
    shots: int = 10,
    steps: int = 10,
    inner_lr: float = 0.01,
    seed: int = 1000,
    queries: int = 100,
    activation: Activation = "relu",
    distribution: SinusoidTasks | None = None,
) -> dict[str, float]:
    """Fine-tune ``params`` on ``tasks`` fresh tasks and report the query MSE after each step.

    Every task adapts by ``steps`` SGD steps of rate ``inner_lr`` through ``adapt``, each on the
    same ``shots`` support points (as in the paper's evaluation), and is scored on ``queries``
    independent points of the same task (more query points than the paper's K estimate the same
    expected MSE with less noise). Tasks come from a generator seeded with ``seed``, kept apart
    from the training seeds.

    Keys, for s = 0..steps: ``query/mse_{s}`` (mean over tasks of the query MSE after s steps)
    and ``query/mse_{s}_ci95`` (1.96 std / sqrt(tasks), the half-width of its 95 % interval).
    """
    if tasks < 2:
        raise ValueError(f"tasks must be >= 2 for a confidence interval, got {tasks}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not inner_lr > 0:
        raise ValueError(f"inner_lr must be positive, got {inner_lr}")
    distribution = distribution or SinusoidTasks()
    batch = distribution.sample(tasks, shots, queries, torch.Generator().manual_seed(seed))
    support_loss = mse_loss("support", activation)
    query_loss = mse_loss("query", activation)
    adapted = per_task({k: v.detach() for k, v in params.items()}, tasks)
    metrics: dict[str, float] = {}
    with torch.no_grad():  # torch.func.grad inside adapt still differentiates
        for step in range(steps + 1):
            if step > 0:
                adapted = adapt(support_loss, adapted, [batch], inner_lr)
            mse = query_loss(adapted, batch)
            metrics[f"query/mse_{step}"] = float(mse.mean())
            metrics[f"query/mse_{step}_ci95"] = ci95(mse)
    return metrics
