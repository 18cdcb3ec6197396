"""The 4-block classifier's pieces for the gradient-based learners on Omniglot N-way K-shot
classification (MAML, FOMAML, Reptile, iMAML; Finn et al. 2017, arXiv:1703.03400, Sec. 5.2):
its seeded initial parameters, the per-task cross-entropy that the inner and outer loops
differentiate, and the per-task query accuracy. ``metarl.fewshot.problems`` builds the Omniglot
problem of `metarl train` from them; ``metarl.autometa.retrain`` counts the 4-block network's
parameters with ``initial_conv_params``.

The network is ``metarl.fewshot.conv``'s with a ``ways``-logit head. Batch norm is
transductive: each task's support images and its query images are normalised with their own
batch statistics (as MAML's code does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from metarl.core.linalg import Params
from metarl.fewshot.conv import ConvNet, PerTaskMode, Pool, conv4
from metarl.fewshot.omniglot import FewShotBatch

Field = Literal["support", "query"]


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

