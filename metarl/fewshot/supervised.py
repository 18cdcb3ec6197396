"""The sinusoid network's pieces that the supervised learners share (Finn et al. 2017,
arXiv:1703.03400, Sec. 5.1): its seeded initial parameters and the ``pretrained`` baseline's
loss.

The paper's baseline is the same network regressed on the mixture of all tasks (no inner loop
while training), then fine-tuned at test time like the meta-learners; ``mixture_loss`` is its
training objective. ``metarl.fewshot.problems`` and ``metarl.fewshot.learners`` use both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from metarl.core.linalg import Params
from metarl.fewshot.models import MLP, Activation, mlp
from metarl.fewshot.sinusoid import SinusoidBatch


def initial_params(seed: int = 0, hidden_sizes: Sequence[int] = (40, 40),
                   activation: Activation = "relu") -> Params:
    """The 1-in 1-out MLP's initial parameters, seeded without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP(1, 1, hidden_sizes, activation).initial_params()


def mixture_loss(activation: Activation = "relu"
                 ) -> Callable[[Params, SinusoidBatch], Tensor]:
    """The mean squared error of shared parameters on every point of every task."""

    def loss(params: Params, batch: SinusoidBatch) -> Tensor:
        x = torch.cat([batch.support_x, batch.query_x], dim=1)
        y = torch.cat([batch.support_y, batch.query_y], dim=1)
        return (mlp(params, x, activation) - y).pow(2).mean()

    return loss
