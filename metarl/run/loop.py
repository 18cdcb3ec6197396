"""The run loop every kind of run shares: RL meta-training, few-shot training and the
architecture search all step through it, so they stop, resume and report alike.

The loop owns what is the same for all of them: the progress bar, ``metrics.jsonl`` and
TensorBoard (``RunLogger``); Ctrl-C and SIGTERM deferred to the next iteration boundary
(``GracefulStop``), ending in an error that says how to resume; the ``max_minutes`` budget
over all the sessions of a run; a resumable checkpoint every ``checkpoint_interval``
iterations and at the end, however the loop ends; ``summary.json`` with the time, the speed
and the peak memory; and ``RUNNING.json`` while it runs (``metarl.run.live``).
A kind of run plugs in its state, its step and its evaluation by implementing ``Run``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from metarl.run.atomic_write import write_json
from metarl.run.graceful_stop import GracefulStop
from metarl.run.live import clear_running, mark_running
from metarl.run.logger import RunLogger
from metarl.run.resources import peak_rss_mb


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM ended the run after its checkpoint and summary were written; the
    message says where it stopped and how to continue it."""


class Run(Protocol):
    """One kind of run, as the loop drives it."""

    @property
    def iteration(self) -> int:
        """Iterations finished so far (all sessions)."""
        ...

    @property
    def iterations(self) -> int:
        """Iterations the run will have when it is done (a search that finds fewer candidates
        than it planned lowers it as it goes)."""
        ...

    def step(self, budget_spent: Callable[[], bool]) -> dict[str, float]:
        """One iteration; its metrics. ``budget_spent()`` says whether this iteration ends the
        session for the time budget (a run that evaluates periodically evaluates then). The
        run keeps what a checkpoint needs as of the end of this step, so that an interruption
        in the next one saves a finished iteration."""
        ...

    def after_log(self, logger: RunLogger) -> None:
        """Anything that follows a logged iteration (the RL run's videos)."""
        ...

    def save_checkpoint(self, train_seconds: float) -> None:
        """Write the resumable checkpoint of the last finished iteration (atomically)."""
        ...

    def summary(self) -> dict[str, Any]:
        """The run's own summary fields (the loop adds time, speed and memory)."""
        ...

    def plot(self, run_dir: Path) -> None:
        """Draw the run's curves from its metrics."""
        ...


@dataclass(frozen=True)
class LoopSettings:
    max_minutes: float = 0.0  # over all sessions of the run; 0: no budget
    log_interval: int = 10  # iterations between stdout lines (the first one always)
    checkpoint_interval: int = 50
    progress: bool = True
    resume_hint: str = ""  # the command that continues this run, shown after an interruption


def run_loop(run: Run, run_dir: Path, settings: LoopSettings, seconds_before: float = 0.0,
             logger_class: type[RunLogger] = RunLogger) -> dict[str, Any]:
    """Step ``run`` until its ``iterations`` (or the budget, or a signal); returns the
    summary also written to ``run_dir/summary.json``. An interruption raises ``RunInterrupted``
    (a ``KeyboardInterrupt``) after the checkpoint and summary are written."""
    started = time.perf_counter()

    def elapsed() -> float:  # training seconds of all sessions of this run
        return seconds_before + time.perf_counter() - started

    seconds: list[float] = []
    cpu_seconds: list[float] = []
    out_of_time = False
    stopped_by_signal = False
    summary: dict[str, Any] = {}
    mark_running(run_dir)
    with (logger_class(run_dir, run.iterations, settings.progress,
                       initial=run.iteration) as logger,
          GracefulStop() as stop):
        try:
            while run.iteration < run.iterations:
                stop.raise_if_requested()
                began, cpu_began = time.perf_counter(), time.process_time()
                budget_spent = _BudgetCheck(settings.max_minutes, elapsed)
                metrics = run.step(budget_spent)
                # CPU seconds of this process: on a machine shared with other work, what an
                # iteration would take on free cores
                metrics.setdefault("time/iteration_s", time.perf_counter() - began)
                metrics.setdefault("time/iteration_cpu_s", time.process_time() - cpu_began)
                seconds.append(metrics["time/iteration_s"])
                cpu_seconds.append(metrics["time/iteration_cpu_s"])
                i = run.iteration
                logger.log(i, metrics, i % settings.log_interval == 0 or i == 1)
                run.after_log(logger)
                if i % settings.checkpoint_interval == 0:
                    run.save_checkpoint(elapsed())
                out_of_time = budget_spent()
                if out_of_time and i < run.iterations:
                    logger.bar.write(
                        f"stopped at iteration {i}: the time budget of "
                        f"{settings.max_minutes:g} minutes over all sessions of this run is "
                        f"spent; to go on, resume with a larger --max-minutes"
                        + (f" ({settings.resume_hint})" if settings.resume_hint else ""))
                    break
        except KeyboardInterrupt as interrupt:
            stopped_by_signal = True
            hint = f"; continue with: {settings.resume_hint}" if settings.resume_hint else ""
            raise RunInterrupted(f"interrupted at iteration {run.iteration}{hint}") from interrupt
        finally:  # also when interrupted: the finished iterations keep checkpoint and summary
            try:
                if run.iteration > 0:
                    run.save_checkpoint(elapsed())
                    summary = {
                        **run.summary(),
                        "iterations": run.iteration,
                        "minutes": (time.perf_counter() - started) / 60,
                        "train_minutes_total": elapsed() / 60,
                        "seconds_per_iteration_median": _median(seconds),
                        "cpu_seconds_per_iteration_median": _median(cpu_seconds),
                        "peak_memory_mb": peak_rss_mb(),
                        "torch_threads": torch.get_num_threads(),
                        "stopped_by_time_budget": (out_of_time
                                                   and run.iteration < run.iterations),
                        "stopped_by_signal": stopped_by_signal,
                    }
                    write_json(run_dir / "summary.json", summary)
                    run.plot(run_dir)
            finally:
                clear_running(run_dir)
    return summary


class _BudgetCheck:
    """Whether the time budget is spent, asked once per iteration: the run and the loop act on
    the same answer (a run that validates on its last iteration is never cut off before)."""

    def __init__(self, max_minutes: float, elapsed: Callable[[], float]) -> None:
        self.max_minutes, self.elapsed = max_minutes, elapsed
        self.answer: bool | None = None

    def __call__(self) -> bool:
        if self.answer is None:
            self.answer = 0 < self.max_minutes * 60 <= self.elapsed()
        return self.answer


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
