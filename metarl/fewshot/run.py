"""The run loop of supervised few-shot training: `metarl train` with a `problem:` preset.

A run directory looks like an RL one: ``config.yaml``, ``metrics.jsonl`` and TensorBoard
scalars, ``checkpoints/best.pt`` and ``checkpoints/last.pt`` (written atomically),
``summary.json`` with the minutes and peak memory, and ``curves.png`` (training loss and
validation score); the last two are written for the finished iterations of an interrupted
run too. ``best.pt`` holds the parameters with the best validation score (mean query MSE or
accuracy after ``eval_steps`` steps on ``val_tasks`` fixed validation tasks, every
``val_interval`` iterations and at the end); ``last.pt`` also
holds the optimiser state and the task generator's state, so that ``metarl train --resume``
continues exactly where an uninterrupted run would be (same parameters and metrics, bit for
bit, on the same machine and threads).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from metarl.atomic_write import write_json
from metarl.checkpoint import load_checkpoint, save_checkpoint
from metarl.confidence import ci95
from metarl.config import resolve_threads
from metarl.fewshot.config import FewShotConfig, save_fewshot_config
from metarl.fewshot.evaluation import adaptation_scores
from metarl.fewshot.learners import FewShotState, initial_state, training_step
from metarl.fewshot.problems import Problem, build_problem, task_generator
from metarl.logger import RunLogger
from metarl.outer import AdamState
from metarl.plots import plot_fewshot_curves
from metarl.resources import peak_rss_mb
from metarl.trainer import truncate_metrics

# Fields a resumed run may change: they touch neither the training maths nor its random stream
# (with a linear learning-rate schedule the iteration count sets the rates, so it may not change).
RESUMABLE_CHANGES = frozenset({"iterations", "max_minutes", "log_interval",
                               "checkpoint_interval", "eval_tasks", "data_path"})
ECHO_KEYS = ("train/loss", "train/accuracy", "val/mse", "val/accuracy", "outer/lr",
             "time/iteration_s")


class FewShotLogger(RunLogger):
    """The RL run logger (TensorBoard, metrics.jsonl, progress bar) with supervised metrics on
    the progress bar and the stdout lines."""

    echo_keys = ECHO_KEYS

    def postfix(self, metrics: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{metrics['train/loss']:.4g}"}


def validation_score(config: FewShotConfig, problem: Problem,
                     params: dict[str, torch.Tensor]) -> tuple[float, float]:
    """Mean and 95% half-width of the score after ``eval_steps`` steps on the fixed validation
    tasks (the same tasks at every validation of the run)."""
    steps = 0 if config.learner == "protonet" else config.eval_steps
    scores = adaptation_scores(config, problem, params, "val", config.val_tasks, steps,
                               task_generator(config.seed, "val"), final_only=True)[-1]
    return float(scores.mean()), ci95(scores)


def improves(config: FewShotConfig, score: float, best: float | None) -> bool:
    if best is None:
        return True
    return score < best if config.metric == "mse" else score > best


def checkpoint_payload(config: FewShotConfig, state: FewShotState, rng: torch.Tensor | None,
                       best_score: float | None, best_iteration: int | None,
                       train_seconds: float, val_score: float | None = None) -> dict[str, Any]:
    """What a checkpoint holds; with ``rng`` (the task generator's state) a run can resume."""
    return {
        "params": state.params,
        "adam": None if state.adam is None else state.adam._asdict(),
        "iteration": state.iteration,
        "rng": rng,
        "best_score": best_score,
        "best_iteration": best_iteration,
        "val_score": val_score,
        "train_seconds": train_seconds,
        "config": config.to_dict(),
    }


def check_resumable(config: FewShotConfig, payload: dict[str, Any]) -> None:
    """A one-line error unless ``payload`` came from a run of ``config`` that can continue."""
    if payload.get("rng") is None:
        raise ValueError("the checkpoint holds no random stream; it cannot be resumed exactly")
    allowed = set(RESUMABLE_CHANGES)
    if config.outer_lr_schedule == "linear":
        allowed.discard("iterations")
    saved = payload["config"]
    changed = sorted(k for k, v in config.to_dict().items()
                     if k not in allowed and saved.get(k) != v)
    if changed:
        raise ValueError(f"cannot resume with a different {', '.join(changed)} "
                         f"(only {', '.join(sorted(allowed))} may change)")
    if payload["iteration"] > config.iterations:
        raise ValueError(f"the run is at iteration {payload['iteration']}, beyond --iterations "
                         f"{config.iterations}")


def train(config: FewShotConfig, run_dir: Path, progress: bool = True,
          resume: bool = False) -> dict[str, Any]:
    """Train per ``config`` into ``run_dir`` (or continue it from ``last.pt`` with ``resume``);
    returns the summary also written to ``summary.json``.

    ``scratch`` trains nothing: both checkpoints hold the seeded initialisation.
    """
    torch.set_num_threads(resolve_threads(config.torch_threads))
    problem = build_problem(config)  # missing data fails here, before the run dir is touched
    generator = task_generator(config.seed, "train")
    checkpoints = run_dir / "checkpoints"
    best_score: float | None = None
    best_iteration: int | None = None
    seconds_before = 0.0
    if resume:
        payload = load_checkpoint(checkpoints / "last.pt")
        check_resumable(config, payload)
        adam = payload["adam"]
        state = FewShotState(payload["params"], None if adam is None else AdamState(**adam),
                             payload["iteration"])
        generator.set_state(payload["rng"])
        best_score, best_iteration = payload["best_score"], payload["best_iteration"]
        seconds_before = payload["train_seconds"]
        truncate_metrics(run_dir / "metrics.jsonl", state.iteration)
    else:
        state = initial_state(config, problem.initial_params())
    run_dir.mkdir(parents=True, exist_ok=True)
    save_fewshot_config(config, run_dir / "config.yaml")
    started = time.perf_counter()
    metrics: dict[str, float] = {}
    seconds: list[float] = []
    cpu_seconds: list[float] = []
    out_of_time = False

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - started

    def save_last(saved: FewShotState, rng: torch.Tensor) -> None:
        save_checkpoint(checkpoints / "last.pt", checkpoint_payload(
            config, saved, rng, best_score, best_iteration, elapsed()))

    def write_summary(final: FewShotState) -> dict[str, Any]:
        summary = {
            "problem": config.problem,
            "learner": config.learner,
            "iterations": final.iteration,
            "minutes": (time.perf_counter() - started) / 60,
            "train_minutes_total": elapsed() / 60,
            "seconds_per_iteration_median": statistics.median(seconds) if seconds else None,
            "cpu_seconds_per_iteration_median": (statistics.median(cpu_seconds) if cpu_seconds
                                                 else None),
            "peak_memory_mb": peak_rss_mb(),
            "torch_threads": torch.get_num_threads(),
            "stopped_by_time_budget": out_of_time and final.iteration < config.iterations,
            "final_train_loss": metrics.get("train/loss"),
            f"best_val_{config.metric}": best_score,
            "best_iteration": best_iteration,
        }
        write_json(run_dir / "summary.json", summary)
        plot_fewshot_curves(run_dir / "curves.png", {config.learner: run_dir / "metrics.jsonl"},
                            config.metric)
        return summary

    if config.learner == "scratch":
        save_checkpoint(checkpoints / "best.pt", checkpoint_payload(
            config, state, None, None, None, 0.0))
        save_last(state, generator.get_state())
        return write_summary(state)
    # What an interruption saves: the last state whose metrics were logged, and the
    # generator as it was then.
    logged = (state, generator.get_state())
    summary: dict[str, Any] = {}
    with FewShotLogger(run_dir, config.iterations, progress, initial=state.iteration
                       ) as logger:
        try:
            while state.iteration < config.iterations:
                began, cpu_began = time.perf_counter(), time.process_time()
                state, metrics = training_step(config, problem, state, generator)
                metrics["time/iteration_s"] = time.perf_counter() - began
                # CPU seconds of this process: on a machine shared with other work, the
                # time an iteration would take on free cores (with one torch thread).
                metrics["time/iteration_cpu_s"] = time.process_time() - cpu_began
                seconds.append(metrics["time/iteration_s"])
                cpu_seconds.append(metrics["time/iteration_cpu_s"])
                i = state.iteration
                out_of_time = 0 < config.max_minutes * 60 <= elapsed()
                due = config.val_interval and (i % config.val_interval == 0
                                               or i == config.iterations or out_of_time)
                if due:
                    began = time.perf_counter()
                    score, interval = validation_score(config, problem, state.params)
                    metrics[f"val/{config.metric}"] = score
                    metrics[f"val/{config.metric}_ci95"] = interval
                    metrics["time/validation_s"] = time.perf_counter() - began
                    if improves(config, score, best_score):
                        best_score, best_iteration = score, i
                        save_checkpoint(checkpoints / "best.pt", checkpoint_payload(
                            config, state, None, score, i, elapsed(), score))
                logger.log(i, metrics, i % config.log_interval == 0 or i == 1)
                logged = (state, generator.get_state())
                if i % config.checkpoint_interval == 0:
                    save_last(*logged)
                if out_of_time and i < config.iterations:
                    logger.bar.write(f"stopped at iteration {i}: the time budget of "
                                     f"{config.max_minutes:g} minutes is spent")
                    break
        finally:  # also when interrupted: the finished iterations keep checkpoint and summary
            if logged[0].iteration > 0:
                save_last(*logged)
                if not config.val_interval:  # no validation: the best parameters are the last
                    save_checkpoint(checkpoints / "best.pt", checkpoint_payload(
                        config, logged[0], None, None, None, elapsed()))
                summary = write_summary(logged[0])
    return summary
