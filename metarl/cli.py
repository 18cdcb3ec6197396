"""The `metarl` command: train, evaluate, benchmark and render videos from a YAML preset.

    metarl train navigation2d --run-dir runs/nav --meta-batch-size 10
    metarl eval runs/nav
    metarl bench navigation2d --iterations 5
    metarl video runs/nav --tasks 2

Every error is reported as one line `metarl: error: ...` on stderr, never a traceback: exit code 2
for a malformed command line, 1 for a bad config or file, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import yaml

from metarl import __version__
from metarl.config import (
    DEVICES,
    RESUMABLE_FIELDS,
    ConfigError,
    TrainConfig,
    load_config,
    read_yaml_mapping,
)
from metarl.fewshot.config import (
    FEWSHOT_RESUMABLE_FIELDS,
    FewShotConfig,
    fewshot_field_names,
    is_fewshot_config,
    load_fewshot_config,
)
from metarl.run.allocator import keep_freed_memory

__all__ = ["main", "resolve_config_path", "split_overrides"]

DEFAULT_PRESET = "navigation2d"
# Commands whose trailing `--<field> VALUE` pairs override TrainConfig fields.
_OVERRIDE_COMMANDS = ("train", "bench", "search", "presets")


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class _UsageError(Exception):
    """A malformed command line (argparse's or ours); reported with exit code 2."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that raises instead of printing the usage text and exiting."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


_OVERRIDE_HELP = (
    "Any config field can be overridden with --<field-name> VALUE, e.g. --meta-batch-size 10, "
    "--outer-lr 1e-3, --first-order true, --hidden-sizes '[32, 32]' (values are read as YAML)."
)


def _flags(fields: frozenset[str]) -> str:
    return ", ".join(f"--{name.replace('_', '-')}" for name in sorted(fields))


def _add_device_argument(parser: argparse.ArgumentParser) -> None:
    """Where `eval`, `compare` and `video` run an RL policy and its adaptation."""
    parser.add_argument(
        "--device",
        choices=DEVICES,
        help="RL runs: where the policy and its adaptation run (default: the run's device; "
        "the cpu, with a note, when that is cuda and this machine has none)",
    )
    parser.add_argument(
        "--torch-threads",
        type=_count(0),
        help="CPU threads for torch (default: the run's torch_threads; 0: the free cores), e.g. "
        "1 beside a training run on a shared machine",
    )


def _add_held_out_arguments(parser: argparse.ArgumentParser) -> None:
    """The evaluation protocol's options, shared by `eval` and `compare`."""
    parser.add_argument(
        "--tasks", type=_count(1), help="held-out tasks (default: the run's eval_tasks)"
    )
    parser.add_argument(
        "--steps", type=_count(0), help="inner gradient steps (default: the run's eval_steps)"
    )
    parser.add_argument(
        "--episodes",
        type=_count(1),
        help="RL runs: episodes per task and step (default: the run's eval_episodes)",
    )
    parser.add_argument(
        "--seed", type=_count(0), default=1000, help="task and sampling seed (default: 1000)"
    )
    parser.add_argument(
        "--batch-unit",
        choices=("episodes", "steps"),
        help="RL runs: count each step's batch in episodes, or in steps (whole episodes until "
        "EPISODES x horizon steps, the MAML paper's test protocol) (default: the run's "
        "batch_unit)",
    )
    parser.add_argument(
        "--task-set",
        choices=("sampled", "maml_paper"),
        help="RL runs: the held-out tasks, drawn with --seed (sampled) or the MAML paper's own "
        "test tasks (maml_paper; 2D navigation, HalfCheetah and Ant velocity and direction) "
        "(default: the run's eval_task_set)",
    )


def _build_parser() -> tuple[_Parser, dict[str, _Parser]]:
    """The top-level parser and its subcommand parsers by name."""
    parser = _Parser(
        prog="metarl",
        description="Meta-reinforcement learning: train, evaluate and benchmark MAML-RL.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"metarl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="meta-train a policy",
        description="Meta-train a policy; writes config, metrics and checkpoints to the run dir.",
        epilog=_OVERRIDE_HELP,
        allow_abbrev=False,
    )
    train.add_argument(
        "config", metavar="CONFIG", nargs="?", help="YAML file or preset name in experiments/"
    )
    train.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue RUN_DIR from its last checkpoint, exactly (its config is reused; an RL "
        f"run may change only {_flags(RESUMABLE_FIELDS)}; a few-shot run only "
        f"{_flags(FEWSHOT_RESUMABLE_FIELDS)})",
    )
    train.add_argument(
        "--run-dir",
        type=Path,
        help="output folder; must not exist or be empty (default: runs/<config>-<time>)",
    )
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    evaluate = commands.add_parser(
        "eval",
        help="evaluate a trained run on held-out tasks",
        description="Evaluate a run's meta-policy after 0..STEPS inner steps on new tasks.",
        allow_abbrev=False,
    )
    evaluate.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="folder of a train run")
    _add_held_out_arguments(evaluate)
    evaluate.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        help="which checkpoint to evaluate (default: an RL run's eval_checkpoint; best for a "
        "few-shot run)",
    )
    evaluate.add_argument(
        "--data-path",
        help="few-shot runs: the folder holding omniglot/ (default: the one the run used)",
    )
    _add_device_argument(evaluate)
    evaluate.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    bench = commands.add_parser(
        "bench",
        help="time training iterations",
        description="Time a few training iterations and print the timings as JSON.",
        epilog=_OVERRIDE_HELP,
        allow_abbrev=False,
    )
    bench.add_argument(
        "config",
        metavar="CONFIG",
        nargs="?",
        default=DEFAULT_PRESET,
        help=f"YAML file or preset name (default: {DEFAULT_PRESET})",
    )
    bench.add_argument(
        "--iterations", type=_count(1), default=5, help="timed iterations (default: 5)"
    )
    bench.add_argument("--repeats", type=_count(1), default=3, help="repetitions (default: 3)")
    bench.add_argument(
        "--throughput",
        action="store_true",
        help="instead, measure sampling throughput (env steps/s) of the batched environment "
        "against gymnasium's Sync/AsyncVectorEnv and the physics limit",
    )
    bench.add_argument(
        "--async-envs",
        type=_count(1),
        default=8,
        help="sub-environments of the AsyncVectorEnv in --throughput (default: 8)",
    )

    video = commands.add_parser(
        "video",
        help="render the meta-policy adapting to held-out tasks",
        description="Render a run's meta-policy before adaptation and after 1..STEPS inner steps "
        "on held-out tasks, side by side (rows: tasks, columns: steps), offscreen, to an mp4.",
        allow_abbrev=False,
    )
    video.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="folder of a train run")
    video.add_argument("--tasks", type=_count(1), default=2, help="held-out tasks (default: 2)")
    video.add_argument(
        "--steps", type=_count(0), help="inner gradient steps (default: the run's eval_steps)"
    )
    video.add_argument(
        "--episodes",
        type=_count(1),
        default=20,
        help="episodes per task and step that drive the adaptation (default: 20)",
    )
    video.add_argument(
        "--seed", type=_count(0), default=1000, help="task and sampling seed (default: 1000)"
    )
    video.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        help="which checkpoint to render (default: the run's eval_checkpoint)",
    )
    video.add_argument(
        "--out", type=Path, help="output .mp4 or .gif file (default: RUN_DIR/video.mp4)"
    )
    video.add_argument("--gif", action="store_true", help="also write a GIF beside the mp4")
    video.add_argument(
        "--size", type=_count(16), default=240, help="pixels per panel side (default: 240)"
    )
    video.add_argument(
        "--shadows",
        action="store_true",
        help="MuJoCo shadows and reflections (about 3x slower without a GPU)",
    )
    _add_device_argument(video)
    video.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    compare = commands.add_parser(
        "compare",
        help="evaluate a run against the pretrained, random and oracle baselines",
        description="Evaluate a run and the MAML paper's baselines on the same held-out tasks "
        "after 0..STEPS inner steps; write compare.json, compare.md and compare.png. Baselines "
        "are trained once into RUN_DIR/baselines/ and reused.",
        allow_abbrev=False,
    )
    compare.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="folder of a train run")
    compare.add_argument(
        "--baselines",
        default="pretrained,random,oracle",
        help="comma-separated subset of pretrained, random, oracle (default: all three)",
    )
    compare.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/compare; "
                         "another --checkpoint or --task-set than the run's adds its name, "
                         "e.g. RUN_DIR/compare_last_maml_paper)")
    _add_held_out_arguments(compare)
    compare.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        help="the run's checkpoint set beside the baselines (default: its eval_checkpoint)",
    )
    compare.add_argument(
        "--pretrained-iterations",
        type=_count(1),
        help="meta-iterations of the pretrained baseline (default: the run's iterations)",
    )
    compare.add_argument(
        "--oracle-timesteps",
        type=_count(1),
        help="PPO environment steps of the oracle (default: metarl.rl.oracle's per-family budget)",
    )
    compare.add_argument(
        "--baseline-inner-lr",
        type=float,
        help="first fine-tuning step size of the pretrained and random baselines, later steps "
        "half of it (default: the run's inner_lr)",
    )
    _add_device_argument(compare)
    compare.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    search = commands.add_parser(
        "search",
        help="search a few-shot network's cell (Auto-Meta)",
        description="Progressive cell search for a Reptile-trained Omniglot network (Auto-Meta); "
        "writes results.json/.csv, rounds.json, best_cell.txt and presets that retrain the best "
        "cell and a parameter-matched 4-block network. Resumes a killed search in OUT.",
        allow_abbrev=False,
    )
    search.add_argument("config", metavar="CONFIG", help="search YAML file or preset name")
    search.epilog = ("Any search config field can be overridden with --<field-name> VALUE, e.g. "
                     "--max-blocks 2, --iterations 100 (values are read as YAML).")
    search.add_argument("--out", "--run-dir", dest="out", type=Path,
                        help="output folder (default: runs/<config>); --run-dir as in train")
    search.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    status = commands.add_parser(
        "status",
        help="how far runs are, how long the rest takes, what they learned",
        description="For each run folder: whether a process trains it now, the iteration, the "
        "training time against its budget, the recent seconds per iteration and the time to "
        "go, the recent training returns and the evaluation, if any. Reads the folder only; "
        "safe while the run trains.",
        allow_abbrev=False,
    )
    status.add_argument("run_dirs", metavar="RUN_DIR", nargs="+", type=Path,
                        help="a run folder, or a folder of runs (e.g. runs/): each run in it")

    presets = commands.add_parser(
        "presets",
        help="list the presets, or print one's resolved config",
        description="List the presets in experiments/ with their kind (rl, few-shot, search) "
        "and the first line of their comment; with a NAME, print that preset's config with "
        "every field resolved (defaults and --<field> VALUE overrides applied).",
        epilog=_OVERRIDE_HELP,
        allow_abbrev=False,
    )
    presets.add_argument("name", metavar="NAME", nargs="?", help="a preset or YAML file")
    return parser, {"train": train, "eval": evaluate, "bench": bench, "video": video,
                    "compare": compare, "search": search, "status": status, "presets": presets}


def split_overrides(args: Sequence[str], known_flags: set[str], fields: set[str] | None = None
                    ) -> tuple[list[str], dict[str, str]]:
    """Split `args` into those for argparse and `--<field> VALUE` config overrides.

    A flag that is not in `known_flags` must name a TrainConfig field (dashes or underscores);
    its value is the next argument, or follows `=`. Overrides may appear anywhere, so that
    `--iterations 50 CONFIG` and `CONFIG --iterations 50` are the same.
    """
    if fields is None:
        fields = _run_field_names()
    kept: list[str] = []
    overrides: dict[str, str] = {}
    index = 0
    while index < len(args):
        token = args[index]
        index += 1
        if token == "--":
            kept.extend(args[index - 1 :])
            break
        flag, has_value, value = token.partition("=")
        if not token.startswith("--") or flag in known_flags:
            kept.append(token)
            continue
        name = flag[2:].replace("-", "_")
        if name not in fields:
            raise _UsageError(f"unrecognized option {flag} (not a command flag nor a config field)")
        if not has_value:
            if index >= len(args) or args[index].startswith("--"):
                raise _UsageError(f"option {flag} needs a value")
            value = args[index]
            index += 1
        if name in overrides:
            raise _UsageError(f"option {flag} given more than once")
        overrides[name] = value
    return kept, overrides


def _run_field_names() -> set[str]:
    return {field.name for field in dataclasses.fields(TrainConfig)} | fewshot_field_names()


def _search_field_names() -> set[str]:
    from metarl.autometa.config import SearchConfig  # imports torch: only for `metarl search`

    return {field.name for field in dataclasses.fields(SearchConfig)}


def _experiments_dir() -> Path:
    # The presets live in the repository's experiments/ folder, beside the metarl package folder.
    return Path(__file__).resolve().parent.parent / "experiments"


def resolve_config_path(spec: str) -> Path:
    """A config file path, or a preset name (`navigation2d` or `navigation2d.yaml`) to resolve."""
    path = Path(spec)
    if path.exists() or len(path.parts) > 1:
        return path
    experiments = _experiments_dir()
    name = spec if spec.endswith((".yaml", ".yml")) else f"{spec}.yaml"
    preset = experiments / name
    if preset.is_file():
        return preset
    if not experiments.is_dir():
        raise ConfigError(
            f"config {spec!r} is not a file, and no experiments/ folder of presets was found "
            f"at {experiments}"
        )
    names = sorted(p.stem for p in experiments.glob("*.yaml"))
    close = difflib.get_close_matches(Path(name).stem, names, n=3)
    hint = (f"did you mean {' or '.join(close)}?" if close
            else f"the presets are the YAML files in {experiments}")
    raise ConfigError(f"config {spec!r} is neither a file nor a preset; {hint}")


def _load(spec: str, overrides: dict[str, str]) -> tuple[Path, TrainConfig | FewShotConfig]:
    path = resolve_config_path(spec)
    if is_fewshot_config(path):  # supervised few-shot presets have `problem:` (RL: env_id)
        return path, load_fewshot_config(path, overrides)
    if _is_search_config(path):
        raise ConfigError(f"{path.name} is an architecture search config: run it with "
                          f"metarl search {spec}")
    return path, load_config(path, overrides)


def _is_search_config(path: Path) -> bool:
    try:
        fields = read_yaml_mapping(path)
    except ConfigError:
        return False
    return "operators" in fields or "max_blocks" in fields


def _train(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    if args.resume is not None:
        return _resume(args, overrides)
    if args.config is None:
        raise _UsageError("train needs a CONFIG, or --resume RUN_DIR")
    path, config = _load(args.config, overrides)
    run_dir: Path = args.run_dir or Path("runs") / f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if run_dir.exists():
        if not run_dir.is_dir():
            raise ConfigError(f"run directory {run_dir} exists and is not a directory")
        # a lone *.tmp is an atomic write that a kill cut short, before the run wrote anything
        if any(not entry.name.endswith(".tmp") for entry in run_dir.iterdir()):
            raise ConfigError(
                f"run directory {run_dir} already exists and is not empty; choose another --run-dir"
            )

    if isinstance(config, FewShotConfig):
        from metarl.fewshot.run import train as train_fewshot

        train_fewshot(config, run_dir, progress=not args.no_progress)
    else:
        from metarl.rl.trainer import train

        train(config, run_dir, progress=not args.no_progress)
    print(f"run directory: {run_dir}")
    print(f"tensorboard:   tensorboard --logdir {run_dir}")
    print(f"evaluate:      metarl eval {run_dir}")
    return 0


def _resume(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    run_dir: Path = args.resume
    if args.config is not None or args.run_dir is not None:
        raise _UsageError("--resume takes the run directory alone: no CONFIG, no --run-dir")
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir} is not a metarl run directory (no config.yaml)")
    _, config = _load(str(run_dir / "config.yaml"), overrides)
    if isinstance(config, FewShotConfig):
        from metarl.fewshot.run import train as train_fewshot

        train_fewshot(config, run_dir, progress=not args.no_progress, resume=True)
    else:
        from metarl.rl.trainer import train

        train(config, run_dir, progress=not args.no_progress, resume=True)
    print(f"run directory: {run_dir}")
    return 0


def _eval(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    run_dir: Path = args.run_dir
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} does not exist")
    if is_fewshot_config(run_dir / "config.yaml"):
        for flag, value in (("--episodes", args.episodes), ("--batch-unit", args.batch_unit),
                            ("--task-set", args.task_set)):
            if value is not None:
                raise ConfigError(f"{flag} applies to RL runs; a supervised run has no episodes")
        if args.device is not None:
            raise ConfigError("--device applies to RL runs, not to a supervised few-shot run")
        from metarl.fewshot.evaluation import evaluate_run as evaluate_fewshot_run

        evaluate_fewshot_run(run_dir, tasks=args.tasks, steps=args.steps, seed=args.seed,
                             checkpoint=args.checkpoint or "best",
                             progress=not args.no_progress,
                             data_path=args.data_path, torch_threads=args.torch_threads)
        return 0
    if args.data_path is not None:
        raise ConfigError("--data-path applies to few-shot runs; an RL run reads no data")

    from metarl.rl.evaluation import evaluate_run

    evaluate_run(
        run_dir,
        tasks=args.tasks,
        steps=args.steps,
        episodes=args.episodes,
        seed=args.seed,
        checkpoint=args.checkpoint,
        progress=not args.no_progress,
        device=args.device,
        batch_unit=args.batch_unit,
        task_set=args.task_set,
        torch_threads=args.torch_threads,
    )
    return 0


def _bench(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    _, config = _load(args.config, overrides)
    if isinstance(config, FewShotConfig):
        raise ConfigError("metarl bench times RL presets; a supervised run's summary.json "
                          "holds its seconds per iteration")

    if args.throughput:
        from metarl.rl.throughput import run_throughput

        result = run_throughput(config, async_envs=args.async_envs)
    else:
        from metarl.rl.bench import run_bench

        result = run_bench(config, iterations=args.iterations, repeats=args.repeats)
    print(json.dumps(result, indent=2))
    return 0


def _video(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    run_dir: Path = args.run_dir
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} does not exist")
    if is_fewshot_config(run_dir / "config.yaml"):
        raise ConfigError("metarl video films RL policies; this is a supervised few-shot run")

    from metarl.rl.video import record_video

    path = record_video(
        run_dir,
        tasks=args.tasks,
        steps=args.steps,
        episodes=args.episodes,
        seed=args.seed,
        checkpoint=args.checkpoint,
        out=args.out,
        gif=args.gif,
        size=args.size,
        shadows=args.shadows,
        progress=not args.no_progress,
        device=args.device,
        torch_threads=args.torch_threads,
    )
    print(f"video: {path}")
    if args.gif and path.suffix.lower() != ".gif":
        print(f"gif:   {path.with_suffix('.gif')}")
    return 0


def _compare(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    run_dir: Path = args.run_dir
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} does not exist")
    if is_fewshot_config(run_dir / "config.yaml"):
        raise ConfigError(f"{run_dir} is a supervised few-shot run; metarl compare takes RL "
                          "runs (its baselines are in the few-shot presets: *_pretrained, "
                          "*_scratch)")

    from metarl.rl.compare import compare_run, parse_baselines

    compare_run(
        run_dir,
        parse_baselines(args.baselines),
        out=args.out,
        tasks=args.tasks,
        steps=args.steps,
        episodes=args.episodes,
        seed=args.seed,
        pretrained_iterations=args.pretrained_iterations,
        oracle_timesteps=args.oracle_timesteps,
        progress=not args.no_progress,
        baseline_inner_lr=args.baseline_inner_lr,
        device=args.device,
        batch_unit=args.batch_unit,
        task_set=args.task_set,
        checkpoint=args.checkpoint,
        torch_threads=args.torch_threads,
    )
    return 0


def _search(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    from metarl.autometa.config import load_search_config
    from metarl.autometa.search import format_results, run_search

    path = resolve_config_path(args.config)
    config = load_search_config(path, overrides)
    out: Path = args.out or Path("runs") / path.stem
    summary = run_search(config, out, progress=not args.no_progress)
    print(format_results(summary, json.loads((out / "results.json").read_text())))
    print(f"results: {out / 'results.csv'}")
    for preset in summary["retrain_presets"]:
        run_dir = Path("runs") / f"{path.stem}_{Path(preset).stem}"
        print(f"retrain: metarl train {preset} --run-dir {run_dir} && metarl eval {run_dir}")
    return 0


def _status(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    from metarl.run.status import format_status, read_status, run_folders

    code, shown = 0, 0
    for path in args.run_dirs:
        try:
            texts = [format_status(read_status(run_dir)) for run_dir in run_folders(path)]
        except (OSError, ValueError, yaml.YAMLError) as error:  # the other runs still report
            _report(str(error))
            code = 1
            continue
        for text in texts:
            print(("\n" if shown else "") + text)
            shown += 1
    return code


def _presets(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    if args.name is not None:
        path = resolve_config_path(args.name)
        if _is_search_config(path):
            from metarl.autometa.config import load_search_config

            resolved = load_search_config(path, overrides).to_dict()
        else:
            resolved = _load(args.name, overrides)[1].to_dict()
        print(yaml.safe_dump(resolved, sort_keys=False), end="")
        return 0
    if overrides:
        raise _UsageError("field overrides apply to one preset: metarl presets NAME --<field> V")
    experiments = _experiments_dir()
    if not experiments.is_dir():
        raise ConfigError(f"no experiments/ folder of presets at {experiments}")
    rows = []
    for path in sorted(experiments.glob("*.yaml")):
        fields = read_yaml_mapping(path)
        kind = ("few-shot" if "problem" in fields
                else "search" if _is_search_config(path) else "rl")
        comment = next((line.lstrip("# ").strip() for line in path.read_text().splitlines()
                        if line.startswith("#") and line.lstrip("# ").strip()), "")
        rows.append((path.stem, kind, comment))
    width = max(len(name) for name, _, _ in rows)
    for name, kind, comment in rows:
        shown = comment if len(comment) <= 80 else comment[:77] + "..."
        print(f"{name:<{width}}  {kind:<8}  {shown}")
    print(f"\nmetarl train PRESET (rl, few-shot) or metarl search PRESET (search); "
          f"the files are in {experiments}")
    return 0


_HANDLERS: dict[str, Callable[[argparse.Namespace, dict[str, str]], int]] = {
    "train": _train,
    "eval": _eval,
    "bench": _bench,
    "video": _video,
    "compare": _compare,
    "search": _search,
    "status": _status,
    "presets": _presets,
}


def _report(message: str) -> None:
    print(f"metarl: error: {' '.join(message.split())}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the `metarl` command with `argv` (default: `sys.argv[1:]`); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = _build_parser()
    if not args:  # bare `metarl`: what it can do
        print(parser.format_help())
        return 2
    try:
        # The subcommand is the first argument that is not a top-level flag.
        position = next((i for i, arg in enumerate(args) if not arg.startswith("-")), len(args))
        overrides: dict[str, str] = {}
        if position < len(args) and args[position] in _OVERRIDE_COMMANDS:
            subparser = subparsers[args[position]]
            flags = {flag for action in subparser._actions for flag in action.option_strings}
            fields = None  # the RL and few-shot fields
            if args[position] in ("search", "presets"):
                fields = _search_field_names() | (
                    _run_field_names() if args[position] == "presets" else set())
            rest, overrides = split_overrides(args[position + 1 :], flags, fields)
            args = [*args[: position + 1], *rest]
        namespace = parser.parse_args(args)
    except _UsageError as error:
        _report(str(error))
        return 2
    except SystemExit as exit_:  # --help and --version
        return exit_.code if isinstance(exit_.code, int) else 0

    keep_freed_memory()  # a fifth less time per 2D-navigation iteration (metarl.run.allocator)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a scheduler stopping the job) ends a run like Ctrl-C: checkpoint, then exit
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        return _HANDLERS[namespace.command](namespace, overrides)
    except _UsageError as error:
        _report(str(error))
        return 2
    except KeyboardInterrupt as interrupt:  # a run's says where it stopped and how to resume
        _report(str(interrupt) or "interrupted")
        return 130
    except BrokenPipeError:  # the reader left (`metarl status runs/ | head`): nothing to report
        # Python would complain again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command cut off by a closed pipe
    except (ValueError, OSError, yaml.YAMLError) as error:
        # ConfigError is a ValueError and FileNotFoundError an OSError.
        _report(str(error) or type(error).__name__)
        return 1
