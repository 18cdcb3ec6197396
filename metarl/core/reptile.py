"""Reptile (Nichol, Achiam & Schulman 2018, arXiv:1803.02999, Algorithm 2, batched version).

For every task of a meta-batch the meta-parameters theta are adapted by k inner steps of SGD or
Adam, giving phi_i, and the meta-parameters move toward the adapted ones:
``theta <- theta + eps * mean_i (phi_i - theta)``.

``reptile_direction`` returns ``mean_i (theta - phi_i)``, a "gradient" whose negative points
toward the adapted parameters: a plain gradient step of rate eps on it is exactly the Reptile
update above, and an outer optimiser such as Adam can consume it like any gradient (as the
paper's experiments do). No meta-gradient estimator is involved: nothing is differentiated
through the inner loop, which runs on detached parameters and keeps no graph, so its memory does
not grow with k. Nichol et al. (Sec. 5) show that with k >= 2 steps on different minibatches the
expected direction still contains the MAML-like "AvgGradInner" term that favours generalisation
within a task; ``tests/test_seed_analysis.py`` checks that expansion numerically.

Tasks are a tensor dimension: parameters are expanded to ``[N, ...]`` and the SGD steps are the
shared ``metarl.core.adaptation.adapt``; the Adam steps are
``metarl.core.adam.adam_step`` on the stacked parameters, which is one independent Adam per
task because Adam acts elementwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from metarl.core.adam import adam_init, adam_step
from metarl.core.adaptation import adapt, per_task, select_tasks, summed_over_tasks, task_count
from metarl.core.linalg import Params

InnerOptimizer = Literal["sgd", "adam"]


def reptile_direction(
    inner_loss: Callable[[Params, Any], Tensor],
    params: Params,
    supports: Sequence[Any],
    inner_lr: float,
    optimizer: InnerOptimizer = "sgd",
    adam_betas: tuple[float, float] = (0.0, 0.999),
    adam_eps: float = 1e-8,
    chunk_size: int | None = None,
) -> tuple[Tensor, Params]:
    """Mean support loss after adaptation and the Reptile direction ``mean_i (theta - phi_i)``.

    ``supports`` holds one dataset per inner step (k = ``len(supports)``), each a pytree whose
    tensors have a leading task dimension N, as in ``adapt``. ``inner_loss(params, data)``
    returns one loss per task. The inner loop is k steps of SGD with rate ``inner_lr`` or of
    Adam (a fresh state per call, so per task; the paper's experiments use beta1 = 0 in the inner
    loop, hence the default ``adam_betas``). The returned loss is the mean over tasks of
    ``inner_loss`` at the adapted parameters on the last support dataset, a detached scalar.
    ``chunk_size`` tasks adapt at a time (all if None or 0), which bounds the inner loop's
    memory; every task adapts on its own, so the answer is the same.
    """
    supports = list(supports)
    if not supports:
        raise ValueError("Reptile needs at least one inner step (supports is empty)")
    if inner_lr <= 0:
        raise ValueError(f"inner_lr must be positive, got {inner_lr}")
    if chunk_size is not None and chunk_size < 0:
        raise ValueError(f"chunk_size must be >= 0 or None, got {chunk_size}")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"unknown inner optimizer {optimizer!r} (known: sgd, adam)")
    n = task_count(supports[0])
    chunk = chunk_size or n
    theta = {k: v.detach() for k, v in params.items()}
    adapted_parts: list[Params] = []
    losses = []
    # No graph is needed: torch.func.grad still differentiates each step under no_grad.
    with torch.no_grad():
        for start in range(0, n, chunk):
            part = [select_tasks(data, slice(start, start + chunk)) for data in supports]
            begin = per_task(theta, task_count(part[0]))
            if optimizer == "sgd":
                adapted = adapt(inner_loss, begin, part, inner_lr)
            else:
                adapted = _adam_adapt(inner_loss, begin, part, inner_lr, adam_betas, adam_eps)
            adapted_parts.append(adapted)
            losses.append(inner_loss(adapted, part[-1]))
        loss = torch.cat(losses).mean()
        direction = {k: theta[k] - torch.cat([a[k] for a in adapted_parts]).mean(0)
                     for k in theta}
    return loss, direction


def _adam_adapt(
    inner_loss: Callable[[Params, Any], Tensor],
    params: Params,
    supports: list[Any],
    lr: float,
    betas: tuple[float, float],
    eps: float,
) -> Params:
    """k Adam steps on stacked per-task parameters, step s on ``supports[s]``."""
    state = adam_init(params)
    for data in supports:
        grads = torch.func.grad(summed_over_tasks(inner_loss, data))(params)
        params, state = adam_step(params, grads, state, lr, betas, eps)
    return params
