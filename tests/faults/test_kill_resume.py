"""Fault injection: kill -9 a training process at several points, resume, and end exactly where
an uninterrupted run ends."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from metarl.checkpoint import load_checkpoint

SETTINGS = ["--iterations", "8", "--meta-batch-size", "2", "--episodes-per-task", "2",
            "--horizon", "10", "--torch-threads", "1", "--checkpoint-interval", "1",
            "--no-progress"]


def _metarl(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "metarl", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _rows(run: Path) -> int:
    path = run / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def _metrics(run: Path) -> list[dict[str, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


@pytest.mark.parametrize("kill_after_rows", [1, 3, 6])
def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path: Path,
                                                         kill_after_rows: int) -> None:
    whole = tmp_path / "whole"
    assert _metarl("train", "navigation2d", "--run-dir", str(whole), *SETTINGS).wait(120) == 0

    run = tmp_path / "killed"
    process = _metarl("train", "navigation2d", "--run-dir", str(run), *SETTINGS)
    deadline = time.time() + 120
    while _rows(run) < kill_after_rows and process.poll() is None:
        assert time.time() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(60)
    if not (run / "checkpoints" / "last.pt").is_file():  # killed before the first checkpoint
        shutil.rmtree(run)
        assert _metarl("train", "navigation2d", "--run-dir", str(run), *SETTINGS).wait(120) == 0
    elif load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] < 8:
        resumed = _metarl("train", "--resume", str(run), "--no-progress")
        assert resumed.wait(120) == 0, resumed.stderr.read() if resumed.stderr else ""

    a = load_checkpoint(whole / "checkpoints" / "last.pt")
    b = load_checkpoint(run / "checkpoints" / "last.pt")
    assert a["iteration"] == b["iteration"] == 8
    assert all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])
    assert _metrics(whole) == _metrics(run)


def test_a_metrics_line_cut_short_by_a_crash_is_dropped_on_resume(tmp_path: Path) -> None:
    from metarl.trainer import truncate_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"iteration": 1}\n{"iteration": 2}\n{"iterat')
    truncate_metrics(path, 5)
    assert path.read_text() == '{"iteration": 1}\n{"iteration": 2}\n'
