"""Prototypical Networks (Snell, Swersky & Zemel 2017, arXiv:1703.05175).

Each class's prototype is the mean embedding of its support examples (eq. 1); a query's logits
are minus its squared Euclidean distances to the prototypes (eq. 2, the Bregman form of Sec.
2.3), trained with cross-entropy (eq. 3). Tasks are a tensor dimension: the embeddings of every
task come from one forward pass of the shared network (``metarl.fewshot.conv`` without a head),
prototypes from a one-hot matmul (labels are random per task, so examples are grouped by label,
never by position).

Omniglot protocol (Sec. 3.1): training episodes use more ways than the test (60-way for 5- and
20-way tests) with 5 queries per class; classes are (character, rotation) pairs, at training and
at test, where the 423 test characters with their 4 rotations make 1692 classes (as in MAML's
evaluation and Vinyals et al.'s split). Batch norm uses each episode's statistics over its
support and query images together (the paper's code normalised training episodes this way; it
kept running statistics for test, which this functional network does not have).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from metarl.confidence import ci95
from metarl.fewshot.conv import Pool, conv4
from metarl.fewshot.omniglot import FewShotBatch, OmniglotData, OmniglotTasks, Split
from metarl.fewshot.omniglot_training import initial_conv_params
from metarl.guards import check_finite
from metarl.outer import adam_init, adam_step

Params = dict[str, Tensor]
Callback = Callable[[int, dict[str, float]], None]


def prototypes(embeddings: Tensor, labels: Tensor, ways: int) -> Tensor:
    """Class means ``[..., ways, D]`` of ``embeddings [..., S, D]`` grouped by ``labels [..., S]``
    (int64 in 0..ways-1); a class without support examples gets a zero prototype."""
    one_hot = F.one_hot(labels, ways).to(embeddings.dtype)  # [..., S, ways]
    counts = one_hot.sum(-2).clamp(min=1.0).unsqueeze(-1)  # [..., ways, 1]
    return one_hot.transpose(-1, -2) @ embeddings / counts


def prototype_logits(support: Tensor, support_y: Tensor, query: Tensor, ways: int) -> Tensor:
    """``-||query - prototype_c||^2`` ``[..., Q, ways]`` for support embeddings ``[..., S, D]``
    with labels ``[..., S]`` and query embeddings ``[..., Q, D]``."""
    centres = prototypes(support, support_y, ways)
    # ||q||^2 - 2 q.c + ||c||^2: one matmul instead of a [Q, ways, D] difference tensor.
    cross = query @ centres.transpose(-1, -2)
    return -(query.pow(2).sum(-1, keepdim=True) - 2 * cross
             + centres.pow(2).sum(-1).unsqueeze(-2))


def protonet_logits(params: Params, batch: FewShotBatch, ways: int, pool: Pool = "max"
                    ) -> Tensor:
    """Query logits ``[N, Q, ways]``: support and query images of each task embedded together
    (one batch-norm batch per task) by the headless network with shared ``params``."""
    n, s = batch.support_x.shape[:2]
    images = torch.cat([batch.support_x, batch.query_x], dim=1)  # [N, S + Q, C, H, W]
    embedded = conv4(params, images, pool)
    return prototype_logits(embedded[:, :s], batch.support_y, embedded[:, s:], ways)


def protonet_loss(params: Params, batch: FewShotBatch, ways: int, pool: Pool = "max"
                  ) -> Tensor:
    """Mean query cross-entropy per task ``[N]``."""
    logits = protonet_logits(params, batch, ways, pool)
    flat = F.cross_entropy(logits.reshape(-1, ways), batch.query_y.reshape(-1), reduction="none")
    return flat.reshape(batch.query_y.shape).mean(-1)


def train_protonet(
    data: OmniglotData,
    ways: int = 5,
    shots: int = 1,
    queries: int = 5,
    iterations: int = 20_000,
    tasks_per_batch: int = 1,
    lr: float = 1e-3,
    seed: int = 0,
    train_ways: int | None = None,
    pool: Pool = "max",
    split: Split | Tensor = "train+val",
    lr_halving_every: int = 2000,
    time_limit_s: float | None = None,
    params: Params | None = None,
    callback: Callback | None = None,
) -> Params:
    """Train the embedding for ``iterations`` Adam steps (or until ``time_limit_s`` seconds)
    and return its parameters.

    Each step draws ``tasks_per_batch`` episodes of ``train_ways`` (default ``ways``) classes
    of ``split`` (default the 1200 meta-training characters) with ``shots`` support and
    ``queries`` query examples per class, and descends the mean query cross-entropy. The
    learning rate halves every ``lr_halving_every`` steps (the paper: every 2000 episodes).
    ``callback(iteration, metrics)`` gets ``outer/loss``, ``outer/accuracy`` and ``outer/lr``.
    """
    train_ways = ways if train_ways is None else train_ways
    for name, value in (("iterations", iterations), ("tasks_per_batch", tasks_per_batch),
                        ("queries", queries), ("lr_halving_every", lr_halving_every)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    sampler = OmniglotTasks(data, split, train_ways, shots, queries)
    generator = torch.Generator().manual_seed(seed)
    theta = initial_conv_params(None, seed, pool) if params is None else params
    theta = {k: v.detach().clone() for k, v in theta.items()}
    state = adam_init(theta)

    def objective(p: Params, batch: FewShotBatch) -> tuple[Tensor, Tensor]:
        logits = protonet_logits(p, batch, train_ways, pool)
        loss = F.cross_entropy(logits.reshape(-1, train_ways), batch.query_y.reshape(-1))
        return loss, (logits.argmax(-1) == batch.query_y).float().mean()

    value_and_grad = torch.func.grad_and_value(objective, has_aux=True)
    start = time.perf_counter()
    for iteration in range(iterations):
        batch = sampler.sample(tasks_per_batch, generator)
        grads, (loss, acc) = value_and_grad(theta, batch)
        check_finite("outer/loss", loss)
        rate = lr * 0.5 ** (iteration // lr_halving_every)
        theta, state = adam_step(theta, grads, state, rate)
        if callback is not None:
            callback(iteration, {"outer/loss": float(loss), "outer/accuracy": float(acc),
                                 "outer/lr": rate})
        if time_limit_s is not None and time.perf_counter() - start >= time_limit_s:
            break
    return theta


def evaluate_protonet(
    params: Params,
    data: OmniglotData,
    ways: int = 5,
    shots: int = 1,
    tasks: int = 600,
    seed: int = 1000,
    queries: int = 15,
    pool: Pool = "max",
    split: Split | Tensor = "test",
    chunk_size: int = 20,
) -> dict[str, float]:
    """Nearest-prototype accuracy on ``tasks`` ``ways``-way ``shots``-shot tasks of ``split``
    (the 423 meta-test characters, rotations as classes), ``queries`` queries per class.

    Keys: ``accuracy`` (mean over tasks) and ``ci95`` (1.96 std / sqrt(tasks)).
    """
    if tasks < 2:
        raise ValueError(f"tasks must be >= 2 for a confidence interval, got {tasks}")
    sampler = OmniglotTasks(data, split, ways, shots, queries)
    generator = torch.Generator().manual_seed(seed)
    parts = []
    with torch.no_grad():
        for start in range(0, tasks, chunk_size):
            batch = sampler.sample(min(chunk_size, tasks - start), generator)
            logits = protonet_logits(params, batch, ways, pool)
            parts.append((logits.argmax(-1) == batch.query_y).float().mean(-1))
    acc = torch.cat(parts)
    return {"accuracy": float(acc.mean()), "ci95": ci95(acc)}
