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

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from metarl.config import resolve_threads
from metarl.core.adam import AdamState
from metarl.core.confidence import ci95
from metarl.fewshot.config import (
    FEWSHOT_RESUMABLE_FIELDS,
    FewShotConfig,
    save_fewshot_config,
)
from metarl.fewshot.evaluation import adaptation_scores
from metarl.fewshot.learners import FewShotState, initial_state, training_step
from metarl.fewshot.problem_factory import build_problem
from metarl.fewshot.problems import Problem, omniglot_root, task_generator
from metarl.run.atomic_write import write_json
from metarl.run.checkpoint import load_checkpoint, save_checkpoint
from metarl.run.logger import RunLogger
from metarl.run.loop import LoopSettings, run_loop
from metarl.run.plots import plot_fewshot_curves
from metarl.run.resources import peak_rss_mb
from metarl.run.resume import check_iteration, check_same_run, truncate_metrics

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
    allowed = set(FEWSHOT_RESUMABLE_FIELDS)
    if config.outer_lr_schedule == "linear":
        allowed.discard("iterations")
    check_same_run(config.to_dict(), payload["config"], FewShotConfig().to_dict(), allowed)
    check_iteration(payload["iteration"], config.iterations)


class FewShotRun:
    """The few-shot run as the shared loop drives it: one outer step per iteration, a
    validation every ``val_interval`` iterations (and on the last), the best checkpoint by
    validation score."""

    def __init__(self, config: FewShotConfig, problem: Problem, run_dir: Path,
                 state: FewShotState, generator: torch.Generator,
                 best: tuple[float | None, int | None]) -> None:
        self.config, self.problem, self.run_dir = config, problem, run_dir
        self.state, self.generator = state, generator
        self.best_score, self.best_iteration = best
        self.rng = generator.get_state()  # as of state.iteration, never mid-iteration
        self.last_metrics: dict[str, float] = {}

    @property
    def iteration(self) -> int:
        return self.state.iteration

    @property
    def iterations(self) -> int:
        return self.config.iterations

    def step(self, budget_spent: Callable[[], bool]) -> dict[str, float]:
        c = self.config
        began, cpu_began = time.perf_counter(), time.process_time()
        state, metrics = training_step(c, self.problem, self.state, self.generator)
        metrics["time/iteration_s"] = time.perf_counter() - began
        metrics["time/iteration_cpu_s"] = time.process_time() - cpu_began
        i = state.iteration
        if c.val_interval and (i % c.val_interval == 0 or i == c.iterations or budget_spent()):
            began = time.perf_counter()
            score, interval = validation_score(c, self.problem, state.params)
            metrics[f"val/{c.metric}"] = score
            metrics[f"val/{c.metric}_ci95"] = interval
            metrics["time/validation_s"] = time.perf_counter() - began
            if improves(c, score, self.best_score):
                self.best_score, self.best_iteration = score, i
                save_checkpoint(self.run_dir / "checkpoints" / "best.pt", checkpoint_payload(
                    c, state, None, score, i, 0.0, score))
        self.state, self.rng, self.last_metrics = state, self.generator.get_state(), metrics
        return metrics

    def after_log(self, logger: RunLogger) -> None:
        pass

    def save_checkpoint(self, train_seconds: float) -> None:
        checkpoints = self.run_dir / "checkpoints"
        save_checkpoint(checkpoints / "last.pt", checkpoint_payload(
            self.config, self.state, self.rng, self.best_score, self.best_iteration,
            train_seconds))
        if not self.config.val_interval:  # no validation: the best parameters are the last
            save_checkpoint(checkpoints / "best.pt", checkpoint_payload(
                self.config, self.state, None, None, None, train_seconds))

    def summary(self) -> dict[str, Any]:
        return {
            "problem": self.config.problem,
            "learner": self.config.learner,
            "final_train_loss": self.last_metrics.get("train/loss"),
            f"best_val_{self.config.metric}": self.best_score,
            "best_iteration": self.best_iteration,
        }

    def plot(self, run_dir: Path) -> None:
        plot_fewshot_curves(run_dir / "curves.png",
                            {self.config.learner: run_dir / "metrics.jsonl"}, self.config.metric)


def train(config: FewShotConfig, run_dir: Path, progress: bool = True,
          resume: bool = False) -> dict[str, Any]:
    """Train per ``config`` into ``run_dir`` (or continue it from ``last.pt`` with ``resume``);
    returns the summary also written to ``summary.json``.

    ``scratch`` trains nothing: both checkpoints hold the seeded initialisation.
    """
    torch.set_num_threads(resolve_threads(config.torch_threads))
    problem = build_problem(config)  # missing data fails here, before the run dir is touched
    if config.problem == "omniglot" and not config.data_path:
        # record where the data was found ($METARL_DATA), so that
        # evaluating the run later does not depend on the shell it runs in
        config = dataclasses.replace(config, data_path=str(omniglot_root("")))
    generator = task_generator(config.seed, "train")
    best: tuple[float | None, int | None] = (None, None)
    seconds_before = 0.0
    if resume:
        payload = load_checkpoint(run_dir / "checkpoints" / "last.pt")
        check_resumable(config, payload)
        adam = payload["adam"]
        state = FewShotState(payload["params"], None if adam is None else AdamState(**adam),
                             payload["iteration"])
        generator.set_state(payload["rng"])
        best = payload["best_score"], payload["best_iteration"]
        seconds_before = payload["train_seconds"]
        truncate_metrics(run_dir / "metrics.jsonl", state.iteration)
    else:
        state = initial_state(config, problem.initial_params())
    run_dir.mkdir(parents=True, exist_ok=True)
    save_fewshot_config(config, run_dir / "config.yaml")
    run = FewShotRun(config, problem, run_dir, state, generator, best)
    if config.learner == "scratch":  # nothing to train: the initialisation is the result
        run.save_checkpoint(0.0)
        save_checkpoint(run_dir / "checkpoints" / "best.pt", checkpoint_payload(
            config, state, None, None, None, 0.0))
        summary = {**run.summary(), "iterations": 0, "minutes": 0.0,
                   "peak_memory_mb": peak_rss_mb()}
        write_json(run_dir / "summary.json", summary)
        return summary
    settings = LoopSettings(config.max_minutes, config.log_interval,
                            config.checkpoint_interval, progress,
                            resume_hint=f"metarl train --resume {run_dir}")
    return run_loop(run, run_dir, settings, seconds_before, logger_class=FewShotLogger)
