"""The standard 4-block few-shot convolutional network as a pure function of a parameter dict.

Four blocks of [3x3 convolution with 64 filters, batch norm, ReLU, 2x2 max-pool] (Vinyals et al.
2016; Prototypical Networks, Snell et al. 2017, arXiv:1703.05175 Sec. 3.1), which maps a 28x28
Omniglot image to a 64-d feature (28 -> 14 -> 7 -> 3 -> 1). MAML on Omniglot (Finn et al. 2017,
arXiv:1703.03400 Sec. 5.2) used stride-2 convolutions instead of pooling (28 -> 14 -> 7 -> 4 ->
2) and averaged the last map over space: ``pool="stride"``, four times fewer multiply-adds.

Batch norm uses the statistics of the batch at hand, per task, with a learnable scale and shift
and no running statistics: the transductive setting of MAML's and Reptile's code. Every task is
normalised with its own support (or query) images only.

``ConvNet`` only owns the initial parameters; ``conv4(params, x)`` is the network. Shared
parameters take ``[B, C, H, W]`` images; per-task stacked parameters (leading dimension N, as
``metarl.core.adaptation.per_task`` makes) take ``[N, B, C, H, W]``. The per-task forward folds the
tasks into the channels and runs one grouped convolution (``groups=N``); batch norm over the
folded channels then gives exactly the per-task statistics. For MAML's meta-gradient
(5-way 1-shot, meta-batch 32, one inner step, 2-core CPU shared with another job, one thread)
grouped convolution was the fastest or tied: seconds per second-order meta-gradient with
max-pooling 0.97 (grouped) / 1.32 (vmap of the shared forward) / 1.65 (loop over tasks) /
1.07 (``meta_gradient(mode="vmap", chunk_size=8)``) / 1.08 (``mode="loop"``); with stride-2
convolutions 0.33 / 0.33 / 0.90 / 0.41 / 0.63 (measured with the grouped/vmap/loop per-task
modes, which ``per_task_mode`` still selects for comparison, and ``meta_gradient``'s own modes).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from metarl.core.linalg import Params

Pool = Literal["max", "stride"]
PerTaskMode = Literal["grouped", "vmap", "loop"]

BLOCKS = 4
BN_EPS = 1e-5


class ConvNet(nn.Module):
    """Initial parameters of the 4-block network: ``conv{i}.weight [filters, in, 3, 3]``,
    ``conv{i}.bias``, ``norm{i}.weight`` (scale, init 1), ``norm{i}.bias`` (shift, init 0) for
    i = 0..3 and, when ``ways`` is given, a linear head ``head.weight [ways, filters]``,
    ``head.bias``. Without a head the network gives the ``filters``-d embedding (ProtoNets).

    Convolutions and the head use PyTorch's default initialisation.
    """

    def __init__(self, ways: int | None = None, in_channels: int = 1, filters: int = 64,
                 pool: Pool = "max") -> None:
        super().__init__()
        if pool not in ("max", "stride"):
            raise ValueError(f"unknown pool {pool!r} (known: max, stride)")
        if ways is not None and ways < 1:
            raise ValueError(f"ways must be >= 1, got {ways}")
        if in_channels < 1 or filters < 1:
            raise ValueError(f"in_channels and filters must be >= 1, got {in_channels}, {filters}")
        self.pool: Pool = pool
        channels = [in_channels] + [filters] * BLOCKS
        for i in range(BLOCKS):
            self.add_module(f"conv{i}", nn.Conv2d(channels[i], filters, 3, padding=1))
            self.add_module(f"norm{i}", nn.BatchNorm2d(filters, track_running_stats=False))
        self.head = nn.Linear(filters, ways) if ways is not None else None

    def forward(self, x: Tensor) -> Tensor:
        return conv4(dict(self.named_parameters()), x, self.pool)

    def initial_params(self) -> Params:
        """A detached copy of the module's parameters: the meta-parameters theta."""
        return {name: p.detach().clone() for name, p in self.named_parameters()}


def conv4(params: Params, x: Tensor, pool: Pool = "max",
          per_task_mode: PerTaskMode = "grouped") -> Tensor:
    """The network with parameters ``params`` (names as in ``ConvNet``) at images ``x``.

    Shared parameters: ``x [B, C, H, W]`` -> ``[B, out]``, batch norm over the B images; or
    ``x [N, B, C, H, W]`` -> ``[N, B, out]``, batch norm per task (ProtoNets). Per-task
    parameters (every tensor with a leading N): ``x [N, B, C, H, W]`` -> ``[N, B, out]``.
    ``out`` is ``ways`` with a head, else the embedding size. ``per_task_mode`` picks grouped
    convolution (default, fastest measured), ``vmap`` of the shared forward, or a loop over
    tasks; all three agree.
    """
    if pool not in ("max", "stride"):
        raise ValueError(f"unknown pool {pool!r} (known: max, stride)")
    if params["conv0.weight"].dim() == 4:
        if x.dim() not in (4, 5):
            raise ValueError("shared parameters need images [B, C, H, W] or [N, B, C, H, W], "
                             f"got {tuple(x.shape)}")
        return _shared(params, x, pool)
    if x.dim() != 5 or x.shape[0] != params["conv0.weight"].shape[0]:
        raise ValueError(f"per-task parameters for {params['conv0.weight'].shape[0]} tasks need "
                         f"images [N, B, C, H, W] with the same N, got {tuple(x.shape)}")
    if per_task_mode == "grouped":
        return _grouped(params, x, pool)
    if per_task_mode == "vmap":
        return torch.func.vmap(lambda p, xi: _shared(p, xi, pool))(params, x)
    if per_task_mode == "loop":
        return torch.stack([_shared({k: v[i] for k, v in params.items()}, x[i], pool)
                            for i in range(x.shape[0])])
    raise ValueError(f"unknown per_task_mode {per_task_mode!r} (known: grouped, vmap, loop)")


def _block(x: Tensor, weight: Tensor, bias: Tensor, scale: Tensor, shift: Tensor, pool: Pool,
           groups: int = 1) -> Tensor:
    stride = 2 if pool == "stride" else 1
    h = F.conv2d(x, weight, bias, stride=stride, padding=1, groups=groups)
    # Batch statistics of this batch only (training=True without running buffers).
    h = F.batch_norm(h, None, None, scale, shift, training=True, eps=BN_EPS)
    h = F.relu(h)
    return F.max_pool2d(h, 2) if pool == "max" else h


def _features(h: Tensor, pool: Pool) -> Tensor:
    """The last map ``[B, C, h, w]`` -> ``[B, C]``: flattened after max-pooling (1x1 for
    28x28 inputs), averaged over space after stride-2 convolutions (as MAML's code does)."""
    return h.flatten(1) if pool == "max" else h.mean(dim=(-2, -1))


def _shared(params: Params, x: Tensor, pool: Pool) -> Tensor:
    """Shared parameters on ``[B, C, H, W]``, or on ``[N, B, C, H, W]`` with per-task batch
    statistics (one convolution over all N*B images, batch norm per task)."""
    lead = x.shape[:-3]
    h = x.reshape(-1, *x.shape[-3:])
    for i in range(BLOCKS):
        stride = 2 if pool == "stride" else 1
        h = F.conv2d(h, params[f"conv{i}.weight"], params[f"conv{i}.bias"], stride=stride,
                     padding=1)
        h = _task_norm(h, lead, params[f"norm{i}.weight"], params[f"norm{i}.bias"])
        h = F.relu(h)
        if pool == "max":
            h = F.max_pool2d(h, 2)
    h = _features(h, pool)
    if "head.weight" in params:
        h = F.linear(h, params["head.weight"], params["head.bias"])
    return h.reshape(*lead, h.shape[-1])


def _task_norm(h: Tensor, lead: tuple[int, ...] | torch.Size, scale: Tensor,
               shift: Tensor) -> Tensor:
    """Batch norm of ``h [prod(lead) * B, C, H, W]`` with the statistics of each task's B
    images when ``lead`` is ``(N, B)``, of the whole batch when it is ``(B,)``."""
    if len(lead) == 1:
        return F.batch_norm(h, None, None, scale, shift, training=True, eps=BN_EPS)
    per_task = h.reshape(lead[0], -1, *h.shape[1:])  # [N, B, C, H, W]
    var, mean = torch.var_mean(per_task, dim=(1, 3, 4), keepdim=True, correction=0)
    normed = (per_task - mean) * torch.rsqrt(var + BN_EPS)
    return (normed * scale[:, None, None] + shift[:, None, None]).reshape(h.shape)


def _grouped(params: Params, x: Tensor, pool: Pool) -> Tensor:
    """Tasks folded into channels: ``[N, B, C, H, W]`` -> ``[B, N*C, H, W]``, one grouped
    convolution per block; per-channel batch norm over ``(B, H, W)`` is then per task."""
    n, b = x.shape[:2]
    h = x.transpose(0, 1).reshape(b, n * x.shape[2], *x.shape[3:])
    for i in range(BLOCKS):
        weight = params[f"conv{i}.weight"]  # [N, out, in, 3, 3]
        h = _block(h, weight.reshape(-1, *weight.shape[2:]), params[f"conv{i}.bias"].reshape(-1),
                   params[f"norm{i}.weight"].reshape(-1), params[f"norm{i}.bias"].reshape(-1),
                   pool, groups=n)
    h = _features(h, pool).reshape(b, n, -1).transpose(0, 1)  # [N, B, filters]
    if "head.weight" in params:
        weight = params["head.weight"].transpose(1, 2)  # [N, filters, ways]
        h = torch.baddbmm(params["head.bias"].unsqueeze(1), h, weight)
    return h
