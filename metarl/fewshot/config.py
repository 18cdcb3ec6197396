"""Configuration of a supervised few-shot run: one frozen, validated dataclass read from YAML.

`metarl train` tells a supervised preset from an RL one by its `problem` field (RL presets have
`env_id` instead; see `is_fewshot_config`). Errors are `metarl.config.ConfigError` with one line
naming the field, as for the RL config.
"""

from __future__ import annotations

import dataclasses
import math
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

__all__ = [
    "FEWSHOT_RESUMABLE_FIELDS",
    "FewShotConfig",
    "is_fewshot_config",
    "load_fewshot_config",
    "save_fewshot_config",
]

PROBLEMS = ("sinusoid", "omniglot")
LEARNERS = ("maml", "fomaml", "reptile", "imaml", "protonet", "pretrained", "scratch")
OUTERS = ("adam", "sgd")
SCHEDULES = ("constant", "linear", "halving")
INNER_OPTIMIZERS = ("sgd", "adam")
POOLS = ("max", "stride")
TRAIN_SPLITS = ("train", "train+val")
OMNIGLOT_DRAWERS = 20  # drawings per character: support + query examples per class must fit


@dataclass(frozen=True)
class FewShotConfig:
    """Hyperparameters of one supervised few-shot run, checked when the object is built.

    Defaults are the MAML paper's sinusoid regression (Finn et al. 2017, arXiv:1703.03400, Sec.
    5.1): K = 10 points, 25 tasks per meta-batch, one inner step of rate
    0.01, Adam with rate 1e-3; evaluation on 600 held-out tasks after up to 10 steps.

    Fields:
        problem: "sinusoid" (regression, metric MSE) or "omniglot" (N-way K-shot
            classification, metric accuracy).
        learner: "maml", "fomaml" (no second-order terms), "reptile" (Nichol et al. 2018),
            "imaml" (Rajeswaran et al. 2019), "protonet" (Snell et al. 2017; Omniglot only),
            "pretrained" (one network regressed on the mixture of tasks, then fine-tuned at
            test time; sinusoid only) or "scratch" (a random initialisation fine-tuned at test
            time; no training).
        iterations: outer (meta) updates.
        meta_batch_size: tasks per outer update (ProtoNets: episodes per update).
        ways: classes per test task (Omniglot; the MAML head has this many logits).
        train_ways: classes per training episode of ProtoNets (the paper trains with more ways
            than it tests); 0 means `ways`. Other learners train with `ways`.
        shots: support examples per class (sinusoid: support points per task), K.
        train_shots: support examples per class of the training tasks (Reptile: of each inner
            step, as its inner batches); 0 means `shots`. Test tasks always have `shots`.
        queries: query examples per class (sinusoid: points) of each training task.
        inner_lr: step size of the inner SGD steps, in training and at test (alpha).
        inner_steps: inner steps per training task (iMAML: gradient steps of its proximal
            problem; Reptile: steps, each on its own `shots` examples per class).
        inner_optimizer: Reptile's inner optimiser, "sgd" or "adam" (beta1 = 0, as in the paper).
        prox_lambda: iMAML's proximal strength lambda.
        cg_iters: iMAML's conjugate-gradient iterations per task.
        cg_damping: damping d of iMAML's solve of ((1 + d) I + H / lambda).
        outer: outer step: "adam" or "sgd" (plain step; with Reptile theta moves by outer_lr
            toward the mean adapted parameters).
        outer_lr: outer learning rate (beta; Reptile's epsilon with sgd).
        outer_lr_schedule: "constant", "linear" (decays to 0 at the last iteration, as Reptile
            anneals) or "halving" (halves every `lr_halving_every` iterations, as ProtoNets).
        lr_halving_every: iterations between two halvings of the "halving" schedule.
        meta_grad_chunk: tasks per chunk of MAML's meta-gradient (bounds the second-order
            graph's memory); 0: all at once.
        pool: Omniglot network: "stride" (stride-2 convolutions, MAML's) or "max" (2x2
            max-pooling, ProtoNets').
        filters: channels of each of the network's four convolutions (of the cell network's
            convolutions when ``cell`` is set).
        cell: Omniglot only: an Auto-Meta cell (``metarl search``'s ``best_cell.txt``, e.g.
            "0:sep3+1:sep5") to build the network from, stacked as in the CPU search (3 stages
            of one cell); empty: the 4-block conv network.
        rotate: each (character, rotation by 0/90/180/270 degrees) is its own class.
        train_split: Omniglot characters trained on: "train" (1100, MAML's) or "train+val"
            (1200, ProtoNets'); validation always uses the 100 "val" characters (seen in
            training with "train+val", so its scores are then optimistic; the test characters
            stay unseen either way).
        data_path: folder holding `omniglot/` (or the omniglot folder itself); empty: the
            METARL_DATA environment variable's.
        seed: seed of the initialisation and of the training tasks.
        torch_threads: torch intra-op threads; 0 picks the free cores.
        max_minutes: training time budget: the run stops (validating and checkpointing) after
            the iteration that ends past it, counting the time of earlier sessions of a resumed
            run; 0 means no budget. The iteration count then depends on the machine's speed.
        log_interval: iterations between two stdout lines.
        checkpoint_interval: iterations between two saved `last.pt` checkpoints.
        val_interval: iterations between two validations, which choose `best.pt`; 0: none
            (`best.pt` is then the last parameters).
        val_tasks: validation tasks (sinusoid: a fixed set of its own seed; Omniglot: from the
            "val" characters).
        eval_tasks: held-out test tasks that `metarl eval` uses unless told otherwise.
        eval_steps: inner steps evaluated (the metric after 0..eval_steps steps).
        eval_queries: query examples per class (sinusoid: points) of each test task; more
            than `queries` only lowers the noise of each task's score.
    """

    problem: str = "sinusoid"
    learner: str = "maml"
    iterations: int = 20_000
    meta_batch_size: int = 25
    ways: int = 1
    train_ways: int = 0
    shots: int = 10
    train_shots: int = 0
    queries: int = 10
    inner_lr: float = 0.01
    inner_steps: int = 1
    inner_optimizer: str = "sgd"
    prox_lambda: float = 2.0
    cg_iters: int = 5
    cg_damping: float = 0.0
    outer: str = "adam"
    outer_lr: float = 1e-3
    outer_lr_schedule: str = "constant"
    lr_halving_every: int = 2000
    meta_grad_chunk: int = 0
    pool: str = "stride"
    filters: int = 64
    cell: str = ""
    rotate: bool = True
    train_split: str = "train"
    data_path: str = ""
    seed: int = 0
    torch_threads: int = 0
    max_minutes: float = 0.0
    log_interval: int = 1000
    checkpoint_interval: int = 1000
    val_interval: int = 1000
    val_tasks: int = 100
    eval_tasks: int = 600
    eval_steps: int = 10
    eval_queries: int = 100

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = _coerce(field.name, getattr(self, field.name), hints[field.name])
            object.__setattr__(self, field.name, value)  # normalised (int -> float) values
        for name, choices in (("problem", PROBLEMS), ("learner", LEARNERS), ("outer", OUTERS),
                              ("outer_lr_schedule", SCHEDULES),
                              ("inner_optimizer", INNER_OPTIMIZERS), ("pool", POOLS),
                              ("train_split", TRAIN_SPLITS)):
            self._require(name, getattr(self, name) in choices, _one_of(choices))
        for name in ("iterations", "meta_batch_size", "ways", "shots", "inner_steps", "cg_iters",
                     "lr_halving_every", "filters", "log_interval", "checkpoint_interval",
                     "val_tasks", "eval_tasks", "eval_queries"):
            self._require(name, getattr(self, name) >= 1, ">= 1")
        for name in ("train_ways", "train_shots", "queries", "meta_grad_chunk", "seed",
                     "torch_threads", "val_interval", "eval_steps"):
            self._require(name, getattr(self, name) >= 0, ">= 0")
        for name in ("inner_lr", "outer_lr", "prox_lambda"):
            self._require(name, getattr(self, name) > 0, "> 0")
        self._require("cg_damping", self.cg_damping >= 0, ">= 0")
        self._require("max_minutes", math.isfinite(self.max_minutes) and self.max_minutes >= 0,
                      "finite and >= 0 (0: no budget)")
        self._check_combination()

    def _require(self, name: str, ok: bool, requirement: str) -> None:
        if not ok:
            raise ConfigError(f"{name} must be {requirement}, got {getattr(self, name)!r}")

    def _check_combination(self) -> None:
        """Reject settings that mean nothing for this problem and learner, naming them."""
        problems = []
        if self.problem == "sinusoid":
            if self.learner == "protonet":
                problems.append("learner protonet classifies, problem sinusoid regresses")
            if self.ways != 1:
                problems.append(f"problem sinusoid has ways 1, not {self.ways}")
        elif self.learner == "pretrained":
            problems.append("learner pretrained is defined for problem sinusoid only")
        if self.learner != "protonet" and self.train_ways not in (0, self.ways):
            problems.append(f"train_ways {self.train_ways} differs from ways {self.ways}, "
                            f"which only learner protonet allows")
        if self.learner == "protonet" and self.eval_steps != 0:
            problems.append("learner protonet takes no inner steps at test: eval_steps must be 0")
        if self.learner != "reptile" and self.inner_optimizer != "sgd":
            problems.append(f"inner_optimizer {self.inner_optimizer} is Reptile's only")
        if self.learner != "reptile" and self.queries < 1:
            problems.append(f"learner {self.learner} needs queries >= 1")
        if self.problem == "omniglot":
            per_class = self.training_shots_per_class + self.queries * (self.learner != "reptile")
            if per_class > OMNIGLOT_DRAWERS:
                problems.append(f"training tasks need {per_class} drawings per class, Omniglot "
                                f"has {OMNIGLOT_DRAWERS}")
            if self.shots + self.eval_queries > OMNIGLOT_DRAWERS:
                problems.append(f"shots + eval_queries = {self.shots + self.eval_queries} "
                                f"exceeds Omniglot's {OMNIGLOT_DRAWERS} drawings per class")
        if self.cell:
            if self.problem != "omniglot" or self.learner == "protonet":
                problems.append("a cell network needs problem omniglot and a gradient-based "
                                "learner")
            from metarl.fewshot.cell_space import parse_cell

            try:
                parse_cell(self.cell)
            except ValueError as error:
                problems.append(str(error))
        if problems:
            raise ConfigError("invalid combination: " + "; ".join(problems))

    @property
    def training_ways(self) -> int:
        """Classes per training task: `train_ways` for ProtoNets when set, else `ways`."""
        return self.train_ways or self.ways

    @property
    def training_shots(self) -> int:
        """Support examples per class of a training task (Reptile: of each inner step)."""
        return self.train_shots or self.shots

    @property
    def training_shots_per_class(self) -> int:
        """Support examples per class of a training task: Reptile's steps each take their own."""
        steps = self.inner_steps if self.learner == "reptile" else 1
        return self.training_shots * steps

    @property
    def metric(self) -> str:
        """What evaluation reports: "mse" (lower is better) or "accuracy"."""
        return "mse" if self.problem == "sinusoid" else "accuracy"

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> FewShotConfig:
        """Build a config from a mapping of field names to values; missing fields get defaults."""
        return cls(**known_fields(cls, data))

    def to_dict(self) -> dict[str, object]:
        """Plain YAML-safe values, in field order."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


# Fields a resumed run may change: they touch neither the training maths nor its random stream
# (with a linear learning-rate schedule the iteration count sets the rates, so it may not change).
FEWSHOT_RESUMABLE_FIELDS = frozenset({"iterations", "max_minutes", "log_interval",
                                      "checkpoint_interval", "eval_tasks", "data_path"})


def fewshot_field_names() -> set[str]:
    """Names of the fields, which the command line accepts as `--<field> VALUE` overrides."""
    return {field.name for field in dataclasses.fields(FewShotConfig)}


def _one_of(choices: tuple[str, ...]) -> str:
    return "one of " + ", ".join(repr(choice) for choice in choices)


def is_fewshot_config(path: str | Path) -> bool:
    """Whether the YAML file ``path`` describes a supervised run (it has a `problem` field).

    Unreadable or malformed files answer False, so that the RL loader reports their error.
    """
    try:
        return "problem" in read_yaml_mapping(Path(path))
    except ConfigError:
        return False


def load_fewshot_config(path: str | Path,
                        overrides: Mapping[str, str] | None = None) -> FewShotConfig:
    """Read a YAML config, then apply ``overrides`` (field -> value text, parsed as YAML; names
    may use dashes for underscores)."""
    merged = read_yaml_mapping(Path(path))
    for key, text_value in (overrides or {}).items():
        merged[key.replace("-", "_")] = parse_value(text_value)
    return FewShotConfig.from_dict(merged)


def save_fewshot_config(config: FewShotConfig, path: Path) -> None:
    """Write ``config`` as YAML (fields in declaration order) atomically."""
    write_yaml(config.to_dict(), path)
