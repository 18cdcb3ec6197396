"""Shared helpers of the fault-injection suite (issue 8): run the real CLI, read a run's final
state, and snapshot a run directory to prove a failure left it untouched.

Every test module here carries ``pytestmark = pytest.mark.faults`` (``pytest -m faults`` runs the
suite alone).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from metarl.cli import main
from metarl.config import RESUMABLE_FIELDS
from metarl.run.checkpoint import load_checkpoint

# A navigation run small enough for a test: each iteration takes milliseconds.
TINY = ["--meta-batch-size", "2", "--episodes-per-task", "2", "--horizon", "6",
        "--hidden-sizes", "[8]", "--torch-threads", "1", "--no-progress"]

Cli = Callable[..., tuple[int, str]]


@pytest.fixture(scope="session")
def tiny() -> list[str]:
    return list(TINY)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """``cli(*argv)`` runs ``metarl`` in this process: its exit code and what it wrote on stderr."""

    def run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(list(argv))
        return code, capsys.readouterr().err

    return run


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``reference_run(*argv, config="navigation2d")``: the folder of an uninterrupted ``metarl
    train CONFIG *argv`` run, trained once per session for each distinct command."""
    runs: dict[tuple[str, ...], Path] = {}

    def run(*argv: str, config: str = "navigation2d") -> Path:
        key = (config, *argv)
        if key not in runs:
            folder = tmp_path_factory.mktemp("reference") / "run"
            assert main(["train", config, "--run-dir", str(folder), *argv]) == 0
            runs[key] = folder
        return runs[key]

    return run


def one_error_line(err: str) -> str:
    """The single ``metarl: error:`` line of ``err``; fails on anything else (tracebacks too)."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("metarl: error: "), err
    assert "Traceback" not in err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes); empty when it does not exist."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def final_state(run: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The last checkpoint and the metrics of a run, without what is measured time rather than
    computed (timings), and the checkpoint's config without the fields a resume may change
    (logging intervals, time limits)."""
    payload = load_checkpoint(run / "checkpoints" / "last.pt")
    payload["config"] = {k: v for k, v in payload["config"].items()
                         if k not in RESUMABLE_FIELDS}
    payload.pop("train_seconds", None)  # a few-shot run's measured time (its budget), no maths
    metrics = run / "metrics.jsonl"  # absent when nothing trains (the scratch baseline)
    rows = [json.loads(line) for line in metrics.read_text().splitlines()] \
        if metrics.exists() else []
    return payload, [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def assert_same_run(a: Path, b: Path) -> None:
    """Bit-for-bit: parameters, optimiser state, random streams, counters and metrics."""
    (pa, ma), (pb, mb) = final_state(a), final_state(b)
    assert pa["iteration"] == pb["iteration"]
    assert_equal_trees(pa, pb)
    assert ma == mb


def assert_equal_trees(a: Any, b: Any, where: str = "checkpoint") -> None:
    """Exact equality of nested dicts/lists of tensors and plain values (NaN never equal)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_equal_trees(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal_trees(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


# A process that imports torch (and torch._dynamo, which torch.func pulls in on first use: ~3 s
# here), matplotlib, TensorBoard and metarl once, then forks one child per command; each child
# runs the real `metarl` CLI (after an optional prelude of Python code, which injects a fault) and
# ends with its exit code. A fork costs milliseconds where a fresh interpreter costs seconds,
# which is what makes dozens of kill -9s affordable in a test.
_ZYGOTE = r"""
import json, os, sys, traceback
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot
import torch, torch._dynamo
from torch.utils.tensorboard import SummaryWriter
import metarl.cli, metarl.rl.trainer
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    argv, log, prelude = json.loads(line)
    pid = os.fork()
    if pid == 0:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        try:
            exec(prelude, {})
            code = metarl.cli.main(argv)
        except BaseException:
            traceback.print_exc()
            code = 99
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    out.write(b"%d\n" % pid)
    out.flush()
    _, status = os.waitpid(pid, 0)
    out.write(b"%d\n" % os.waitstatus_to_exitcode(status))
    out.flush()
"""


class Zygote:
    """Runs `metarl` commands as forked children of one pre-imported process, one at a time."""

    def __init__(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen([sys.executable, "-c", _ZYGOTE], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, bufsize=0, env=env)
        self._buffer = b""
        self.pid: int | None = None

    def _line(self, timeout: float) -> str | None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.process.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.process.stdout.fileno(), 4096)
            assert chunk, "the zygote process died"
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def start(self, argv: list[str], log: Path, prelude: str = "") -> int:
        """Fork a child running ``prelude`` then ``metarl *argv`` (stdout and stderr into
        ``log``): its pid."""
        if self.pid is not None:  # a failed test left its child running
            self.kill()
            self.wait(60)
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps([argv, str(log), prelude]) + "\n").encode())
        self.process.stdin.flush()
        line = self._line(120)
        assert line is not None, "the zygote did not fork"
        self.pid = int(line)
        return self.pid

    def wait(self, timeout: float) -> int | None:
        """The child's exit code (minus the signal that killed it), or None if still running."""
        line = self._line(timeout)
        if line is None:
            return None
        self.pid = None
        return int(line)

    def kill(self, signum: int = signal.SIGKILL) -> None:
        assert self.pid is not None
        # a child that ended (and was reaped) just now is gone: wait() reads its exit code
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def run(self, argv: list[str], log: Path, timeout: float = 120, prelude: str = "") -> int:
        self.start(argv, log, prelude)
        code = self.wait(timeout)
        assert code is not None, f"metarl {' '.join(argv)} did not finish in {timeout} s"
        return code

    def close(self) -> None:
        if self.pid is not None:
            self.kill()
            self.wait(60)
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(60)


@pytest.fixture(scope="session")
def zygote() -> Iterator[Zygote]:
    forks = Zygote()
    try:
        yield forks
    finally:
        forks.close()


@pytest.fixture
def helpers() -> Any:
    """The module-level helpers above, for the test modules (they cannot import conftest)."""
    import types

    return types.SimpleNamespace(one_error_line=one_error_line, snapshot=snapshot,
                                 final_state=final_state, assert_same_run=assert_same_run,
                                 assert_equal_trees=assert_equal_trees)
