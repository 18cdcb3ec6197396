"""A functional MLP for few-shot regression and its per-task mean-squared-error losses.

As with the policies (``metarl.core.policies``), the ``nn.Module`` only owns the initial parameters;
every evaluation is the pure function ``mlp(params, x)`` of a parameter dict. The same code
serves shared parameters (``weight [out, in]``, inputs ``[..., in]``) and per-task stacked
parameters (``weight [N, out, in]``, inputs ``[N, K, in]``: one batched matmul over tasks).
The MAML paper's sinusoid network is 1-40-40-1 with ReLU (Finn et al. 2017, arXiv:1703.03400,
Sec. 5.1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from metarl.core.linalg import Params

Activation = Literal["relu", "tanh"]
Field = Literal["support", "query"]

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": torch.relu, "tanh": torch.tanh}


class RegressionData(Protocol):
    """Anything with support and query inputs and targets, e.g. ``SinusoidBatch``."""

    @property
    def support_x(self) -> Tensor: ...
    @property
    def support_y(self) -> Tensor: ...
    @property
    def query_x(self) -> Tensor: ...
    @property
    def query_y(self) -> Tensor: ...


class MLP(nn.Module):
    """``in_dim -> hidden_sizes -> out_dim`` with ``activation`` between layers, PyTorch's
    default ``nn.Linear`` initialisation."""

    def __init__(
        self,
        in_dim: int = 1,
        out_dim: int = 1,
        hidden_sizes: Sequence[int] = (40, 40),
        activation: Activation = "relu",
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r} (known: relu, tanh)")
        sizes = [in_dim, *hidden_sizes, out_dim]
        if any(s < 1 for s in sizes):
            raise ValueError(f"layer sizes must be positive, got {sizes}")
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.activation: Activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return mlp(dict(self.named_parameters()), x, self.activation)

    def initial_params(self) -> Params:
        """A detached copy of the module's parameters: the meta-parameters theta."""
        return {name: p.detach().clone() for name, p in self.named_parameters()}


def mlp(params: Params, x: Tensor, activation: Activation = "relu") -> Tensor:
    """The MLP with parameters ``params`` (names as in ``MLP.named_parameters()``) at ``x``.

    Shared weights ``[out, in]`` take inputs ``[..., in]``; stacked per-task weights
    ``[N, out, in]`` take inputs ``[N, K, in]`` and give ``[N, K, out]``.
    """
    act = _ACTIVATIONS[activation]
    num_layers = len(params) // 2
    h = x
    for i in range(num_layers):
        h = _affine(h, params[f"layers.{i}.weight"], params[f"layers.{i}.bias"])
        if i < num_layers - 1:
            h = act(h)
    return h


def _affine(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``x W^T + b``, the bias add fused into the (batched) matrix product."""
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    if x.dim() != 3:
        raise ValueError(f"per-task weights {tuple(weight.shape)} need inputs [N, K, in], "
                         f"got {tuple(x.shape)}")
    return torch.baddbmm(bias.unsqueeze(-2), x, weight.transpose(-1, -2))


def mse_loss(
    field: Field = "support", activation: Activation = "relu"
) -> Callable[[Params, RegressionData], Tensor]:
    """``loss_fn(params, data)``: the mean squared error of the MLP on ``data``'s ``field``
    points, one value per task (``[N]`` for data ``[N, K, 1]``, a scalar for one task
    ``[K, 1]``), as ``metarl.core.adaptation.adapt`` expects."""
    if field not in ("support", "query"):
        raise ValueError(f"unknown field {field!r} (known: support, query)")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r} (known: relu, tanh)")

    def loss(params: Params, data: RegressionData) -> Tensor:
        x: Tensor = getattr(data, f"{field}_x")
        y: Tensor = getattr(data, f"{field}_y")
        return (mlp(params, x, activation) - y).pow(2).mean(dim=(-2, -1))

    return loss
