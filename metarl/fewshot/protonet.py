"""Prototypical Networks' logits (Snell, Swersky & Zemel 2017, arXiv:1703.05175).

Each class's prototype is the mean embedding of its support examples (eq. 1); a query's logits
are minus its squared Euclidean distances to the prototypes (eq. 2, the Bregman form of Sec.
2.3), trained with cross-entropy (eq. 3; ``metarl.fewshot.learners``) and scored by their
argmax (``metarl.fewshot.evaluation``). Tasks are a tensor dimension: the embeddings of every
task come from one forward pass of the shared network (``metarl.fewshot.conv`` without a head),
prototypes from a one-hot matmul (labels are random per task, so examples are grouped by label,
never by position).

Omniglot protocol (Sec. 3.1), which the ``omniglot_*_protonet`` presets follow (the ``_cpu``
one trains 20-way): training episodes use more ways than the test (60-way for 5- and 20-way
tests) with 5 queries per class;
classes are (character, rotation) pairs, at training and at test, where the 423 test characters
with their 4 rotations make 1692 classes (as in MAML's evaluation and Vinyals et al.'s split).
Batch norm uses each episode's statistics over its support and query images together (the
paper's code normalised training episodes this way; it kept running statistics for test, which
this functional network does not have).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from metarl.core.linalg import Params
from metarl.fewshot.conv import Pool, conv4
from metarl.fewshot.omniglot import FewShotBatch


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

