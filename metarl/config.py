"""Training configuration: one frozen, validated dataclass, read from and written to YAML.

A run is fully described by a `TrainConfig`; the trainer saves it next to the run's results, and
the presets in `experiments/` are YAML files holding its fields.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from metarl.run.atomic_write import write_text

__all__ = [
    "DEVICES",
    "ConfigError",
    "TrainConfig",
    "load_config",
    "parse_value",
    "resolve_threads",
    "save_config",
]


class ConfigError(ValueError):
    """An invalid configuration field, value or file; the message is one line naming it."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one MAML-RL training run, checked when the object is built.

    Defaults are those of MAML (Finn et al. 2017, "Model-Agnostic Meta-Learning for Fast
    Adaptation of Deep Networks", arXiv:1703.03400, section 5.3 and appendix A.2) for 2D
    navigation, as used by the peers' PyTorch reproduction: 20 tasks of 20 episodes of 100 steps,
    a 2x64 tanh Gaussian policy, one inner policy-gradient step of rate 0.1, and a TRPO outer step.

    Every invalid value raises `ConfigError` naming the field. Integer fields reject floats,
    strings and bools; float fields accept integers (stored as floats); `hidden_sizes` accepts a
    list and stores a tuple.

    Fields:
        env_id: registered task-distribution environment to meta-train on.
        physics: simulation setting of the MuJoCo families: "peers" (gymnasium models, frame
            skip 5) or "maml" (the MAML paper's time step and reward terms); see
            metarl.envs.locomotion.
        action_space: the space the policy acts in: "env" (the environment's own bounds) or
            "unit" ([-1, 1]^d, mapped onto the bounds by a_env = lb + (a + 1) (ub - lb) / 2 and
            clipped there, inside the environment, as the MAML paper's code normalised every
            environment); see metarl.envs.action_map. It changes what the policy's standard
            deviation means (2D navigation's bounds are +-0.1: std 1 is a step of 0.1 with
            "unit"); the MuJoCo and Meta-World bounds are [-1, 1] already.
        iterations: number of outer (meta) updates.
        meta_batch_size: tasks sampled per outer update (N).
        episodes_per_task: episodes sampled per task, for support and again for query (B).
        batch_unit: how a task's batch is counted: "episodes" (exactly ``episodes_per_task``
            episodes; the evaluation ``eval_episodes``) or "steps" (whole episodes until the task
            has ``episodes_per_task x horizon`` steps, ``eval_episodes x horizon`` in the
            evaluation, as the MAML paper's samplers counted: a task whose episodes end early
            gets more of them); see metarl.rl.step_budget. The two differ only where episodes
            can end before the horizon.
        horizon: maximum steps per episode (T).
        hidden_sizes: widths of the policy's hidden layers; empty gives a linear policy.
        activation: hidden-layer nonlinearity, "tanh" or "relu".
        init_log_std: initial log standard deviation of the Gaussian policy.
        inner_lr: step size of the inner (adaptation) policy-gradient step (alpha).
        inner_steps: inner gradient steps per task (S).
        learner: meta-learner: "maml", "fomaml" (MAML without second-order terms), "reptile"
            (Nichol et al. 2018: theta moves toward the adapted parameters) or "imaml"
            (Rajeswaran et al. 2019: implicit gradient of a proximal inner problem; its
            inner_steps are gradient steps of that problem on one support batch), or
            "pretrained": the MAML paper's pretrained baseline, one policy trained jointly on
            the task distribution without adaptation (each iteration samples as many episodes
            with theta as MAML samples in all, and takes a plain policy-gradient outer step).
        first_order: drop second-order terms of the meta-gradient (the same as learner fomaml).
        prox_lambda: strength lambda of iMAML's proximal term lambda/2 |phi - theta|^2.
        prox_damping: damping d of iMAML's conjugate-gradient solve of ((1 + d) I + H/lambda);
            the support Hessian H is indefinite in RL and needs it.
        imaml_cg_iters: iMAML's conjugate-gradient iterations per task for that solve (before
            this field existed, cg_iters set them: its default keeps that behaviour).
        estimator: meta-gradient estimator of the inner loss: "maml" (the original MAML-RL
            surrogate), "lvc" (ProMP's low-variance curvature) or "dice" (unbiased); see
            metarl.core.estimators.
        outer: outer step: "trpo"; "adam" (one Adam step on the query surrogate, the REINFORCE
            outer step); "sgd" (one plain gradient step of rate outer_lr); or "promp" (ProMP:
            promp_steps Adam steps on the clipped surrogate with a KL penalty on the pre-update
            policy, Rothfuss et al. 2018, arXiv:1810.06784).
        outer_lr: learning rate of the "adam", "sgd" and "promp" outer steps (beta; Reptile's
            epsilon with "sgd").
        promp_steps: Adam steps per meta-batch of the "promp" outer step.
        clip_eps: likelihood-ratio clipping range of the "promp" outer step.
        inner_kl_coef: initial weight of the "promp" KL penalty on the pre-update policy.
        inner_kl_target: KL the "promp" penalty weight adapts toward (doubled when the measured KL
            exceeds 1.5 times it, halved below a 1.5th of it).
        max_kl: TRPO trust-region bound on the mean KL divergence.
        cg_iters: conjugate-gradient iterations for the TRPO step direction (iMAML's are
            imaml_cg_iters).
        cg_damping: damping added to the Fisher-vector products (F + damping * I).
        ls_backtrack: TRPO line-search step shrink factor, in (0, 1).
        ls_max_steps: maximum TRPO line-search steps before the update is rejected.
        trpo_pre_update_kl: also bound the pre-update policy's change in TRPO's trust region:
            the KL of pi_theta on the support states is added to the adapted policies' KL, in
            the curvature and in the line search's check (as ProMP penalises it, Rothfuss et
            al. 2018, arXiv:1810.06784). Without it the exact curvature lets theta move far in
            directions the adapted policies barely see (see docs/learners.md). The pretrained
            baseline does not adapt, so its trust region is its own policy's KL either way.
        fvp_fraction: fraction of the query steps on which TRPO measures its curvature (the
            Fisher-vector products); the adaptation inside them uses all support steps.
        fvp_task_fraction: fraction of the meta-batch's tasks on which TRPO measures its
            curvature (each with all its support steps, so the curvature stays exact on the
            subsample); below 1 it saves the Hessian-vector products through the adaptation.
        curvature_dtype: the arithmetic of the Hessian-vector products through the adaptation
            inside TRPO's curvature: "float32", or "bfloat16" (a product 2.2 to 2.4 times as fast
            on a CPU with AVX512-BF16, slower on one without, a relative error of 2.5e-3; the
            gradient, the line search and its KL check stay in float32). "bfloat16" needs the
            hand-written products: the "maml" estimator and a Gaussian policy.
        meta_grad_chunk: tasks per chunk when computing the meta-objective and its gradient;
            bounds peak memory and was also faster here (cache-sized chunks; 0: all at once).
            Every learner honours it (MAML's unrolled graph, iMAML's inner and CG solves,
            Reptile's inner loops); the result does not depend on it.
        gamma: discount factor.
        gae_lambda: GAE lambda (Schulman et al. 2015, arXiv:1506.02438); 1 gives Monte Carlo.
        normalize_advantages: standardise advantages per task before each policy gradient.
        baseline_ridge: ridge coefficient of the linear feature baseline's least-squares fit.
        seed: seed of every random number generator of the run.
        torch_threads: torch intra-op threads; 0 picks the free cores (see `resolve_threads`).
        device: where the policy's parameters and the learning maths live (the adaptation, the
            meta-gradient, the outer step, the baseline fit and advantages): "cpu", "cuda" or
            "auto" (cuda when torch finds a CUDA device, else cpu). The simulators always run
            on the CPU; each rollout step sends the observations to the device and the actions
            back. "cuda" on a machine without CUDA stops training with a one-line error; eval,
            compare and video fall back to the CPU with a note. See docs/gpu.md.
        sampler: where support and query episodes are sampled: "local" (this process's batched
            simulator) or "ray" (the meta-batch's tasks split over Ray actors, each running its
            tasks' rollouts and sampling-time adaptation; the same episodes as "local", see
            metarl.rl.ray_sampler). "ray" needs the extra: pip install -e ".[ray]".
        ray_workers: Ray actors sampling in parallel (sampler "ray"), one CPU each.
        ray_address: address of the Ray cluster to join (sampler "ray"), e.g. "10.0.0.5:6379"
            or "auto"; "" starts a local Ray on this machine (or joins $RAY_ADDRESS if set).
        log_interval: iterations between two stdout lines.
        checkpoint_interval: iterations between two saved checkpoints.
        skip_nonfinite: on a NaN or inf in a training step, skip that batch (counted in the
            metric guard/skipped) instead of stopping the run with an error.
        max_minutes: training time budget: the run stops (saving its last checkpoint) after the
            iteration that ends past it, counting the time of earlier sessions of a resumed run;
            0 means no budget. The iteration count then depends on the machine's speed.
        rollout_timeout_s: seconds the sampling of one meta-iteration may take; a sampler that
            stalls longer stops the run with a one-line error, keeping the last checkpoint
            (metarl.run.watchdog). Generous by default; 0 disables the limit.
        video_interval: iterations between two policy videos (before and after one inner step
            on two held-out tasks) written to videos/ and TensorBoard; 0 records none.
        eval_tasks: held-out tasks that `metarl eval` uses unless told otherwise.
        eval_steps: inner gradient steps evaluated (returns after 0..eval_steps steps).
        eval_episodes: episodes per task and per step in the evaluation.
        eval_task_set: the held-out tasks: "sampled" (drawn from the task distribution with the
            evaluation's seed; a benchmark's fixed test split where it has one, as Meta-World's)
            or "maml_paper" (the MAML paper's own 40 test tasks, for the environments it
            evaluated: metarl.envs.maml_paper_tasks).
        eval_checkpoint: the checkpoint `metarl eval`, `compare` and `video` use unless told
            otherwise: "best" (the best training return) or "last" (the parameters after the
            last iteration, as the MAML paper's 2D-navigation code kept and evaluated).
        eval_interval: iterations between two held-out evaluations during training (the
            meta-parameters after that iteration, ``eval_tasks`` x ``eval_episodes``, returns
            after 0..eval_steps steps logged as ``heldout/return_step<k>``); 0 runs none.
    """

    env_id: str = "metarl/Navigation2D-v0"
    physics: str = "peers"
    action_space: str = "env"
    iterations: int = 500
    meta_batch_size: int = 20
    episodes_per_task: int = 20
    batch_unit: str = "episodes"
    horizon: int = 100
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    init_log_std: float = 0.0
    inner_lr: float = 0.1
    inner_steps: int = 1
    learner: str = "maml"
    first_order: bool = False
    estimator: str = "maml"
    prox_lambda: float = 2.0
    prox_damping: float = 1.0
    imaml_cg_iters: int = 10
    outer: str = "trpo"
    outer_lr: float = 1e-3
    promp_steps: int = 5
    clip_eps: float = 0.3
    inner_kl_coef: float = 5e-4
    inner_kl_target: float = 0.01
    max_kl: float = 0.01
    cg_iters: int = 10
    cg_damping: float = 1e-5
    ls_backtrack: float = 0.8
    ls_max_steps: int = 15
    trpo_pre_update_kl: bool = True
    fvp_fraction: float = 0.1
    fvp_task_fraction: float = 1.0
    curvature_dtype: str = "float32"
    meta_grad_chunk: int = 5
    gamma: float = 0.99
    gae_lambda: float = 1.0
    normalize_advantages: bool = True
    baseline_ridge: float = 1e-5
    seed: int = 0
    torch_threads: int = 0
    device: str = "cpu"
    sampler: str = "local"
    ray_workers: int = 2
    ray_address: str = ""
    log_interval: int = 10
    checkpoint_interval: int = 50
    video_interval: int = 0
    skip_nonfinite: bool = False
    max_minutes: float = 0.0
    rollout_timeout_s: float = 1800.0
    eval_tasks: int = 40
    eval_steps: int = 3
    eval_episodes: int = 40
    eval_task_set: str = "sampled"
    eval_checkpoint: str = "best"
    eval_interval: int = 0

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = _coerce(field.name, getattr(self, field.name), hints[field.name])
            # Frozen dataclass: normalised values (int -> float, list -> tuple) are stored this way.
            object.__setattr__(self, field.name, value)

        _require(self, "env_id", bool(self.env_id.strip()), "a non-empty string")
        for name in (
            "iterations",
            "meta_batch_size",
            "episodes_per_task",
            "horizon",
            "inner_steps",
            "cg_iters",
            "imaml_cg_iters",
            "ls_max_steps",
            "promp_steps",
            "log_interval",
            "checkpoint_interval",
            "eval_tasks",
            "eval_episodes",
            "ray_workers",
        ):
            _require(self, name, getattr(self, name) >= 1, ">= 1")
        for name in ("seed", "torch_threads", "eval_steps", "meta_grad_chunk", "video_interval",
                     "eval_interval"):
            _require(self, name, getattr(self, name) >= 0, ">= 0")
        for name in ("inner_lr", "outer_lr", "max_kl", "baseline_ridge", "clip_eps",
                     "inner_kl_coef", "inner_kl_target"):
            _require(self, name, getattr(self, name) > 0, "> 0")
        _require(self, "cg_damping", self.cg_damping >= 0, ">= 0")
        _require(self, "max_minutes", math.isfinite(self.max_minutes) and self.max_minutes >= 0,
                 "finite and >= 0 (0: no budget)")
        _require(self, "rollout_timeout_s",
                 math.isfinite(self.rollout_timeout_s) and self.rollout_timeout_s >= 0,
                 "finite and >= 0 (0: no limit)")
        _require(self, "ls_backtrack", 0 < self.ls_backtrack < 1, "in (0, 1)")
        _require(self, "fvp_fraction", 0 < self.fvp_fraction <= 1, "in (0, 1]")
        _require(self, "fvp_task_fraction", 0 < self.fvp_task_fraction <= 1, "in (0, 1]")
        for name in ("gamma", "gae_lambda"):
            _require(self, name, 0 <= getattr(self, name) <= 1, "in [0, 1]")
        _require(self, "init_log_std", math.isfinite(self.init_log_std), "finite")
        _require(
            self,
            "hidden_sizes",
            all(size >= 1 for size in self.hidden_sizes),
            "a list of integers >= 1",
        )
        _require(self, "activation", self.activation in _ACTIVATIONS, _one_of(_ACTIVATIONS))
        _require(self, "physics", self.physics in _PHYSICS, _one_of(_PHYSICS))
        _require(self, "action_space", self.action_space in _ACTION_SPACES,
                 _one_of(_ACTION_SPACES))
        _require(self, "estimator", self.estimator in _ESTIMATORS, _one_of(_ESTIMATORS))
        _require(self, "curvature_dtype", self.curvature_dtype in _CURVATURE_DTYPES,
                 _one_of(_CURVATURE_DTYPES))
        _require(self, "curvature_dtype", self.curvature_dtype == "float32"
                 or self.estimator == "maml",
                 "'float32' with estimator lvc or dice (bfloat16 products exist for maml only)")
        _require(self, "batch_unit", self.batch_unit in _BATCH_UNITS, _one_of(_BATCH_UNITS))
        _require(self, "eval_task_set", self.eval_task_set in _TASK_SETS, _one_of(_TASK_SETS))
        _require(self, "eval_checkpoint", self.eval_checkpoint in _CHECKPOINTS,
                 _one_of(_CHECKPOINTS))
        _require(self, "sampler", self.sampler in _SAMPLERS, _one_of(_SAMPLERS))
        _require(self, "device", self.device in DEVICES, _one_of(DEVICES))
        _require(self, "prox_lambda", self.prox_lambda > 0, "> 0")
        _require(self, "prox_damping", self.prox_damping >= 0, ">= 0")

    @property
    def first_order_meta_gradient(self) -> bool:
        """Whether MAML's meta-gradient drops its second-order terms (FOMAML)."""
        return self.first_order or self.learner == "fomaml"

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> TrainConfig:
        """Build a config from a mapping of field names to values; missing fields get defaults."""
        return cls(**known_fields(cls, data))

    def to_dict(self) -> dict[str, object]:
        """Plain YAML-safe values, in field order; tuples become lists."""
        out: dict[str, object] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = list(value) if isinstance(value, tuple) else value
        return out


# Fields a resumed run may change: they affect neither the maths nor the random streams.
RESUMABLE_FIELDS = frozenset({"iterations", "max_minutes", "log_interval", "checkpoint_interval",
                              "video_interval", "eval_tasks", "eval_steps", "eval_episodes",
                              "eval_task_set", "eval_checkpoint",
                              "eval_interval",
                              "rollout_timeout_s",
                              # either sampler gives the same episodes: a run may move to Ray
                              "sampler", "ray_workers", "ray_address",
                              # the same maths on another device (only the rounding differs,
                              # the random streams stay on the CPU): a run may move machines
                              "device"})


_ACTIVATIONS = ("tanh", "relu")
_PHYSICS = ("peers", "maml")
_ACTION_SPACES = ("env", "unit")  # metarl.envs.action_map.ACTION_SPACES
_BATCH_UNITS = ("episodes", "steps")  # metarl.rl.step_budget.BATCH_UNITS
_TASK_SETS = ("sampled", "maml_paper")  # metarl.envs.maml_paper_tasks.TASK_SETS
_CHECKPOINTS = ("best", "last")  # metarl.run.checkpoint.CHECKPOINTS
_ESTIMATORS = ("maml", "lvc", "dice")
_CURVATURE_DTYPES = ("float32", "bfloat16")  # metarl.rl.objective.CURVATURE_DTYPES
_SAMPLERS = ("local", "ray")
DEVICES = ("cpu", "cuda", "auto")  # metarl.rl.device resolves them


def _one_of(choices: tuple[str, ...]) -> str:
    return "one of " + ", ".join(repr(choice) for choice in choices)


def _require(config: TrainConfig, name: str, ok: bool, requirement: str) -> None:
    if not ok:
        value = getattr(config, name)
        shown = list(value) if isinstance(value, tuple) else value
        raise ConfigError(f"{name} must be {requirement}, got {shown!r}")


def _type_error(name: str, value: object, expected: str) -> ConfigError:
    return ConfigError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")


def _coerce(name: str, value: object, annotation: object) -> object:
    """Check `value` against the field's annotation; return it in the field's canonical type."""
    # bool is a subclass of int, so it is excluded explicitly from the numeric fields.
    if annotation is bool:
        if not isinstance(value, bool):
            raise _type_error(name, value, "true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(name, value, "an integer")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(name, value, "a number")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise _type_error(name, value, "a string")
        return value
    if annotation == tuple[int, ...]:
        if not isinstance(value, (list, tuple)) or any(
            isinstance(item, bool) or not isinstance(item, int) for item in value
        ):
            raise _type_error(name, value, "a list of integers")
        return tuple(value)
    raise TypeError(f"no validation rule for field {name} of type {annotation!r}")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads exponent floats without a dot, such as 1e-3.

    Plain PyYAML follows YAML 1.1, where "1e-3" is a string; YAML 1.2 and most people read it as
    a number, so a learning rate written that way would otherwise be rejected as text.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _yaml_error(source: str, error: yaml.YAMLError) -> ConfigError:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}"
        return ConfigError(_one_line(f"invalid YAML in {where}: {error.problem}"))
    return ConfigError(_one_line(f"invalid YAML in {source}: {error}"))


def parse_value(text: str) -> object:
    """Parse one command-line value as YAML: "10" -> 10, "1e-3" -> 0.001, "[32, 32]" -> list."""
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(_one_line(f"cannot read value {text!r} as YAML: {problem}")) from None


def load_config(path: str | Path, overrides: Mapping[str, str] | None = None) -> TrainConfig:
    """Read a YAML config file, then apply `overrides` (field -> value text, parsed as YAML).

    An empty file gives the defaults. Override names may use dashes for underscores.
    """
    merged = read_yaml_mapping(Path(path))
    for key, text_value in (overrides or {}).items():
        merged[key.replace("-", "_")] = parse_value(text_value)
    return TrainConfig.from_dict(merged)


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write `config` as YAML (fields in declaration order), creating parent folders."""
    write_yaml(config.to_dict(), Path(path))


def known_fields(cls: type, data: Mapping[str, object]) -> dict[str, Any]:
    """``data`` as keyword arguments of the dataclass ``cls``; a one-line ConfigError names an
    unknown field and lists the known ones. Shared by every config class of the project."""
    known = [field.name for field in dataclasses.fields(cls)]
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"config field names must be strings, got {key!r}")
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
            raise ConfigError(f"unknown config field {key!r}; {hint}")
    return dict(data)


def read_yaml_mapping(path: Path) -> dict[str, object]:
    """The YAML mapping in the config file ``path``, or a one-line ConfigError; an empty file
    is ``{}``."""
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    if not path.is_file():
        raise ConfigError(f"config path {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(_one_line(f"cannot read config file {path}: {error}")) from None
    try:
        data = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as error:
        raise _yaml_error(str(path), error) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of field names to values, "
                          f"got {type(data).__name__}")
    return data


def write_yaml(data: Mapping[str, object], path: Path) -> None:
    """Write ``data`` as YAML in its own order, creating parent folders; atomic, so that a
    crash never leaves half a config."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, yaml.safe_dump(dict(data), sort_keys=False))


def resolve_threads(requested: int) -> int:
    """Number of torch threads to use: `requested` if positive, else the free cores, at least 1.

    Free cores are those this process may run on (CPU affinity, capped by a cgroup CPU quota)
    minus those busy with other work, measured over a quarter second from /proc/stat (the
    1-minute load average where that is unavailable: it lags, and still counts work that just
    ended). More threads than free cores makes torch's intra-op threads wait on each other and
    ran ten times slower here; work started later is not foreseen, so pin `torch_threads` when
    sharing a machine.
    """
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
        raise ValueError(f"torch_threads must be an integer >= 0, got {requested!r}")
    if requested > 0:
        return requested
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores - round(_busy_cores()))


def _busy_cores(window: float = 0.25) -> float:
    """Cores' worth of CPU time spent by all processes during the next ``window`` seconds."""
    try:
        before = _cpu_times()
        time.sleep(window)
        after = _cpu_times()
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0
    total = sum(after[0]) - sum(before[0])
    idle = (after[0][3] + after[0][4]) - (before[0][3] + before[0][4])  # idle + iowait
    return after[1] * (total - idle) / total if total > 0 else 0.0


def _cpu_times() -> tuple[list[int], int]:
    """The aggregate CPU time counters of /proc/stat and the number of CPUs listed there."""
    lines = Path("/proc/stat").read_text(encoding="ascii").splitlines()
    counters = [int(x) for x in lines[0].split()[1:]]
    cpus = sum(1 for line in lines[1:] if line.startswith("cpu"))
    return counters, cpus


def _cgroup_cpu_quota() -> float | None:
    """CPU limit of this cgroup (v2 `cpu.max`), in cores, or None when unlimited or unknown."""
    try:
        fields = Path("/sys/fs/cgroup/cpu.max").read_text(encoding="ascii").split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = float(fields[0]), float(fields[1])
    except ValueError:
        return None
    return quota / period if period > 0 else None
