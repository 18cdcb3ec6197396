"""`metarl status`: where a run stands, read from its folder while it trains or after.

A long run (hours for the Ant) usually trains in the background; its folder already holds what
a user asks of it: ``config.yaml`` (the iterations and the time budget), ``metrics.jsonl`` (one
line per finished iteration), ``RUNNING.json`` (whether a process trains it now) and any
``eval.json``. This module reads them, without torch and without touching the run, and says
how far it is, how long the rest should take at its recent speed, and what it has learned.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from metarl.run.live import running_pid

# iterations whose speed predicts the rest (recent ones: the machine's load changes)
SPEED_WINDOW = 50
# iterations averaged for the recent training returns (one iteration's return is noisy)
RETURN_WINDOW = 25
# the metrics shown as recent means, with what they mean
RECENT_METRICS = {"support/return": "return before adaptation",
                  "query/return": "return after adaptation"}


@dataclass
class RunStatus:
    run_dir: Path
    iteration: int  # the last finished iteration
    iterations: int | None  # asked for; None where the config names none
    live_pid: int | None
    train_minutes: float  # over all sessions: the sum of the iterations' wall-clock times
    max_minutes: float  # 0: no budget
    seconds_per_iteration: float | None  # the median of the last SPEED_WINDOW iterations
    recent: dict[str, float] = field(default_factory=dict)  # RECENT_METRICS' recent means
    best_after: tuple[float, int] | None = None  # the highest return after adaptation, iteration
    validation: tuple[str, float, int] | None = None  # a few-shot run's last: name, score, it
    evaluation: dict[str, Any] | None = None
    evaluation_stale: bool = False  # eval.json older than the best checkpoint

    @property
    def finished(self) -> bool:
        return self.iterations is not None and self.iteration >= self.iterations

    def minutes_to_go(self) -> float | None:
        """At the recent speed, minutes until the last iteration (None: unknown or finished)."""
        if self.finished or self.iterations is None or self.seconds_per_iteration is None:
            return None
        return (self.iterations - self.iteration) * self.seconds_per_iteration / 60

    def budget_stop(self) -> tuple[float, int] | None:
        """Minutes left and the iteration near which the time budget ends the run, where it
        ends before the last iteration; None where the iterations run out first."""
        to_go = self.minutes_to_go()
        if to_go is None or self.max_minutes <= 0 or self.seconds_per_iteration is None:
            return None
        left = max(0.0, self.max_minutes - self.train_minutes)
        if to_go <= left:
            return None
        return left, self.iteration + math.ceil(left * 60 / self.seconds_per_iteration)


def run_folders(path: str | Path) -> list[Path]:
    """``path`` itself where it is a run folder, else the run folders directly inside it (a
    ``runs/`` folder of many runs), sorted; a one-line error where there are none."""
    path = Path(path)
    if (path / "config.yaml").is_file():
        return [path]
    inside = sorted(p for p in path.iterdir() if (p / "config.yaml").is_file()) if (
        path.is_dir()) else []
    if not inside:
        raise FileNotFoundError(f"{path} is not a run folder (no config.yaml) and holds none; a "
                                "run folder is what `metarl train --run-dir DIR` wrote")
    return inside


def read_status(run_dir: str | Path) -> RunStatus:
    """The status of the run in ``run_dir``; a one-line error (FileNotFoundError) where the
    folder is not a run."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.yaml); a run folder is "
                                "what `metarl train --run-dir DIR` wrote")
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{run_dir / 'config.yaml'} is not a mapping of fields; the run's "
                         "config was overwritten, restore it from a copy of the preset")
    rows = _metrics(run_dir / "metrics.jsonl")
    seconds = [row["time/iteration_s"] for row in rows if "time/iteration_s" in row]
    status = RunStatus(
        run_dir=run_dir,
        iteration=int(rows[-1]["iteration"]) if rows else 0,
        iterations=config.get("iterations"),
        live_pid=running_pid(run_dir),
        train_minutes=sum(seconds) / 60,
        max_minutes=float(config.get("max_minutes") or 0.0),
        seconds_per_iteration=statistics.median(seconds[-SPEED_WINDOW:]) if seconds else None,
    )
    for key in RECENT_METRICS:
        values = [row[key] for row in rows[-RETURN_WINDOW:] if key in row]
        if values:
            status.recent[key] = statistics.fmean(values)
    after = [(row["query/return"], int(row["iteration"])) for row in rows if "query/return" in row]
    if after:
        status.best_after = max(after, key=lambda pair: pair[0])
    for row in reversed(rows):  # a few-shot run validates every val_interval iterations
        scores = [k for k in row if k.startswith("val/") and not k.endswith("_ci95")]
        if scores:
            status.validation = (scores[0][4:], float(row[scores[0]]), int(row["iteration"]))
            break
    evaluation = run_dir / "eval.json"
    if evaluation.is_file():
        status.evaluation = json.loads(evaluation.read_text())
        best = run_dir / "checkpoints" / "best.pt"
        status.evaluation_stale = (best.is_file()
                                   and best.stat().st_mtime > evaluation.stat().st_mtime)
    return status


def _metrics(path: Path) -> list[dict[str, Any]]:
    """The finished iterations' metrics; a line still being written (a live run) is skipped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "iteration" in row:
            rows.append(row)
    return rows


def format_status(status: RunStatus) -> str:
    run = status.run_dir
    of = f" of {status.iterations}" if status.iterations is not None else ""
    if status.live_pid is not None:
        state = f"training (process {status.live_pid})"
    elif status.finished:
        state = "finished"
    elif status.iteration == 0:
        state = "no iteration finished"
    else:
        state = "stopped"
    lines = [f"{run}: {state}, iteration {status.iteration}{of}"]
    if state == "stopped":
        lines.append(f"  continue with: metarl train --resume {run}")
    if status.seconds_per_iteration is not None:
        budget = (f" of a {status.max_minutes:g}-minute budget" if status.max_minutes > 0
                  else "")
        lines.append(f"  training time {status.train_minutes:.1f} minutes{budget}; "
                     f"{status.seconds_per_iteration:.2f} s per iteration (median of the last "
                     f"{min(SPEED_WINDOW, status.iteration)})")
    stop = status.budget_stop()
    to_go = status.minutes_to_go()
    if stop is not None:
        lines.append(f"  the time budget ends it first: about {stop[0]:.1f} minutes of training "
                     f"left{_clock(status, stop[0])}, near iteration {stop[1]}; a larger "
                     "--max-minutes on resume lets it finish")
    elif to_go is not None and status.iterations is not None:
        lines.append(f"  to go: about {to_go:.1f} minutes{_clock(status, to_go)} for "
                     f"{status.iterations - status.iteration} iterations at that speed")
    if status.recent:
        shown = ", ".join(f"{RECENT_METRICS[k]} {v:.2f}" for k, v in status.recent.items())
        lines.append(f"  last {min(RETURN_WINDOW, status.iteration)} iterations (training "
                     f"tasks): {shown}")
    if status.best_after is not None:
        lines.append(f"  highest training return after adaptation: {status.best_after[0]:.2f} "
                     f"at iteration {status.best_after[1]}")
    if status.validation is not None:
        name, score, at = status.validation
        lines.append(f"  last validation: {name} {score:.4g} at iteration {at}")
    lines.append("  " + _evaluation_line(status))
    return "\n".join(lines)


def _clock(status: RunStatus, minutes: float) -> str:
    """`` (until about HH:MM)`` for a run training now: when it should end by the local clock."""
    if status.live_pid is None:
        return ""
    return f" (until about {time.strftime('%H:%M', time.localtime(time.time() + 60 * minutes))})"


def _evaluation_line(status: RunStatus) -> str:
    command = f"metarl eval {status.run_dir}"
    if status.evaluation is None:
        return f"evaluation: none yet ({command})"
    result = status.evaluation
    means = " / ".join(f"{m:.2f}" for m in result.get("mean", []))
    steps = result.get("steps") or []
    span = f" after {steps[0]}..{steps[-1]} steps" if len(steps) > 1 else ""
    stale = (f"; older than the best checkpoint, evaluate again: {command}"
             if status.evaluation_stale else "")
    return f"evaluation (eval.json): {result.get('metric', 'score')} {means}{span}{stale}"
