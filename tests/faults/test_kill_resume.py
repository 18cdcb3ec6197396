"""kill -9 at random moments: every interrupted run resumes to exactly the uninterrupted run.

Each seed kills one training process at a random moment, resumes it (or, when the kill came
before any file was written, starts it again), kills the resumed process, and so on, then lets it
finish; the last checkpoint (parameters, optimiser state, random streams, counters) and the
metrics must equal those of a run never interrupted. The moments are drawn over the iterations
and within them, so kills land in start-up, sampling, the outer step, metric logging and
checkpoint writes alike.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from metarl.run.checkpoint import load_checkpoint

pytestmark = pytest.mark.faults

ITERATIONS = 8
KILLS_PER_SEED = 4


def _settings(tiny: list[str]) -> list[str]:
    return [*tiny, "--iterations", str(ITERATIONS), "--checkpoint-interval", "1"]


@pytest.fixture(scope="module")
def uninterrupted(zygote: Any, tmp_path_factory: pytest.TempPathFactory,
                  tiny: list[str]) -> tuple[Path, float]:
    """The reference run, and how long it took (the span the kill delays are drawn from)."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    zygote.start(["train", "navigation2d", "--run-dir", str(folder / "run"), *_settings(tiny)],
                 folder / "log")
    start = time.monotonic()
    assert zygote.wait(120) == 0, (folder / "log").read_text()
    return folder / "run", time.monotonic() - start


def _checkpointed(run: Path) -> int:
    last = run / "checkpoints" / "last.pt"
    return load_checkpoint(last)["iteration"] if last.is_file() else 0


def _wait_for_a_random_moment(zygote: Any, run: Path, rng: random.Random,
                              per_iteration: float) -> int | None:
    """Let the child run to a random iteration ahead of its checkpoint, then for a random part
    of the next iteration's time: None, or its exit code if it ended first. Progress, not the
    clock alone, picks the moment, so that a busy machine cannot push every kill past the end."""
    start = _checkpointed(run)
    target = rng.randint(start, max(start, min(start + 2, ITERATIONS - 2)))  # 0-2 iterations on
    while _checkpointed(run) < target:
        code = zygote.wait(0.005)
        if code is not None:
            return int(code)
    code = zygote.wait(rng.uniform(0.0, 1.5 * per_iteration))
    return None if code is None else int(code)


@pytest.mark.parametrize("seed", range(5))
def test_kill_9_at_random_moments_then_resume_ends_exactly_like_an_uninterrupted_run(
    zygote: Any, uninterrupted: tuple[Path, float], tmp_path: Path, tiny: list[str],
    helpers: Any, seed: int,
) -> None:
    reference, duration = uninterrupted
    rng = random.Random(seed)
    run, log = tmp_path / "run", tmp_path / "log"
    fresh = ["train", "navigation2d", "--run-dir", str(run), *_settings(tiny)]
    resume = ["train", "--resume", str(run), "--no-progress"]
    kills, landed = 0, []
    while True:
        zygote.start(resume if (run / "config.yaml").is_file() else fresh, log)
        if kills == KILLS_PER_SEED:
            code = zygote.wait(120)
            assert code == 0, log.read_text()
            break
        code = _wait_for_a_random_moment(zygote, run, rng, duration / ITERATIONS)
        if code is None:
            zygote.kill()
            code = zygote.wait(60)
            kills += code == -9  # else it finished just before the signal
        if code != -9:
            assert code == 0, log.read_text()
            break  # finished before the delay ran out
        if not (run / "config.yaml").is_file():
            # killed before the run wrote its config: nothing to resume, a fresh start must work
            assert all(p.name.endswith(".tmp") for p in run.rglob("*") if p.is_file())
            landed.append("before the config")
        elif (run / "checkpoints" / "last.pt").is_file():  # never half written:
            landed.append(load_checkpoint(run / "checkpoints" / "last.pt")["iteration"])
        else:
            landed.append("before the first checkpoint")
    print(f"seed {seed}: {kills} kill -9s; last checkpoint after each: {landed}")
    assert kills >= 1
    helpers.assert_same_run(reference, run)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == ITERATIONS


def test_a_metrics_line_cut_short_by_a_crash_is_dropped_on_resume(tmp_path: Path) -> None:
    from metarl.run.resume import truncate_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"iteration": 1}\n{"iteration": 2}\n{"iterat')
    truncate_metrics(path, 5)
    assert path.read_text() == '{"iteration": 1}\n{"iteration": 2}\n'


def test_resuming_a_run_killed_before_its_first_checkpoint_starts_it_over(
    cli: Any, tmp_path: Path, tiny: list[str], helpers: Any
) -> None:
    whole, run = tmp_path / "whole", tmp_path / "run"
    settings = [*tiny, "--iterations", "3"]
    assert cli("train", "navigation2d", "--run-dir", str(whole), *settings)[0] == 0
    assert cli("train", "navigation2d", "--run-dir", str(run), *settings)[0] == 0
    shutil.rmtree(run / "checkpoints")  # as if killed after logging, before the first save
    assert cli("train", "--resume", str(run), "--no-progress")[0] == 0
    helpers.assert_same_run(whole, run)


def test_a_run_dir_holding_only_a_cut_short_temporary_file_takes_a_new_run(
    cli: Any, tmp_path: Path, tiny: list[str]
) -> None:
    """kill -9 while the first file, config.yaml, was being written leaves config.yaml.tmp."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml.tmp").write_text("env_id: metarl/Navi")
    assert cli("train", "navigation2d", "--run-dir", str(run), *tiny, "--iterations", "1")[0] == 0
    (run / "notes.txt").write_text("mine")
    code, err = cli("train", "navigation2d", "--run-dir", str(run), *tiny, "--iterations", "1")
    assert code == 1 and "already exists and is not empty" in err
