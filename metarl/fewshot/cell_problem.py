"""Omniglot few-shot classification with a searched cell network, behind the few-shot suite's
``Problem`` interface (``metarl.fewshot.problems``).

The shared learners (``metarl.fewshot.learners.training_step``) and the shared evaluation
(``metarl.fewshot.evaluation.adaptation_scores``) take any ``Problem``; the suite's own
``OmniglotProblem`` is tied to the 4-block network, so this one differs only in the network:
the same task samplers (training tasks from ``train_split``, validation tasks from the 100
"val" characters, test tasks from the 423 test characters) and the same losses, with
``metarl.fewshot.cell_network.cell_network`` in place of ``conv4``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from metarl.config import ConfigError
from metarl.core.linalg import Params
from metarl.fewshot.cell_network import Layout, cell_network, initial_params
from metarl.fewshot.cell_space import Cell
from metarl.fewshot.config import FewShotConfig
from metarl.fewshot.omniglot import FewShotBatch, OmniglotData
from metarl.fewshot.problems import EVAL_CHUNK, Role, omniglot_samplers


class CellProblem:
    """N-way K-shot Omniglot tasks for the network of ``cell`` (a ``ways``-logit head)."""

    metric = "accuracy"
    eval_chunk = EVAL_CHUNK["omniglot"]

    def __init__(self, config: FewShotConfig, data: OmniglotData, cell: Cell,
                 layout: Layout) -> None:
        if config.problem != "omniglot" or config.learner == "protonet":
            raise ConfigError("a cell network needs problem omniglot and a gradient-based learner")
        self.config, self.cell, self.layout = config, cell, layout
        self.samplers = omniglot_samplers(config, data)

    def initial_params(self) -> Params:
        return initial_params(self.cell, self.config.ways, self.layout, self.config.seed)

    def sample(self, role: Role, n: int, generator: torch.Generator) -> FewShotBatch:
        return self.samplers[role].sample(n, generator)

    def _loss(self, params: Params, x: Tensor, y: Tensor) -> Tensor:
        logits = cell_network(params, x, self.cell, self.layout)
        flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                               reduction="none")
        return flat.reshape(y.shape).mean(-1)

    def support_loss(self, params: Params, batch: Any) -> Tensor:
        return self._loss(params, batch.support_x, batch.support_y)

    def query_loss(self, params: Params, batch: Any) -> Tensor:
        return self._loss(params, batch.query_x, batch.query_y)

    def score(self, params: Params, batch: Any) -> Tensor:
        logits = cell_network(params, batch.query_x, self.cell, self.layout)
        hits: Tensor = logits.argmax(-1) == batch.query_y
        return hits.float().mean(-1)
