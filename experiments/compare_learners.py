"""Compare the meta-learners on a preset (2D navigation by default), several seeds each.

Each (learner, seed) trains in its own process (`python -m metarl train`, so that peak memory is
that run's own), is evaluated with `metarl eval` (return after 0..3 gradient steps on 40
held-out tasks), and the results land in OUT_DIR:

- `results.json`: per learner and seed, the eval returns, minutes, seconds per iteration and peak
  memory; per learner, the mean over seeds with a 95% CI over the seeds' task means;
- `results.md`: the same as a table;
- `returns_vs_steps.png`: return against gradient steps, one line per learner (the MAML
  paper's Figure 5 view).

    python experiments/compare_learners.py --out runs/compare --seeds 3 --iterations 500

Seconds per meta-iteration are measured apart from training, in one process that steps every
learner in turn (`--timing-iterations` iterations each after two warm-up iterations, from the
initial policy): training runs take minutes to hours each, and the machine's load changes
between them, so their own timings (also kept in results.json) do not compare. Peak memory is
each training process's own.

A finished (learner, seed) run is reused when its eval.json exists and a stopped one resumes from
its last checkpoint (`metarl train --resume`), so an interrupted comparison continues where it
stopped. Runs go seed by seed (every learner's seed 0 first) unless --learners picks some.
`--report-only` trains nothing and tabulates the runs already evaluated.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.cli import resolve_config_path, split_overrides
from metarl.config import load_config
from metarl.rl.meta_learner import MetaLearner
from metarl.run.plots import plot_returns_vs_steps

# name -> config overrides; hyperparameters beyond the preset's are this script's choices
LEARNERS: dict[str, list[str]] = {
    "MAML-TRPO": [],
    "FOMAML-TRPO": ["--learner", "fomaml"],
    "MAML-TRPO (DiCE)": ["--estimator", "dice"],
    "MAML-ProMP (LVC)": ["--outer", "promp", "--estimator", "lvc", "--outer-lr", "1e-3"],
    "Reptile (Adam)": ["--learner", "reptile", "--outer", "adam", "--outer-lr", "1e-2",
                       "--inner-steps", "2"],
    "iMAML (Adam)": ["--learner", "imaml", "--outer", "adam", "--outer-lr", "1e-2",
                     "--inner-steps", "5"],
}


def run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def train_and_evaluate(preset: str, name: str, seed: int, out: Path, extra: list[str],
                       report_only: bool = False) -> Path | None:
    """The evaluated run directory, or None (reported) if training or evaluation failed: one
    learner's failure does not stop the comparison of the others. With ``report_only`` nothing
    is trained: a run not yet evaluated is left out."""
    run_dir = out / f"{name.replace(' ', '_').replace('(', '').replace(')', '')}-seed{seed}"
    if (run_dir / "eval.json").is_file():
        return run_dir
    if report_only:
        print(f"not finished, left out: {name} seed {seed}", flush=True)
        return None
    metarl = [sys.executable, "-m", "metarl"]
    try:
        if ((run_dir / "checkpoints" / "last.pt").is_file()
                and not (run_dir / "summary.json").is_file()):
            run([*metarl, "train", "--resume", str(run_dir), "--no-progress"])  # stopped midway
        elif not (run_dir / "summary.json").is_file():
            if run_dir.exists():
                shutil.rmtree(run_dir)  # stopped before its first checkpoint: nothing to keep
            run([*metarl, "train", preset, "--run-dir", str(run_dir), "--seed", str(seed),
                 "--no-progress", *LEARNERS[name], *extra])
        run([*metarl, "eval", str(run_dir), "--no-progress"])
    except subprocess.CalledProcessError as error:
        print(f"FAILED: {name} seed {seed} (exit status {error.returncode}); its error is "
              "above, its run directory kept", flush=True)
        return None
    return run_dir


def time_learners(preset: str, names: list[str], iterations: int, extra: list[str]
                  ) -> dict[str, float]:
    """Median seconds per meta-iteration of each learner, all measured in this process in turn
    (iteration i of every learner before iteration i + 1 of any), so all see the same load."""
    torch.set_num_threads(1)
    learners: dict[str, MetaLearner] = {}
    states: dict[str, Any] = {}
    times: dict[str, list[float]] = {}
    for name in names:
        _, overrides = split_overrides([*LEARNERS[name], *extra], set())
        overrides.pop("torch_threads", None)
        learners[name] = MetaLearner(load_config(resolve_config_path(preset), overrides))
        states[name] = learners[name].initial_state()
        times[name] = []
    warmup = 2
    for index in range(warmup + iterations):
        for name in names:
            start = time.perf_counter()
            states[name], _ = learners[name].iteration(states[name])
            if index >= warmup:
                times[name].append(time.perf_counter() - start)
        print(f"timing: iteration {index + 1} of {warmup + iterations}", flush=True)
    for learner in learners.values():
        learner.close()
    return {name: float(np.median(t)) for name, t in times.items()}


def summarize(runs: dict[str, list[Path | None]]) -> dict[str, Any]:
    """Per learner, the mean over its finished seeds (``seeds`` of ``seeds_run``)."""
    table: dict[str, Any] = {}
    for name, maybe_dirs in runs.items():
        dirs = [d for d in maybe_dirs if d is not None]
        if not dirs:
            continue
        evals = [json.loads((d / "eval.json").read_text()) for d in dirs]
        summaries = [json.loads((d / "summary.json").read_text()) for d in dirs]
        means = np.array([e["mean"] for e in evals])  # [seeds, steps]
        spread = means.std(axis=0, ddof=1) if len(dirs) > 1 else np.zeros(means.shape[1])
        table[name] = {
            "steps": evals[0]["steps"],
            "seeds": len(dirs),
            "seeds_run": len(maybe_dirs),
            "mean": means.mean(axis=0).tolist(),
            "ci95_over_seeds": (1.96 * spread / math.sqrt(len(dirs))).tolist(),
            "training_seconds_per_iteration": float(np.mean(
                [s["seconds_per_iteration_median"] for s in summaries])),
            "peak_memory_mb": float(np.max([s["peak_memory_mb"] for s in summaries])),
            "minutes": float(np.mean([s["minutes"] for s in summaries])),
            "per_seed": [{"run_dir": str(d), "mean": e["mean"], "ci95_over_tasks": e["ci95"]}
                         for d, e in zip(dirs, evals)],
        }
    return table


def seconds_text(row: dict[str, Any]) -> str:
    seconds = row.get("seconds_per_iteration")
    return "not measured" if seconds is None else f"{seconds:.3f}"


def write_markdown(table: dict[str, Any], path: Path) -> None:
    steps = next(iter(table.values()))["steps"]
    header = "| learner | " + " | ".join(f"step {s}" for s in steps)
    header += " | seeds | s / iteration (paired) | peak MB |"
    lines = [header, "|" + " --- |" * (len(steps) + 4)]
    for name, row in table.items():
        cells = [f"{m:.2f} ({c:.2f})" for m, c in zip(row["mean"], row["ci95_over_seeds"])]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['seeds']} of "
                     f"{row['seeds_run']} | {seconds_text(row)} | {row['peak_memory_mb']:.0f} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="navigation2d")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--learners", nargs="*", default=list(LEARNERS), choices=list(LEARNERS))
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: tabulate the runs already evaluated")
    parser.add_argument("--timing-iterations", type=int, default=20,
                        help="meta-iterations per learner in the paired timing (0: skip it)")
    args, extra = parser.parse_known_args()  # anything else is passed on to `metarl train`
    args.out.mkdir(parents=True, exist_ok=True)
    # seed-major order: a comparison cut short still covers every learner
    runs: dict[str, list[Path | None]] = {name: [] for name in args.learners}
    for seed in range(args.seeds):
        for name in args.learners:
            runs[name].append(train_and_evaluate(args.preset, name, seed, args.out, extra,
                                                 args.report_only))
    table = summarize(runs)
    if not table:
        sys.exit("no run finished: nothing to compare")
    if args.timing_iterations > 0:
        paired = time_learners(args.preset, list(table), args.timing_iterations, extra)
        for name, seconds in paired.items():
            table[name]["seconds_per_iteration"] = seconds
    (args.out / "results.json").write_text(json.dumps(table, indent=2) + "\n")
    write_markdown(table, args.out / "results.md")
    plot_returns_vs_steps(args.out / "returns_vs_steps.png", table,
                          title=f"{args.preset}: mean over {args.seeds} seeds, 95% CI over seeds")
    print((args.out / "results.md").read_text())
    print(f"results: {args.out / 'results.json'}, plot: {args.out / 'returns_vs_steps.png'}")


if __name__ == "__main__":
    main()
