"""`metarl status`: a run's progress, time to go and returns, read from its folder."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from metarl.cli import main
from metarl.run.status import format_status, read_status

TINY = ["--iterations", "2", "--meta-batch-size", "2", "--episodes-per-task", "2",
        "--horizon", "10", "--torch-threads", "1", "--no-progress"]


def write_run(run: Path, iterations: int, max_minutes: float, finished: int,
              seconds: float = 6.0) -> None:
    """A run folder as the loop leaves it: iteration i took ``seconds`` (the last ten twice as
    long), returned i before adaptation and 2 i after."""
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"iterations": iterations,
                                                     "max_minutes": max_minutes}))
    with (run / "metrics.jsonl").open("w") as out:
        for i in range(1, finished + 1):
            took = 2 * seconds if i > finished - 10 else seconds
            out.write(json.dumps({"iteration": i, "support/return": float(i),
                                  "query/return": 2.0 * i, "time/iteration_s": took}) + "\n")
        out.write('{"iteration": ')  # a live run's line still being written


def test_progress_speed_and_returns_follow_from_the_metrics(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, iterations=100, max_minutes=0, finished=40)
    status = read_status(run)
    assert status.iteration == 40 and status.iterations == 100 and status.live_pid is None
    # 30 iterations of 6 s and 10 of 12 s: 5 minutes; the median of the last 40 is 6 s
    assert status.train_minutes == pytest.approx(5.0)
    assert status.seconds_per_iteration == 6.0
    assert status.minutes_to_go() == pytest.approx(60 * 6 / 60)
    # the last 25 iterations are 16..40: mean 28 before adaptation, 56 after
    assert status.recent == {"support/return": 28.0, "query/return": 56.0}
    assert status.best_after == (80.0, 40)
    text = format_status(status)
    assert "stopped, iteration 40 of 100" in text
    assert f"continue with: metarl train --resume {run}" in text
    assert "about 6.0 minutes for 60 iterations" in text
    assert "return before adaptation 28.00, return after adaptation 56.00" in text
    assert f"evaluation: none yet (metarl eval {run})" in text


def test_the_time_budget_ends_a_run_before_its_iterations(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, iterations=100, max_minutes=6, finished=40)
    status = read_status(run)
    # 5 minutes trained, 1 minute of the budget left at 6 s per iteration: ten more, to iteration 50
    stop = status.budget_stop()
    assert stop is not None and stop[0] == pytest.approx(1.0) and stop[1] == 50
    assert "near iteration 50" in format_status(status)
    write_run(tmp_path / "roomy", iterations=100, max_minutes=12, finished=40)
    assert read_status(tmp_path / "roomy").budget_stop() is None  # 6 minutes to go, 7 left


def test_recent_speed_predicts_the_rest(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, iterations=200, max_minutes=0, finished=120)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()[:-1]]
    for row in rows[-60:]:  # the machine got busier: the last 60 iterations took 12 s, not 6
        row["time/iteration_s"] = 12.0
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # the last 50 predict the rest, not the whole run's median of 9 s
    assert read_status(run).seconds_per_iteration == 12.0


def test_a_live_run_is_named_with_its_process(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, iterations=100, max_minutes=0, finished=3)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / "RUNNING.json").write_text(json.dumps({"pid": sleeper.pid,
                                                      "host": socket.gethostname()}))
        text = format_status(read_status(run))
        assert f"training (process {sleeper.pid}), iteration 3 of 100" in text
        # 97 iterations of 12 s to go (the last ten took 12 s): the clock 19.4 minutes from now
        assert re.search(r"about 19\.4 minutes \(until about \d\d:\d\d\) for 97", text)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert "stopped, iteration 3 of 100" in format_status(read_status(run))  # a stale marker


def test_a_finished_run_with_its_evaluation(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), *TINY]) == 0
    assert main(["eval", str(run), "--tasks", "2", "--steps", "1", "--episodes", "2",
                 "--no-progress"]) == 0
    result = json.loads((run / "eval.json").read_text())
    capsys.readouterr()
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"{run}: finished, iteration 2 of 2" in out
    means = " / ".join(f"{m:.2f}" for m in result["mean"])
    assert f"evaluation (eval.json): return {means} after 0..1 steps" in out
    assert "older than the best checkpoint" not in out
    best = run / "checkpoints" / "best.pt"
    later = (run / "eval.json").stat().st_mtime + 10
    os.utime(best, (later, later))  # the checkpoint changed after the evaluation
    assert main(["status", str(run)]) == 0
    assert f"evaluate again: metarl eval {run}" in capsys.readouterr().out


def test_a_few_shot_run_shows_its_last_validation(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "sine"
    assert main(["train", "sinusoid_maml", "--run-dir", str(run), "--iterations", "4",
                 "--meta-batch-size", "3", "--val-interval", "2", "--val-tasks", "5",
                 "--torch-threads", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    assert "finished, iteration 4 of 4" in out and "last validation: mse" in out
    assert "at iteration 4" in out


def test_a_folder_of_runs_reports_each(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path / "runs" / "b", iterations=10, max_minutes=0, finished=2)
    write_run(tmp_path / "runs" / "a", iterations=10, max_minutes=0, finished=3)
    (tmp_path / "runs" / "notes").mkdir()  # not a run: left out
    assert main(["status", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert out.index("a: stopped, iteration 3") < out.index("b: stopped, iteration 2")
    assert "notes" not in out
    assert main(["status", str(tmp_path / "runs" / "notes")]) == 1  # holds no run
    assert "holds none" in capsys.readouterr().err


def test_a_folder_that_is_not_a_run_is_one_line_and_the_others_still_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    write_run(run, iterations=10, max_minutes=0, finished=2)
    assert main(["status", str(tmp_path / "missing"), str(run)]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "is not a run folder" in captured.err
    assert "Traceback" not in captured.err
    assert "stopped, iteration 2 of 10" in captured.out
    (run / "config.yaml").write_text("- a list, not the run's fields\n")
    assert main(["status", str(run)]) == 1
    assert "is not a mapping" in capsys.readouterr().err
