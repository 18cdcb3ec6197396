"""What every outer (meta) step provides: the optimiser state it keeps and one update of
theta along its learner's direction.

An outer step gets the learner (for its direction), the shared objective (query surrogate and
KL, for the steps that bound or measure them) and the run's torch generator (for random
subsamples). Its class attributes say whether it keeps Adam's state between iterations.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from metarl.config import TrainConfig
from metarl.core.adam import AdamState, adam_init
from metarl.core.linalg import Params
from metarl.core.maml import MetaBatch
from metarl.rl.learners.base import Learner
from metarl.rl.objective import MetaObjective
from metarl.rl.train_state import TrainState


class OuterStep:
    """An outer step; subclasses set ``name`` and implement ``update``."""

    name: ClassVar[str]
    keeps_adam_state: ClassVar[bool] = False

    def __init__(self, config: TrainConfig, objective: MetaObjective,
                 generator: torch.Generator) -> None:
        self.config = config
        self.objective = objective
        self.generator = generator

    def initial_optimiser_state(self, params: Params) -> AdamState | None:
        return adam_init(params) if self.keeps_adam_state else None

    def update(self, learner: Learner, state: TrainState, batch: MetaBatch
               ) -> tuple[TrainState, dict[str, float]]:
        """The state with new parameters (and optimiser state) and the step's metrics; the
        iteration and step counters are the caller's."""
        raise NotImplementedError
