"""Ctrl-C (SIGINT) and SIGTERM: the first finishes the current iteration, checkpoints and exits
with status 130; a second stops at once, still checkpointing the last completed iteration with
the random streams it had then. Either way the run resumes to exactly the uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path
from typing import Any

import pytest

from metarl.rl.meta_learner import MetaLearner
from metarl.run.checkpoint import load_checkpoint

pytestmark = pytest.mark.faults


def _signal_during_update(monkeypatch: pytest.MonkeyPatch, iteration: int,
                          signals: list[signal.Signals]) -> None:
    """Deliver ``signals`` to this process in the middle of ``iteration``'s outer step, after
    its sampling has drawn from every random stream."""
    real_update = MetaLearner.update
    calls = {"n": 0}

    def update(self: MetaLearner, state: Any, batch: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == iteration:
            for signum in signals:
                os.kill(os.getpid(), signum)
        return real_update(self, state, batch)

    monkeypatch.setattr(MetaLearner, "update", update)


@pytest.mark.parametrize(("signals", "completed"), [
    ([signal.SIGINT], 2),  # the iteration in progress finishes
    ([signal.SIGTERM], 2),
    ([signal.SIGINT, signal.SIGINT], 1),  # stop now: the iteration in progress is dropped
    ([signal.SIGTERM, signal.SIGINT], 1),
])
def test_interrupt_checkpoints_exits_130_and_resumes_exactly(
    cli: Any, tiny: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helpers: Any,
    reference_run: Any, signals: list[signal.Signals], completed: int,
) -> None:
    settings = [*tiny, "--iterations", "4", "--outer", "promp"]  # promp: Adam and KL-weight state
    whole, run = reference_run(*settings), tmp_path / "run"
    _signal_during_update(monkeypatch, 2, signals)
    code, err = cli("train", "navigation2d", "--run-dir", str(run), *settings)
    assert code == 130
    assert err.splitlines()[-1] == (f"metarl: error: interrupted at iteration {completed}; "
                                    f"continue with: metarl train --resume {run}")
    assert "stopping after this iteration" in err and "Traceback" not in err
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == completed
    assert len((run / "metrics.jsonl").read_text().splitlines()) == completed
    monkeypatch.undo()
    assert cli("train", "--resume", str(run), "--no-progress")[0] == 0
    helpers.assert_same_run(whole, run)


def test_signal_handlers_are_restored_after_training(cli: Any, tiny: list[str],
                                                     tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGINT)
    assert cli("train", "navigation2d", "--run-dir", str(tmp_path / "run"), *tiny,
               "--iterations", "1")[0] == 0
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("seed", range(3))
def test_sigint_at_a_random_moment_of_a_real_process(
    zygote: Any, tiny: list[str], tmp_path: Path, helpers: Any, seed: int
) -> None:
    """A real process, a real signal at a random moment (once or twice), then a resume."""
    rng = random.Random(seed)
    settings = [*tiny, "--iterations", "6"]
    whole, run, log = tmp_path / "whole", tmp_path / "run", tmp_path / "log"
    assert zygote.run(["train", "navigation2d", "--run-dir", str(whole), *settings], log) == 0
    zygote.start(["train", "navigation2d", "--run-dir", str(run), *settings], log)
    # wait until training runs (its config is written), then a little more
    for _ in range(2000):
        if (run / "config.yaml").is_file() or zygote.wait(0.01) is not None:
            break
    code = zygote.wait(rng.uniform(0.0, 0.3))
    if code is None:
        zygote.kill(signal.SIGINT)
        if rng.random() < 0.5:
            zygote.kill(signal.SIGINT)
        code = zygote.wait(60)
    text = log.read_text()
    assert code in (0, 130), text
    assert "Traceback" not in text
    if code == 130:
        assert text.splitlines()[-1].startswith("metarl: error: interrupted")
        assert zygote.run(["train", "--resume", str(run), "--no-progress"], log) == 0
    helpers.assert_same_run(whole, run)


FEWSHOT_TINY = ["--iterations", "400", "--meta-batch-size", "3", "--val-interval", "10",
                "--val-tasks", "5", "--torch-threads", "1", "--no-progress"]


@pytest.mark.parametrize("seed", range(10))
def test_a_fewshot_run_stops_within_seconds_at_a_random_moment(
    zygote: Any, tmp_path: Path, seed: int
) -> None:
    """Ctrl-C (once or twice) at a random moment of a real few-shot process: it exits within
    seconds every time, with one line naming where it stopped, and resumes."""
    rng = random.Random(seed)
    run, log = tmp_path / "run", tmp_path / "log"
    zygote.start(["train", "sinusoid_maml", "--run-dir", str(run), *FEWSHOT_TINY], log)
    for _ in range(2000):
        if (run / "config.yaml").is_file() or zygote.wait(0.01) is not None:
            break
    assert zygote.wait(rng.uniform(0.0, 0.5)) is None, log.read_text()  # still training
    zygote.kill(signal.SIGINT)
    if rng.random() < 0.5:
        zygote.kill(signal.SIGINT)
    code = zygote.wait(10)
    assert code is not None, "the few-shot run did not exit within 10 s of Ctrl-C"
    text = log.read_text()
    assert code == 130 and "Traceback" not in text, text
    last_line = text.splitlines()[-1]
    assert last_line.startswith("metarl: error: interrupted at iteration "), last_line
    stopped_at = int(last_line.split("at iteration ")[1].split(";")[0])
    assert f"continue with: metarl train --resume {run}" in last_line
    if stopped_at:  # the finished iterations are checkpointed, the one under way is not
        assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == stopped_at
