"""Bad input, table-driven, through the real `metarl` command line: every bad config field value,
incompatible combination, unknown environment, missing data, foreign or damaged run directory
gives exit status != 0 and one line ``metarl: error: ...`` naming the problem, no traceback,
and leaves the run directory exactly as it was (or not created at all)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
import yaml

from metarl.config import TrainConfig

pytestmark = pytest.mark.faults


class Case(NamedTuple):
    argv: list[str]  # "{run}" and "{tmp}" are filled in
    code: int
    text: str  # expected in the error line
    files: dict[str, str] = {}  # written into {tmp} first


def _fresh(*args: str, code: int = 1, text: str, files: dict[str, str] | None = None) -> Case:
    return Case(["train", *args, "--run-dir", "{run}", "--no-progress"], code, text, files or {})


# Out-of-range values for every numeric field (and every choice and list field).
OUT_OF_RANGE = [
    *[(name, "0", ">= 1") for name in (
        "iterations", "meta_batch_size", "horizon", "inner_steps", "promp_steps", "cg_iters",
        "imaml_cg_iters", "ls_max_steps", "ray_workers", "log_interval", "checkpoint_interval",
        "eval_tasks", "eval_episodes")],
    ("episodes_per_task", "-1", ">= 1"),
    *[(name, "-1", ">= 0") for name in (
        "seed", "torch_threads", "meta_grad_chunk", "video_interval", "eval_steps",
        "eval_interval")],
    *[(name, "0", "> 0") for name in (
        "inner_lr", "max_kl", "baseline_ridge", "clip_eps", "inner_kl_coef", "prox_lambda")],
    ("inner_lr", ".nan", "> 0"), ("outer_lr", "-1e-3", "> 0"), ("inner_kl_target", "-1", "> 0"),
    ("cg_damping", "-1e-5", ">= 0"), ("prox_damping", "-1", ">= 0"),
    ("rollout_timeout_s", "-1", "finite and >= 0"), ("rollout_timeout_s", ".inf", "finite"),
    ("max_minutes", "-1", "finite and >= 0"), ("max_minutes", ".inf", "finite"),
    ("ls_backtrack", "1", "in (0, 1)"), ("ls_backtrack", "0", "in (0, 1)"),
    ("fvp_fraction", "0", "in (0, 1]"), ("fvp_fraction", "1.5", "in (0, 1]"),
    ("fvp_task_fraction", "0", "in (0, 1]"), ("fvp_task_fraction", "1.5", "in (0, 1]"),
    ("gamma", "1.01", "in [0, 1]"), ("gae_lambda", "-0.1", "in [0, 1]"),
    ("init_log_std", ".nan", "finite"), ("init_log_std", "-.inf", "finite"),
    ("hidden_sizes", "[64, 0]", "a list of integers >= 1"),
    ("activation", "sigmoid", "one of"), ("outer", "sgdm", "one of"),
    ("physics", "mujoco", "one of"), ("action_space", "normalised", "one of"),
    ("estimator", "reinforce", "one of"), ("curvature_dtype", "float16", "one of"),
    ("learner", "anil", "one of"), ("sampler", "mpi", "one of"), ("device", "tpu", "one of"),
    ("env_id", "' '", "a non-empty string"),
]

# One value of the wrong type for every field, by the field's type.
WRONG_TYPE = {int: ("1.5", "an integer"), float: ("fast", "a number"),
              bool: ("maybe", "true or false"), str: ("3", "a string"),
              tuple[int, ...]: ("fast", "a list of integers")}
FIELD_TYPES = typing.get_type_hints(TrainConfig)

CASES: dict[str, Case] = {
    **{f"{name}={value}": _fresh("navigation2d", f"--{name.replace('_', '-')}", value,
                                 text=f"{name} must be {need}")
       for name, value, need in OUT_OF_RANGE},
    **{f"{field.name} of the wrong type": _fresh(
        "navigation2d", f"--{field.name}", WRONG_TYPE[FIELD_TYPES[field.name]][0],
        text=f"{field.name} must be {WRONG_TYPE[FIELD_TYPES[field.name]][1]}")
       for field in dataclasses.fields(TrainConfig)},
    "a bool for an integer": _fresh("navigation2d", "--iterations", "true",
                                    text="iterations must be an integer, got True"),
    "a bool for a number": _fresh("navigation2d", "--inner-lr", "true",
                                  text="inner_lr must be a number, got True"),
    # incompatible combinations
    "reptile with trpo": _fresh("navigation2d", "--learner", "reptile",
                                text="learner reptile takes outer adam or sgd, not trpo"),
    "imaml with promp": _fresh("navigation2d", "--learner", "imaml", "--outer", "promp",
                               text="learner imaml takes outer adam or sgd, not promp"),
    "fomaml with dice": _fresh("navigation2d", "--learner", "fomaml", "--estimator", "dice",
                               text="estimator dice shapes second-order terms"),
    "first-order maml with lvc": _fresh("navigation2d", "--first-order", "true", "--estimator",
                                        "lvc", text="learner maml with first_order does not"),
    "bfloat16 curvature with dice": _fresh("navigation2d", "--estimator", "dice",
                                           "--curvature-dtype", "bfloat16",
                                           text="curvature_dtype must be 'float32' with"),
    "bfloat16 curvature for discrete actions": _fresh(
        "bandit_k5", "--curvature-dtype", "bfloat16",
        text="needs a Gaussian policy (this environment's actions are discrete)"),
    "reptile first-order": _fresh("navigation2d", "--learner", "reptile", "--outer", "adam",
                                  "--first-order", "true", text="first_order applies to maml"),
    # environments and data
    "unknown env id": _fresh("navigation2d", "--env-id", "metarl/Nowhere-v0",
                             text="unknown environment id 'metarl/Nowhere-v0'"),
    "unknown Meta-World task": _fresh("navigation2d", "--env-id", "metarl/ML1-fly-v3",
                                      text="unknown environment id 'metarl/ML1-fly-v3'"),
    "missing few-shot data": _fresh("omniglot_5w1s_maml", "--data-path", "{tmp}/no-data",
                                    text="Omniglot data not found in"),
    # config files
    "unknown field in a file": _fresh("{tmp}/c.yaml", text="unknown config field 'learning_rate'",
                                      files={"c.yaml": "iterations: 3\nlearning_rate: 0.1\n"}),
    "empty env id in a file": _fresh("{tmp}/c.yaml", text="env_id must be a non-empty string",
                                     files={"c.yaml": "env_id: ''\n"}),
    "invalid YAML": _fresh("{tmp}/c.yaml", text="invalid YAML in",
                           files={"c.yaml": "iterations: [3\n"}),
    "a YAML list": _fresh("{tmp}/c.yaml", text="must hold a mapping",
                          files={"c.yaml": "- iterations\n"}),
    "missing config file": _fresh("{tmp}/none.yaml", text="does not exist"),
    "a folder as config": _fresh("{tmp}", text="is not a file"),
    "unknown preset": _fresh("navigation3d", text="neither a file nor a preset"),
    # command lines (status 2)
    "unknown option": _fresh("navigation2d", "--learning-rate", "0.1", code=2,
                             text="unrecognized option --learning-rate"),
    "option without its value": _fresh("navigation2d", "--iterations", code=2,
                                       text="option --iterations needs a value"),
    "option given twice": _fresh("navigation2d", "--seed", "1", "--seed", "2", code=2,
                                 text="option --seed given more than once"),
    "no config": Case(["train", "--no-progress"], 2, "train needs a CONFIG"),
    "resume with a config": Case(["train", "navigation2d", "--resume", "{run}"], 2,
                                 "--resume takes the run directory alone"),
    # a device this machine lacks (only testable on one without CUDA)
    **({} if torch.cuda.is_available() else {
        "cuda without CUDA": _fresh("navigation2d", "--device", "cuda",
                                    text="device 'cuda' asked for, but torch")}),
}

# Cases against an existing, finished run directory: (prepare, argv, code, text).
RunCase = tuple[Callable[[Path], None], list[str], int, str]


def _edit_config(change: dict[str, Any]) -> Callable[[Path], None]:
    def prepare(run: Path) -> None:
        path = run / "config.yaml"
        path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **change},
                                       sort_keys=False))

    return prepare


def _write(name: str, text: str) -> Callable[[Path], None]:
    def prepare(run: Path) -> None:
        (run / name).write_text(text)

    return prepare


def _foreign_checkpoint(run: Path) -> None:
    shutil.copy(run.parent / "other" / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt")


def _nothing(run: Path) -> None:
    pass


RESUME = ["train", "--resume", "{run}", "--no-progress"]
RUN_CASES: dict[str, RunCase] = {
    "non-empty run dir for a new run": (_nothing, ["train", "navigation2d", "--run-dir", "{run}"],
                                        1, "already exists and is not empty"),
    "a file as run dir": (_nothing, ["train", "navigation2d", "--run-dir", "{run}/config.yaml"],
                          1, "exists and is not a directory"),
    "resume a folder that is no run": (_nothing, ["train", "--resume", "{run}/checkpoints"], 1,
                                       "is not a metarl run directory (no config.yaml)"),
    "resume with another learning rate": (_nothing, [*RESUME, "--inner-lr", "0.2"], 1,
                                          "cannot resume with a different inner_lr"),
    "resume with another network": (_nothing, [*RESUME, "--hidden-sizes", "[4]"], 1,
                                    "cannot resume with a different hidden_sizes"),
    "resume below the run's iteration": (_nothing, [*RESUME, "--iterations", "1"], 1,
                                         "the run is at iteration 2, beyond --iterations 1"),
    "config.yaml edited since the run started": (_edit_config({"gamma": 0.9}), RESUME, 1,
                                                 "cannot resume with a different gamma"),
    "a checkpoint from another run": (_foreign_checkpoint, RESUME, 1,
                                      "cannot resume with a different seed"),
    "config.yaml damaged": (_write("config.yaml", "seed: [\n"), RESUME, 1, "invalid YAML in"),
    "config.yaml with an unknown field": (_edit_config({"lr": 0.1}), RESUME, 1,
                                          "unknown config field 'lr'"),
    "a bad value on resume": (_nothing, [*RESUME, "--iterations", "0"], 1,
                              "iterations must be >= 1"),
}


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory: pytest.TempPathFactory, tiny: list[str]) -> Path:
    """A finished 2-iteration run ("run") and one of another seed ("other")."""
    from metarl.cli import main

    folder = tmp_path_factory.mktemp("finished")
    for name, seed in (("run", "0"), ("other", "1")):
        assert main(["train", "navigation2d", "--run-dir", str(folder / name), *tiny,
                     "--iterations", "2", "--seed", seed]) == 0
    return folder


def _argv(argv: list[str], run: Path, tmp: Path) -> list[str]:
    return [a.replace("{run}", str(run)).replace("{tmp}", str(tmp)) for a in argv]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_creates_nothing(cli: Any, tmp_path: Path, helpers: Any,
                                                   case: str) -> None:
    argv, code, text, files = CASES[case]
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    run = tmp_path / "run"
    got, err = cli(*_argv(argv, run, tmp_path))
    line = helpers.one_error_line(err)
    assert (got, text in line) == (code, True), line
    assert not run.exists()


@pytest.mark.parametrize("case", RUN_CASES)
def test_bad_input_against_a_run_dir_is_one_line_and_leaves_it_untouched(
    cli: Any, tmp_path: Path, helpers: Any, finished_runs: Path, case: str,
) -> None:
    prepare, argv, code, text = RUN_CASES[case]
    shutil.copytree(finished_runs, tmp_path / "runs")
    run = tmp_path / "runs" / "run"
    prepare(run)
    before = helpers.snapshot(run)
    got, err = cli(*_argv(argv, run, tmp_path))
    line = helpers.one_error_line(err)
    assert (got, text in line) == (code, True), line
    assert helpers.snapshot(run) == before


def test_every_numeric_and_choice_field_has_an_out_of_range_case() -> None:
    covered = {name for name, _, _ in OUT_OF_RANGE}
    checked = {name for name, kind in FIELD_TYPES.items()
               if kind in (int, float, tuple[int, ...])} | {
        "activation", "outer", "physics", "action_space", "estimator", "learner", "sampler",
        "env_id"}
    assert checked <= covered, sorted(checked - covered)


@pytest.mark.parametrize("case", ["unknown field in a file", "reptile with trpo",
                                  "option given twice"])
def test_a_real_process_exits_non_zero_with_one_line(tmp_path: Path, case: str) -> None:
    argv, code, text, files = CASES[case]
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    done = subprocess.run([sys.executable, "-m", "metarl", *_argv(argv, tmp_path / "run",
                                                                  tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == code
    assert done.stderr.count("\n") == 1 and text in done.stderr
    assert done.stderr.startswith("metarl: error: ") and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_the_table_is_as_long_as_reported() -> None:
    print(f"bad inputs: {len(CASES)} for a new run, {len(RUN_CASES)} against a run directory")
    assert len(CASES) + len(RUN_CASES) >= 100
