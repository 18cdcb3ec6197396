"""A classifier built by stacking one searched cell, as a pure function of a parameter dict.

Layout for 28x28 one-channel images (after Auto-Meta, Kim et al. 2018, arXiv:1806.06927, Sec. 3,
which stacks PNAS cells, Liu et al. 2018, arXiv:1712.00559, Fig. 2, scaled down for a CPU):

    stem: 3x3 convolution (1 -> F) with stride 2, batch norm, ReLU         14 x 14
    stage 0: ``cells_per_stage`` cells                                     14 x 14
    stage s >= 1: 2x2 max-pool of both cell inputs (the reduction), cells  7, 3, ...
    ReLU, mean over space, linear head (F -> ways)

Every cell has the same structure (``metarl.fewshot.cell_space``) and its own weights; it reads the
outputs of the two cells before it (the stem's output stands in for missing ones). All maps
keep F channels, so cells need no projections. Operators: ``sepK`` is ReLU, a KxK depthwise
convolution, a 1x1 pointwise convolution and batch norm (PNAS applies this twice; once keeps the
CPU cost down); ``max3`` / ``avg3`` are 3x3 pools with stride 1 (the average counts only real
pixels); ``id`` passes its input on. Parameter-free operators make parameter-free cells.

Batch norm is transductive with no running statistics, as in ``metarl.fewshot.conv``: every task
is normalised with its own batch. ``cell_network(params, x, ...)`` takes shared parameters with
images ``[B, 1, 28, 28]``, or per-task stacked parameters (leading N, as
``metarl.core.adaptation.per_task`` makes) with images ``[N, B, 1, 28, 28]`` (``torch.func.vmap`` of
the shared forward).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

from metarl.core.linalg import Params
from metarl.fewshot.cell_space import CELL_INPUTS, Cell, unused_blocks

BN_EPS = 1e-5
SEPARABLE = {"sep3": 3, "sep5": 5}


class Layout(NamedTuple):
    """How many cells the network stacks and how wide they are."""

    filters: int = 16
    stages: int = 3
    cells_per_stage: int = 1


DEFAULT_LAYOUT = Layout()


def _uniform(shape: tuple[int, ...], fan_in: int, generator: torch.Generator) -> Tensor:
    # PyTorch's default convolution / linear initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


def initial_params(cell: Cell, ways: int, layout: Layout = DEFAULT_LAYOUT, seed: int = 0
                   ) -> Params:
    """Initial parameters of the network for ``cell``: ``stem.weight [F, 1, 3, 3]``,
    ``stem.norm.weight`` / ``.bias``, per separable branch ``cell{c}.block{b}.branch{k}.``
    ``depthwise [F, 1, K, K]``, ``pointwise [F, F, 1, 1]``, ``norm.weight``, ``norm.bias``
    (k = 1, 2), and ``head.weight [ways, F]``, ``head.bias``. Seeded by ``seed`` alone."""
    if ways < 1 or layout.filters < 1 or layout.stages < 1 or layout.cells_per_stage < 1:
        raise ValueError(f"ways and every layout size must be >= 1, got ways={ways}, {layout}")
    g = torch.Generator().manual_seed(seed)
    f = layout.filters
    params: Params = {
        "stem.weight": _uniform((f, 1, 3, 3), 9, g),
        "stem.norm.weight": torch.ones(f),
        "stem.norm.bias": torch.zeros(f),
    }
    for c in range(layout.stages * layout.cells_per_stage):
        for b, block in enumerate(cell):
            for k, op in ((1, block.op1), (2, block.op2)):
                if op in SEPARABLE:
                    size = SEPARABLE[op]
                    name = f"cell{c}.block{b}.branch{k}"
                    params[f"{name}.depthwise"] = _uniform((f, 1, size, size), size * size, g)
                    params[f"{name}.pointwise"] = _uniform((f, f, 1, 1), f, g)
                    params[f"{name}.norm.weight"] = torch.ones(f)
                    params[f"{name}.norm.bias"] = torch.zeros(f)
    params["head.weight"] = _uniform((ways, f), f, g)
    params["head.bias"] = _uniform((ways,), f, g)
    return params


def parameter_count(params: Params) -> int:
    """Number of scalars in one copy of the parameters."""
    return sum(v.numel() for v in params.values())


def _norm(h: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """Batch norm with the statistics of this batch (over images and pixels), no buffers."""
    var, mean = torch.var_mean(h, dim=(0, 2, 3), keepdim=True, correction=0)
    return (h - mean) * torch.rsqrt(var + BN_EPS) * scale[:, None, None] + shift[:, None, None]


def _branch(params: Params, name: str, op: str, h: Tensor) -> Tensor:
    if op in SEPARABLE:
        size = SEPARABLE[op]
        h = F.conv2d(F.relu(h), params[f"{name}.depthwise"], padding=size // 2, groups=h.shape[1])
        h = F.conv2d(h, params[f"{name}.pointwise"])
        return _norm(h, params[f"{name}.norm.weight"], params[f"{name}.norm.bias"])
    if op == "max3":
        return F.max_pool2d(h, 3, stride=1, padding=1)
    if op == "avg3":
        return F.avg_pool2d(h, 3, stride=1, padding=1, count_include_pad=False)
    if op == "id":
        return h
    raise ValueError(f"unknown operator {op!r}")


def apply_cell(params: Params, prefix: str, cell: Cell, inputs: tuple[Tensor, Tensor]) -> Tensor:
    """One cell on its two inputs ``(older, previous)``: each block adds its two branches; the
    output is the sum of the blocks no later block reads."""
    states = list(inputs)
    for b, block in enumerate(cell):
        name = f"{prefix}.block{b}"
        states.append(_branch(params, f"{name}.branch1", block.op1, states[block.input1])
                      + _branch(params, f"{name}.branch2", block.op2, states[block.input2]))
    outputs = [states[CELL_INPUTS + b] for b in unused_blocks(cell)]
    return torch.stack(outputs).sum(0) if len(outputs) > 1 else outputs[0]


def _shared(params: Params, x: Tensor, cell: Cell, layout: Layout) -> Tensor:
    h = F.conv2d(x, params["stem.weight"], stride=2, padding=1)
    h = F.relu(_norm(h, params["stem.norm.weight"], params["stem.norm.bias"]))
    older, previous = h, h
    c = 0
    for stage in range(layout.stages):
        if stage > 0:  # the reduction: both cell inputs halve their resolution
            older, previous = F.max_pool2d(older, 2), F.max_pool2d(previous, 2)
        for _ in range(layout.cells_per_stage):
            older, previous = previous, apply_cell(params, f"cell{c}", cell, (older, previous))
            c += 1
    features = F.relu(previous).mean(dim=(-2, -1))
    return F.linear(features, params["head.weight"], params["head.bias"])


def cell_network(params: Params, x: Tensor, cell: Cell, layout: Layout = DEFAULT_LAYOUT
                 ) -> Tensor:
    """Logits of the network for ``cell`` (shared parameters: ``x [B, C, H, W]`` -> ``[B,
    ways]``; per-task parameters with a leading N: ``x [N, B, C, H, W]`` -> ``[N, B, ways]``)."""
    if params["stem.weight"].dim() == 4:
        if x.dim() != 4:
            raise ValueError(f"shared parameters need images [B, C, H, W], got {tuple(x.shape)}")
        return _shared(params, x, cell, layout)
    if x.dim() != 5 or x.shape[0] != params["stem.weight"].shape[0]:
        raise ValueError(f"per-task parameters for {params['stem.weight'].shape[0]} tasks need "
                         f"images [N, B, C, H, W] with the same N, got {tuple(x.shape)}")
    result: Tensor = torch.func.vmap(lambda p, xi: _shared(p, xi, cell, layout))(params, x)
    return result
