"""The sinusoid regression task distribution (Finn et al. 2017, arXiv:1703.03400, Sec. 5.1).

A task is ``y = A sin(x - phase)`` with amplitude ``A ~ U[0.1, 5]`` and phase ``~ U[0, pi]``;
its inputs are ``x ~ U[-5, 5]``. A meta-batch of N tasks is sampled as whole tensors with a
leading task dimension, ready for ``metarl.core.adaptation.adapt`` and
``metarl.core.maml.meta_gradient``: support and query points are drawn independently from the
same task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor


class SinusoidBatch(NamedTuple):
    """N regression tasks with K support and M query points each."""

    support_x: Tensor  # [N, K, 1]
    support_y: Tensor  # [N, K, 1]
    query_x: Tensor  # [N, M, 1]
    query_y: Tensor  # [N, M, 1]
    amplitude: Tensor  # [N] the task parameters, for plotting and checks
    phase: Tensor  # [N]


def sinusoid(x: Tensor, amplitude: Tensor, phase: Tensor) -> Tensor:
    """``A sin(x - phase)`` for ``x`` of shape ``[N, ...]`` and per-task ``[N]`` parameters."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    return amplitude.reshape(shape) * torch.sin(x - phase.reshape(shape))


@dataclass(frozen=True)
class SinusoidTasks:
    """The task distribution; the defaults are the MAML paper's."""

    amplitude_range: tuple[float, float] = (0.1, 5.0)
    phase_range: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        for name in ("amplitude_range", "phase_range", "x_range"):
            low, high = getattr(self, name)
            if not low <= high:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {(low, high)}")
        if not self.dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point type, got {self.dtype}")

    def sample(
        self, n_tasks: int, shots: int, queries: int, generator: torch.Generator | None = None
    ) -> SinusoidBatch:
        """``n_tasks`` tasks, each with ``shots`` support and ``queries`` query points."""
        if n_tasks < 1:
            raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
        if shots < 1:
            raise ValueError(f"shots must be >= 1, got {shots}")
        if queries < 0:
            raise ValueError(f"queries must be >= 0, got {queries}")
        amplitude = self._uniform((n_tasks,), self.amplitude_range, generator)
        phase = self._uniform((n_tasks,), self.phase_range, generator)
        # One draw for support and query together, split afterwards: the two sets are
        # independent samples of the same task.
        x = self._uniform((n_tasks, shots + queries, 1), self.x_range, generator)
        y = sinusoid(x, amplitude, phase)
        return SinusoidBatch(
            support_x=x[:, :shots],
            support_y=y[:, :shots],
            query_x=x[:, shots:],
            query_y=y[:, shots:],
            amplitude=amplitude,
            phase=phase,
        )

    def _uniform(self, shape: tuple[int, ...], bounds: tuple[float, float],
                 generator: torch.Generator | None) -> Tensor:
        low, high = bounds
        return low + (high - low) * torch.rand(shape, generator=generator, dtype=self.dtype)
