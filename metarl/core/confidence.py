"""Confidence intervals of means over tasks, as the papers report them."""

from __future__ import annotations

import math

import numpy as np
import torch


def ci95(values: torch.Tensor | np.ndarray) -> float:
    """Half-width of the normal 95% confidence interval of the mean: ``1.96 std / sqrt(n)``
    (sample standard deviation; 0 for a single value)."""
    array = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values,
                       dtype=np.float64).reshape(-1)
    if array.size < 2:
        return 0.0
    return float(1.96 * array.std(ddof=1) / math.sqrt(array.size))
