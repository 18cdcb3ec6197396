"""What an RL meta-training run carries from one iteration to the next."""

from __future__ import annotations

from typing import NamedTuple

from metarl.core.adam import AdamState
from metarl.core.linalg import Params


class TrainState(NamedTuple):
    params: Params
    adam: AdamState | None  # the optimiser state of the outer steps that keep one (adam, promp)
    iteration: int
    env_steps: int
    best_return: float
    kl_coef: float = 0.0  # the "promp" outer step's current KL penalty weight
    skipped: int = 0  # batches skipped for non-finite values (skip_nonfinite)
