"""No hangs: an environment whose step never returns stops the run with one line within the
rollout timeout, and the run directory keeps its last checkpoint, ready to resume exactly.

Two kinds of stall: one a signal can interrupt (a sleep, as a blocked read or a Python loop would
be), handled in-process by the watchdog's timer; and one no signal reaches (SIGALRM blocked, as
for code stuck inside C), which the watchdog's backstop thread ends by exiting the process.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metarl.envs.navigation import Navigation2DVectorEnv
from metarl.run.checkpoint import load_checkpoint

pytestmark = pytest.mark.faults

# horizon 6: an iteration steps the env 12 times, so call 15 is in iteration 2
STALLED_CALL = 15
TIMEOUT = ["--rollout-timeout-s", "1", "--checkpoint-interval", "1"]


def test_a_step_that_sleeps_forever_fails_with_one_line_within_the_timeout(
    cli: Any, tiny: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helpers: Any,
    reference_run: Any,
) -> None:
    real_step = Navigation2DVectorEnv.step
    calls = {"n": 0}

    def stalling_step(self: Navigation2DVectorEnv, actions: np.ndarray) -> Any:
        calls["n"] += 1
        if calls["n"] == STALLED_CALL:
            time.sleep(3600)
        return real_step(self, actions)

    settings = [*tiny, "--iterations", "3"]
    # first, so that this process has imported all it imports while training (a timer firing
    # inside an import would leave a half-imported module behind for the other tests)
    whole = reference_run(*settings)
    monkeypatch.setattr(Navigation2DVectorEnv, "step", stalling_step)
    run = tmp_path / "run"
    start = time.monotonic()
    code, err = cli("train", "navigation2d", "--run-dir", str(run), *settings, *TIMEOUT)
    assert time.monotonic() - start < 30
    line = helpers.one_error_line(err)
    assert code == 1
    assert "sampling of iteration 2 stalled: no result after 1 s (rollout_timeout_s" in line
    assert [t for t in threading.enumerate() if t.name == "metarl-watchdog"] == []
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 1
    monkeypatch.undo()
    # a longer limit may be given on resume: it changes neither maths nor random streams
    assert cli("train", "--resume", str(run), "--no-progress", "--rollout-timeout-s", "60")[0] == 0
    helpers.assert_same_run(whole, run)


STUCK_IN_C = f"""
import signal
from metarl.envs.navigation import Navigation2DVectorEnv
real_step = Navigation2DVectorEnv.step
calls = {{"n": 0}}
def stuck_step(self, actions):
    calls["n"] += 1
    if calls["n"] == {STALLED_CALL}:
        signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGALRM}})
        signal.sigwait({{signal.SIGUSR2}})  # never sent: blocks like a deadlocked C call
    return real_step(self, actions)
Navigation2DVectorEnv.step = stuck_step
"""


def test_a_step_stuck_where_no_signal_reaches_ends_the_process_with_one_line(
    zygote: Any, tiny: list[str], tmp_path: Path, helpers: Any, reference_run: Any,
) -> None:
    settings = [*tiny, "--iterations", "3"]
    run, log = tmp_path / "run", tmp_path / "log"
    zygote.start(["train", "navigation2d", "--run-dir", str(run), *settings, *TIMEOUT], log,
                 prelude=STUCK_IN_C)
    code = zygote.wait(60)
    assert code == 1, log.read_text()
    err = log.read_text().splitlines()
    assert err[-1].startswith("metarl: error: sampling of iteration 2 stalled"), err
    assert not any("Traceback" in line for line in err)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 1
    assert zygote.run(["train", "--resume", str(run), "--no-progress"], log) == 0
    helpers.assert_same_run(reference_run(*settings), run)
