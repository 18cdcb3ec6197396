"""The two supervised task families behind one interface: what a run samples, its losses, the
network's initial parameters and the per-task score.

A `Problem` is built from a `FewShotConfig`. ``sample("train", n, g)`` draws the training tasks
(Reptile's with one support set per inner step); ``sample("val" | "test", n, g)`` draws
``ways``-way ``shots``-shot tasks with ``eval_queries`` queries to score. The losses return one
value per task (``[N]`` for per-task stacked parameters), as
``metarl.core.adaptation.adapt`` expects; ``score`` is the per-task query MSE (sinusoid) or
accuracy (Omniglot) of per-task parameters.

Random streams: the training, validation and test tasks come from generators seeded by
``stream_seed(seed, stream)``, so the same integer seed never gives the same tasks in two roles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol, cast

import numpy as np
import torch
from torch import Tensor

from metarl.config import ConfigError
from metarl.core.linalg import Params
from metarl.fewshot.config import FewShotConfig
from metarl.fewshot.conv import Pool
from metarl.fewshot.models import mse_loss
from metarl.fewshot.omniglot import (
    FewShotBatch,
    OmniglotData,
    OmniglotTasks,
    Split,
    default_root,
    load_omniglot,
)
from metarl.fewshot.omniglot_training import accuracy, cross_entropy_loss, initial_conv_params
from metarl.fewshot.sinusoid import SinusoidBatch, SinusoidTasks
from metarl.fewshot.supervised import initial_params as initial_mlp_params

Role = Literal["train", "val", "test"]
STREAMS: dict[Role, int] = {"train": 0, "val": 1, "test": 2}
EVAL_CHUNK = {"sinusoid": 1000, "omniglot": 20}  # tasks evaluated at once (bounds memory)


def stream_seed(seed: int, role: Role) -> int:
    """A seed for ``role``'s task generator derived from the run's ``seed`` (NumPy's
    SeedSequence mixes the pair, so distinct pairs give unrelated streams)."""
    return int(np.random.SeedSequence([seed, STREAMS[role]]).generate_state(1)[0])


def task_generator(seed: int, role: Role) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, role))


class Problem(Protocol):
    """What the run loop and the evaluation need from a task family."""

    metric: str  # "mse" or "accuracy"
    eval_chunk: int

    def initial_params(self) -> Params: ...
    def sample(self, role: Role, n: int, generator: torch.Generator) -> Any: ...
    def support_loss(self, params: Params, batch: Any) -> Tensor: ...
    def query_loss(self, params: Params, batch: Any) -> Tensor: ...
    def score(self, params: Params, batch: Any) -> Tensor: ...


class SinusoidProblem:
    """Sinusoid regression (Finn et al. 2017, Sec. 5.1) with the 2 x 40 ReLU network."""

    metric = "mse"
    eval_chunk = EVAL_CHUNK["sinusoid"]

    def __init__(self, config: FewShotConfig) -> None:
        self.config = config
        self.tasks = SinusoidTasks()
        self._support = mse_loss("support")
        self._query = mse_loss("query")

    def initial_params(self) -> Params:
        return initial_mlp_params(self.config.seed)

    def sample(self, role: Role, n: int, generator: torch.Generator) -> SinusoidBatch:
        c = self.config
        if role == "train":
            return self.tasks.sample(n, c.training_shots_per_class, c.queries, generator)
        return self.tasks.sample(n, c.shots, c.eval_queries, generator)

    def support_loss(self, params: Params, batch: Any) -> Tensor:
        return self._support(params, batch)

    def query_loss(self, params: Params, batch: Any) -> Tensor:
        return self._query(params, batch)

    def score(self, params: Params, batch: Any) -> Tensor:
        return self._query(params, batch)


def omniglot_samplers(config: FewShotConfig, data: OmniglotData) -> dict[Role, OmniglotTasks]:
    """Task samplers per role: training tasks from ``train_split`` (Reptile's without queries),
    validation and test tasks from the "val" and "test" characters; one-line errors."""
    c = config
    train_queries = 0 if c.learner == "reptile" else c.queries
    try:
        return {
            "train": OmniglotTasks(data, cast(Split, c.train_split), c.training_ways,
                                   c.training_shots_per_class, train_queries, c.rotate),
            "val": OmniglotTasks(data, "val", c.ways, c.shots, c.eval_queries, c.rotate),
            "test": OmniglotTasks(data, "test", c.ways, c.shots, c.eval_queries, c.rotate),
        }
    except ValueError as error:  # e.g. more ways than a small data set's classes
        raise ConfigError(f"Omniglot under {data.root}: {error}") from None


class OmniglotProblem:
    """Omniglot N-way K-shot classification with the 4-block network (a ``ways``-logit head,
    or none for ProtoNets' embedding). Training tasks come from ``train_split``, validation
    tasks from the 100 "val" characters, test tasks from the 423 test characters."""

    metric = "accuracy"
    eval_chunk = EVAL_CHUNK["omniglot"]

    def __init__(self, config: FewShotConfig) -> None:
        self.config = config
        c = config
        self.samplers = omniglot_samplers(c, load_omniglot(omniglot_root(c.data_path)))
        self.pool = cast(Pool, c.pool)
        self._support = cross_entropy_loss("support", self.pool)
        self._query = cross_entropy_loss("query", self.pool)

    def initial_params(self) -> Params:
        c = self.config
        head = None if c.learner == "protonet" else c.ways
        return initial_conv_params(head, c.seed, self.pool, c.filters)

    def sample(self, role: Role, n: int, generator: torch.Generator) -> FewShotBatch:
        return self.samplers[role].sample(n, generator)

    def support_loss(self, params: Params, batch: Any) -> Tensor:
        return self._support(params, batch)

    def query_loss(self, params: Params, batch: Any) -> Tensor:
        return self._query(params, batch)

    def score(self, params: Params, batch: Any) -> Tensor:
        return accuracy(params, batch, self.pool)


def omniglot_root(data_path: str) -> Path:
    """The Omniglot folder for the config's ``data_path``: ``data_path/omniglot`` when that
    exists, else ``data_path`` itself; with an empty ``data_path``, $METARL_DATA/omniglot.
    Missing data raises a one-line FileNotFoundError that
    says where to put it."""
    if data_path:
        base = Path(data_path).expanduser()
        root = base / "omniglot" if (base / "omniglot").is_dir() else base
    else:
        found = default_root()
        if found is None:
            raise FileNotFoundError(
                "Omniglot data not found: set data_path in the config (or --data-path) to a "
                "folder holding omniglot/, or set METARL_DATA to such a folder; omniglot/ holds "
                "images_background.npz and images_evaluation.npz, or the original release's "
                "images_background/ and images_evaluation/ folders; nothing is downloaded")
        root = found
    if not _has_omniglot(root):
        raise FileNotFoundError(
            f"Omniglot data not found in {root}: put images_background.npz and "
            "images_evaluation.npz, or the original release's folders images_background/ and "
            f"images_evaluation/ (<alphabet>/<character>/*.png), in {root}, or point data_path "
            "(or METARL_DATA) at a folder holding omniglot/; nothing is downloaded")
    return root


def _has_omniglot(root: Path) -> bool:
    parts = ("images_background", "images_evaluation")
    return (all((root / f"{p}.npz").is_file() for p in parts)
            or all((root / p).is_dir() for p in parts))
