"""What an RL meta-training run carries from one iteration to the next."""

from __future__ import annotations

from typing import NamedTuple

import torch

from metarl.core.adam import AdamState
from metarl.core.linalg import Params, params_to


class TrainState(NamedTuple):
    params: Params
    adam: AdamState | None  # the optimiser state of the outer steps that keep one (adam, promp)
    iteration: int
    env_steps: int
    best_return: float
    kl_coef: float = 0.0  # the "promp" outer step's current KL penalty weight
    skipped: int = 0  # batches skipped for non-finite values (skip_nonfinite)

    def to(self, device: torch.device) -> TrainState:
        """The state with its parameters and optimiser moments on ``device`` (a checkpoint's
        are on the CPU, a run's where its config's ``device`` says)."""
        adam = self.adam
        if adam is not None:
            adam = adam._replace(first_moment=params_to(adam.first_moment, device),
                                 second_moment=params_to(adam.second_moment, device))
        return self._replace(params=params_to(self.params, device), adam=adam)
