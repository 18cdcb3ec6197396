"""MAML and first-order MAML on Omniglot N-way K-shot classification (Finn et al. 2017,
arXiv:1703.03400, Sec. 5.2).

The 4-block network of ``metarl.fewshot.conv`` with a ``ways``-logit head, the one inner loop
``metarl.adaptation.adapt``, the meta-gradient ``metarl.maml.meta_gradient`` (``first_order``
gives FOMAML) and the pure Adam step ``metarl.outer.adam_step``: the same pieces as the
sinusoid learners (``metarl.fewshot.supervised``).

Paper settings, 5-way: inner lr 0.4, 1 inner step, meta-batch 32, 10 steps at test, stride-2
convolutions (``pool="stride"``); 20-way: inner lr 0.1, 5 steps, meta-batch 16. Classes are the
(character, rotation) pairs of the split, at training and at test (as MAML's code does). Batch
norm is transductive: each task's support images and its query images are normalised with their
own batch statistics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from metarl.adaptation import adapt, per_task
from metarl.confidence import ci95
from metarl.fewshot.conv import ConvNet, PerTaskMode, Pool, conv4
from metarl.fewshot.omniglot import FewShotBatch, OmniglotData, OmniglotTasks, Split
from metarl.guards import check_finite
from metarl.maml import GradientMode, meta_gradient
from metarl.outer import adam_init, adam_step

Params = dict[str, Tensor]
Field = Literal["support", "query"]
Callback = Callable[[int, dict[str, float]], None]


def initial_conv_params(ways: int | None, seed: int = 0, pool: Pool = "max",
                        filters: int = 64) -> Params:
    """The 4-block network's initial parameters (a ``ways``-logit head, or none for an
    embedding), seeded without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ConvNet(ways, 1, filters, pool).initial_params()


def cross_entropy_loss(
    field: Field = "support", pool: Pool = "max", per_task_mode: PerTaskMode = "grouped"
) -> Callable[[Params, FewShotBatch], Tensor]:
    """``loss_fn(params, batch)``: the mean cross-entropy of the network's logits on the
    batch's ``field`` examples, one value per task (``[N]`` for per-task parameters and images
    ``[N, B, ...]``; a scalar for one task's ``[B, ...]``), as ``adapt`` expects."""
    if field not in ("support", "query"):
        raise ValueError(f"unknown field {field!r} (known: support, query)")

    def loss(params: Params, batch: FewShotBatch) -> Tensor:
        x: Tensor = getattr(batch, f"{field}_x")
        y: Tensor = getattr(batch, f"{field}_y")
        logits = conv4(params, x, pool, per_task_mode)
        flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                               reduction="none")
        return flat.reshape(y.shape).mean(-1)

    return loss


def accuracy(params: Params, batch: FewShotBatch, pool: Pool = "max") -> Tensor:
    """Per-task query accuracy ``[N]`` of per-task parameters."""
    logits = conv4(params, batch.query_x, pool)
    return (logits.argmax(-1) == batch.query_y).float().mean(-1)


def train_omniglot_maml(
    data: OmniglotData,
    ways: int = 5,
    shots: int = 1,
    iterations: int = 60_000,
    meta_batch_size: int = 32,
    inner_lr: float = 0.4,
    inner_steps: int = 1,
    first_order: bool = False,
    outer_lr: float = 1e-3,
    seed: int = 0,
    queries: int = 1,
    pool: Pool = "stride",
    split: Split | Tensor = "train",
    mode: GradientMode = "batched",
    chunk_size: int | None = None,
    time_limit_s: float | None = None,
    params: Params | None = None,
    callback: Callback | None = None,
) -> Params:
    """Meta-train the classifier for ``iterations`` outer Adam steps (or until ``time_limit_s``
    seconds have passed, checked after every step) and return the meta-parameters.

    Every iteration draws ``meta_batch_size`` fresh ``ways``-way tasks from ``split`` (default
    MAML's 1100 training characters; ``"train+val"`` for all 1200), each with ``shots``
    support and ``queries`` query examples per class (MAML's code: ``queries = shots``), adapts
    by ``inner_steps`` SGD steps on the support set and takes the query cross-entropy of the
    adapted network. ``mode`` and ``chunk_size`` are ``meta_gradient``'s. After each iteration
    ``callback(iteration, metrics)`` gets ``outer/loss`` (mean query cross-entropy after
    adaptation) and ``time/iteration_s``.
    """
    for name, value in (("iterations", iterations), ("meta_batch_size", meta_batch_size),
                        ("inner_steps", inner_steps), ("queries", queries)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    for name, rate in (("inner_lr", inner_lr), ("outer_lr", outer_lr)):
        if not rate > 0:
            raise ValueError(f"{name} must be positive, got {rate}")
    sampler = OmniglotTasks(data, split, ways, shots, queries)
    generator = torch.Generator().manual_seed(seed)
    theta = initial_conv_params(ways, seed, pool) if params is None else params
    theta = {k: v.detach().clone() for k, v in theta.items()}
    support_loss = cross_entropy_loss("support", pool)
    query_loss = cross_entropy_loss("query", pool)
    state = adam_init(theta)
    start = time.perf_counter()
    for iteration in range(iterations):
        began = time.perf_counter()
        batch = sampler.sample(meta_batch_size, generator)
        loss, grads = meta_gradient(support_loss, query_loss, theta, [batch] * inner_steps, batch,
                                    inner_lr, first_order, mode, chunk_size)
        check_finite("outer/loss", loss)
        check_finite("meta-gradient", grads)
        theta, state = adam_step(theta, {k: g.detach() for k, g in grads.items()}, state,
                                 outer_lr)
        if callback is not None:
            callback(iteration, {"outer/loss": float(loss),
                                 "time/iteration_s": time.perf_counter() - began})
        if time_limit_s is not None and time.perf_counter() - start >= time_limit_s:
            break
    return theta


def evaluate_omniglot_maml(
    params: Params,
    data: OmniglotData,
    ways: int = 5,
    shots: int = 1,
    steps: int = 10,
    tasks: int = 600,
    inner_lr: float = 0.4,
    seed: int = 1000,
    queries: int = 15,
    pool: Pool = "stride",
    split: Split | Tensor = "test",
    chunk_size: int = 20,
) -> dict[str, float]:
    """Fine-tune ``params`` on ``tasks`` ``ways``-way ``shots``-shot tasks of ``split`` (the
    423 meta-test characters, rotations as classes) and report the query accuracy after each
    of 0..``steps`` SGD steps of rate ``inner_lr`` on the support set.

    ``queries`` query examples per class only score the task (more of them estimate the same
    accuracy with less noise); tasks are processed ``chunk_size`` at a time. Keys, for
    s = 0..steps: ``query/accuracy_{s}`` (mean over tasks) and ``query/accuracy_{s}_ci95``
    (1.96 std / sqrt(tasks)); ``accuracy`` and ``ci95`` repeat the last step's.
    """
    if tasks < 2:
        raise ValueError(f"tasks must be >= 2 for a confidence interval, got {tasks}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    sampler = OmniglotTasks(data, split, ways, shots, queries)
    generator = torch.Generator().manual_seed(seed)
    support_loss = cross_entropy_loss("support", pool)
    theta = {k: v.detach() for k, v in params.items()}
    per_step: list[list[Tensor]] = [[] for _ in range(steps + 1)]
    with torch.no_grad():  # torch.func.grad inside adapt still differentiates
        for start in range(0, tasks, chunk_size):
            batch = sampler.sample(min(chunk_size, tasks - start), generator)
            adapted = per_task(theta, batch.support_y.shape[0])
            for step in range(steps + 1):
                if step > 0:
                    adapted = adapt(support_loss, adapted, [batch], inner_lr)
                per_step[step].append(accuracy(adapted, batch, pool))
    metrics: dict[str, float] = {}
    for step, parts in enumerate(per_step):
        acc = torch.cat(parts)
        metrics[f"query/accuracy_{step}"] = float(acc.mean())
        metrics[f"query/accuracy_{step}_ci95"] = ci95(acc)
    metrics["accuracy"] = metrics[f"query/accuracy_{steps}"]
    metrics["ci95"] = metrics[f"query/accuracy_{steps}_ci95"]
    return metrics
