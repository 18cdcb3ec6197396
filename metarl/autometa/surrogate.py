"""The surrogate that ranks cells before they are trained: an ensemble of small MLPs on a
fixed-length cell encoding (PNAS, Liu et al. 2018, arXiv:1712.00559, Sec. 3.2 and 5.2).

Encoding (PNAS's MLP embeds each block and averages the block embeddings, so that a predictor
fitted on B-block cells says something about (B+1)-block ones): a block is the sum of the
one-hot codes of its two branches, a branch being one ``(input, operator)`` pair out of
``(2 + max_blocks - 1) * len(operators)``; the cell is the mean of its blocks' codes plus one
feature, ``blocks / max_blocks``.

Each member is a 2-hidden-layer ReLU MLP fitted full-batch with Adam to the standardised scores
from its own seeded initialisation (the ensemble's spread comes from the initialisations, as in
PNAS); the prediction is the members' mean. ``spearman`` is the rank correlation PNAS reports
for its predictors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from metarl.fewshot.cell_space import CELL_INPUTS, OPERATORS, Cell


def encoding_size(max_blocks: int, operators: Sequence[str] = OPERATORS) -> int:
    return (CELL_INPUTS + max_blocks - 1) * len(operators) + 1


def encode(cells: Sequence[Cell], max_blocks: int, operators: Sequence[str] = OPERATORS
           ) -> Tensor:
    """``[len(cells), encoding_size]`` float64 encodings (see the module docstring)."""
    width = len(operators)
    out = torch.zeros(len(cells), encoding_size(max_blocks, operators), dtype=torch.float64)
    for row, cell in enumerate(cells):
        if not 1 <= len(cell) <= max_blocks:
            raise ValueError(f"a cell of {len(cell)} blocks does not fit max_blocks={max_blocks}")
        for block in cell:
            for index, op in ((block.input1, block.op1), (block.input2, block.op2)):
                out[row, index * width + operators.index(op)] += 1.0 / len(cell)
        out[row, -1] = len(cell) / max_blocks
    return out


class MLPEnsemble:
    """``members`` MLPs ``features -> hidden -> hidden -> 1``; ``fit`` refits all from scratch."""

    def __init__(self, features: int, members: int = 5, hidden: int = 32, epochs: int = 500,
                 lr: float = 1e-2, weight_decay: float = 1e-4, seed: int = 0) -> None:
        if min(features, members, hidden, epochs) < 1 or not lr > 0 or weight_decay < 0:
            raise ValueError("features, members, hidden and epochs must be >= 1, lr > 0, "
                             f"weight_decay >= 0; got {features}, {members}, {hidden}, "
                             f"{epochs}, {lr}, {weight_decay}")
        self.features, self.members, self.hidden = features, members, hidden
        self.epochs, self.lr, self.weight_decay, self.seed = epochs, lr, weight_decay, seed
        self.nets: list[nn.Module] = []
        self.mean, self.std = 0.0, 1.0

    def _net(self, member: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1000 + member)
            return nn.Sequential(nn.Linear(self.features, self.hidden), nn.ReLU(),
                                 nn.Linear(self.hidden, self.hidden), nn.ReLU(),
                                 nn.Linear(self.hidden, 1)).double()

    def fit(self, x: Tensor, y: Tensor) -> MLPEnsemble:
        """Fit every member to ``y [n]`` at ``x [n, features]`` (n >= 2)."""
        if x.dim() != 2 or x.shape[1] != self.features or y.shape != (x.shape[0],):
            raise ValueError(f"need x [n, {self.features}] and y [n], got {tuple(x.shape)} and "
                             f"{tuple(y.shape)}")
        if x.shape[0] < 2:
            raise ValueError("the surrogate needs at least 2 scored cells")
        x, y = x.double(), y.double()
        self.mean, self.std = float(y.mean()), float(y.std()) or 1.0
        target = (y - self.mean) / self.std
        self.nets = []
        for member in range(self.members):
            net = self._net(member)
            optimizer = torch.optim.Adam(net.parameters(), lr=self.lr,
                                         weight_decay=self.weight_decay)
            for _ in range(self.epochs):
                optimizer.zero_grad()
                loss = (net(x).squeeze(-1) - target).pow(2).mean()
                loss.backward()
                optimizer.step()
            self.nets.append(net)
        return self

    def predict(self, x: Tensor) -> Tensor:
        """The members' mean prediction ``[n]`` in the scores' units."""
        if not self.nets:
            raise RuntimeError("the surrogate has not been fitted")
        with torch.no_grad():
            outputs = torch.stack([net(x.double()).squeeze(-1) for net in self.nets])
        return outputs.mean(0) * self.std + self.mean


def ranks(values: Tensor) -> Tensor:
    """1-based ranks with ties given their average rank (float64)."""
    values = values.double()
    order = values.argsort()
    out = torch.empty_like(values)
    sorted_values = values[order]
    start = 0
    n = len(values)
    while start < n:
        end = start
        while end + 1 < n and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        out[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return out


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman's rank correlation of two equal-length vectors (NaN if either is constant or
    shorter than 2)."""
    if a.shape != b.shape or a.dim() != 1:
        raise ValueError(f"need two vectors of one length, got {tuple(a.shape)}, {tuple(b.shape)}")
    if len(a) < 2:
        return float("nan")
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denominator if denominator > 0 else float("nan")
