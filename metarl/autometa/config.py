"""Configuration of an Auto-Meta search (`metarl search CONFIG`): one frozen, validated dataclass
read from YAML. Errors are ``metarl.config.ConfigError`` with one line naming the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import get_type_hints

from metarl.config import (
    ConfigError,
    _coerce,
    known_fields,
    parse_value,
    read_yaml_mapping,
    write_yaml,
)
from metarl.fewshot.cell_network import Layout
from metarl.fewshot.cell_space import OPERATORS
from metarl.fewshot.config import FewShotConfig


@dataclass(frozen=True)
class SearchConfig:
    """Hyperparameters of one progressive search (Kim et al. 2018, arXiv:1806.06927; PNAS, Liu
    et al. 2018, arXiv:1712.00559), checked when the object is built.

    Fields:
        operators: the operator set, a subset of sep3, sep5, max3, avg3, id.
        max_blocks: blocks of the final cells (B); the search has one round per block count.
        first_round: one-block cells trained in round 1, a seeded sample; 0: all of them.
        beam: best cells of a round (by validation score) whose expansions the next round ranks.
        top_k: expansions trained per later round, the surrogate's top K.
        filters, stages, cells_per_stage: the network (``metarl.fewshot.cell_network``).
        ways, shots: the few-shot tasks (N-way K-shot Omniglot).
        iterations: Reptile outer steps per candidate (the per-candidate budget).
        meta_batch_size, inner_steps, train_shots, inner_lr, inner_optimizer, outer_lr:
            Reptile (Nichol et al. 2018, arXiv:1803.02999; as ``FewShotConfig``): outer plain
            steps of rate ``outer_lr`` decaying linearly to 0 over ``iterations``.
        val_tasks: validation tasks (100 held-out "val" characters) that score a candidate.
        eval_steps: inner steps before a validation task is scored.
        eval_queries: query examples per class of a validation task.
        surrogate_members, surrogate_hidden, surrogate_epochs: the MLP ensemble.
        retrain_iterations: Reptile outer steps of the retrain presets the finished search
            writes (``metarl.autometa.retrain``).
        data_path: folder holding omniglot/ (as ``FewShotConfig.data_path``).
        synthetic_characters: > 0 replaces Omniglot by that many synthetic characters
            (``metarl.fewshot.omniglot.synthetic_omniglot``), for smoke runs and tests.
        seed: seed of every candidate's initialisation and tasks, of the round-1 sample and of
            the surrogate.
        torch_threads: torch intra-op threads; 0 picks the free cores.
        max_minutes: stop after the candidate that passes this many minutes of training over
            all sessions of the search (0: no budget); the search resumes from there.
    """

    operators: tuple[str, ...] = OPERATORS
    max_blocks: int = 3
    first_round: int = 0
    beam: int = 4
    top_k: int = 8
    filters: int = 16
    stages: int = 3
    cells_per_stage: int = 1
    ways: int = 5
    shots: int = 1
    iterations: int = 300
    meta_batch_size: int = 5
    inner_steps: int = 5
    train_shots: int = 2
    inner_lr: float = 1e-3
    inner_optimizer: str = "adam"
    outer_lr: float = 1.0
    val_tasks: int = 100
    eval_steps: int = 20
    eval_queries: int = 5
    surrogate_members: int = 5
    surrogate_hidden: int = 32
    surrogate_epochs: int = 500
    retrain_iterations: int = 3000
    data_path: str = ""
    synthetic_characters: int = 0
    seed: int = 0
    torch_threads: int = 0
    max_minutes: float = 0.0

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "operators":
                if not isinstance(value, (list, tuple)) or not all(isinstance(v, str)
                                                                   for v in value):
                    raise ConfigError(f"operators must be a list of names, got {value!r}")
                value = tuple(value)
            else:
                value = _coerce(field.name, value, hints[field.name])
            object.__setattr__(self, field.name, value)
        unknown = [op for op in self.operators if op not in OPERATORS]
        if unknown or not self.operators or len(set(self.operators)) != len(self.operators):
            raise ConfigError(f"operators must be distinct names among {', '.join(OPERATORS)}, "
                              f"got {list(self.operators)}")
        for name in ("max_blocks", "beam", "top_k", "filters", "stages", "cells_per_stage",
                     "ways", "shots", "iterations", "meta_batch_size", "inner_steps",
                     "train_shots", "val_tasks", "eval_queries", "surrogate_members",
                     "surrogate_hidden", "surrogate_epochs", "retrain_iterations"):
            self._require(name, getattr(self, name) >= 1, ">= 1")
        for name in ("first_round", "eval_steps", "synthetic_characters", "seed",
                     "torch_threads"):
            self._require(name, getattr(self, name) >= 0, ">= 0")
        self._require("max_minutes", 0 <= self.max_minutes < float("inf"),
                      "finite and >= 0 (0: no budget)")
        self._require("first_round", self.first_round != 1,
                      "0 (all) or >= 2 (the surrogate needs two scores)")
        self._require("synthetic_characters",
                      self.synthetic_characters == 0 or self.synthetic_characters >= 40,
                      "0 (real Omniglot) or >= 40 (enough validation classes)")
        self.fewshot_config()  # the Reptile settings' own checks, one line each

    def _require(self, name: str, ok: bool, requirement: str) -> None:
        if not ok:
            raise ConfigError(f"{name} must be {requirement}, got {getattr(self, name)!r}")

    @property
    def layout(self) -> Layout:
        return Layout(self.filters, self.stages, self.cells_per_stage)

    def fewshot_config(self) -> FewShotConfig:
        """The few-shot suite's config of one candidate's Reptile run."""
        return FewShotConfig(
            problem="omniglot", learner="reptile", iterations=self.iterations,
            meta_batch_size=self.meta_batch_size, ways=self.ways, shots=self.shots,
            train_shots=self.train_shots, queries=0, inner_lr=self.inner_lr,
            inner_steps=self.inner_steps, inner_optimizer=self.inner_optimizer, outer="sgd",
            outer_lr=self.outer_lr, outer_lr_schedule="linear", filters=self.filters,
            data_path=self.data_path, seed=self.seed, torch_threads=self.torch_threads,
            val_tasks=self.val_tasks, eval_steps=self.eval_steps,
            eval_queries=self.eval_queries)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> SearchConfig:
        """Build a config from a mapping of field names to values; missing fields get defaults."""
        return cls(**known_fields(cls, data))

    def to_dict(self) -> dict[str, object]:
        """Plain YAML-safe values, in field order."""
        return {field.name: (list(value) if isinstance(value := getattr(self, field.name), tuple)
                             else value) for field in dataclasses.fields(self)}


def load_search_config(path: str | Path,
                       overrides: Mapping[str, str] | None = None) -> SearchConfig:
    """Read a search config from YAML (missing fields get their defaults), then apply
    ``overrides`` (field -> value text, parsed as YAML), as ``metarl train`` does."""
    merged = read_yaml_mapping(Path(path))
    for key, text_value in (overrides or {}).items():
        merged[key.replace("-", "_")] = parse_value(text_value)
    return SearchConfig.from_dict(merged)


def save_search_config(config: SearchConfig, path: Path) -> None:
    """Write ``config`` as YAML atomically."""
    write_yaml(config.to_dict(), path)
