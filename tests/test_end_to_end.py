"""Tiny real runs of `metarl train` and `metarl eval`, in-process, plus the trainer's contracts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from metarl.cli import main
from metarl.config import TrainConfig
from metarl.rl.bench import run_bench
from metarl.rl.meta_learner import MetaLearner
from metarl.run.checkpoint import load_checkpoint, save_checkpoint

TINY = ["--iterations", "2", "--meta-batch-size", "3", "--episodes-per-task", "2",
        "--horizon", "12", "--torch-threads", "1", "--no-progress"]


def _train(run_dir: Path, *extra: str) -> None:
    assert main(["train", "navigation2d", "--run-dir", str(run_dir), *TINY, *extra]) == 0


def _metrics(run_dir: Path) -> list[dict[str, float]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _without_timings(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in rows]


def test_train_then_eval_writes_the_promised_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _train(run)
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "curves.png",
                 "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    rows = _metrics(run)
    assert [r["iteration"] for r in rows] == [1, 2]
    for key in ("support/return", "query/return", "outer/kl", "outer/surrogate_before",
                "outer/surrogate_after", "outer/ls_steps", "time/rollout_s", "time/update_s",
                "env/steps"):
        assert key in rows[0], key
    assert rows[1]["env/steps"] == 2 * rows[0]["env/steps"] == 2 * (2 * 3 * 2 * 12)
    # best.pt: the parameters that sampled the best iteration, i.e. before its outer update
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    best_row = max(rows, key=lambda r: r["query/return"])
    assert best["query_return"] == pytest.approx(best_row["query/return"])
    assert best["iteration"] == best_row["iteration"] - 1
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 2

    assert main(["eval", str(run), "--tasks", "4", "--steps", "2", "--episodes", "3",
                 "--no-progress"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["metric"] == "return" and result["steps"] == [0, 1, 2]
    assert result["tasks"] == 4 and len(result["mean"]) == len(result["ci95"]) == 3
    assert len(result["per_task"]) == 4 and len(result["per_task"][0]) == 3
    assert result["step_sizes"] == [0.5, 0.25]  # the preset's inner step, then half
    assert (run / "eval_trajectories.png").stat().st_size > 1000


def test_same_seed_same_metrics_and_another_seed_differs(tmp_path: Path) -> None:
    _train(tmp_path / "a")
    _train(tmp_path / "b")
    _train(tmp_path / "c", "--seed", "1")
    a, b, c = (_without_timings(_metrics(tmp_path / x)) for x in "abc")
    assert a == b
    assert a != c


def test_trpo_iteration_respects_the_kl_bound() -> None:
    config = TrainConfig(meta_batch_size=4, episodes_per_task=4, horizon=20, max_kl=0.005)
    learner = MetaLearner(config)
    state = learner.initial_state()
    accepted = 0
    for _ in range(3):
        before = state.params
        state, metrics = learner.iteration(state)
        assert metrics["outer/kl"] <= 0.005
        if metrics["outer/accepted"]:
            accepted += 1
            assert metrics["outer/surrogate_after"] < metrics["outer/surrogate_before"]
            assert metrics["outer/kl"] > 0.0
            assert any(not torch.equal(before[k], state.params[k]) for k in before)
        else:
            assert all(torch.equal(before[k], state.params[k]) for k in before)
    # a run whose every step is rejected would pass the checks above with KL 0
    assert accepted >= 2


@pytest.mark.parametrize("extra", [
    ["--outer", "adam", "--outer-lr", "0.01"],
    ["--outer", "promp", "--estimator", "lvc", "--promp-steps", "2"],
    ["--estimator", "dice"],
    ["--learner", "fomaml"],
    ["--learner", "reptile", "--outer", "sgd", "--outer-lr", "0.5", "--inner-steps", "2"],
    ["--learner", "imaml", "--outer", "adam", "--inner-steps", "3"],
    ["--inner-steps", "2"],
    ["--first-order", "true", "--fvp-fraction", "1.0"],
])
def test_other_settings_train(tmp_path: Path, extra: list[str]) -> None:
    _train(tmp_path / "run", *extra)
    rows = _metrics(tmp_path / "run")
    assert len(rows) == 2 and all(abs(r["query/return"]) < 1e6 for r in rows)


def test_eval_rejects_a_corrupt_checkpoint_without_touching_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    _train(run)
    capsys.readouterr()
    (run / "checkpoints" / "best.pt").write_bytes(b"not a checkpoint")
    before = (run / "config.yaml").read_text()
    assert main(["eval", str(run), "--checkpoint", "best", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "corrupt" in err and "Traceback" not in err
    assert (run / "config.yaml").read_text() == before
    assert not (run / "eval.json").exists()


def test_eval_rejects_missing_checkpoint_and_non_run_dirs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(tmp_path), "--no-progress"]) == 1
    assert "not a metarl run directory" in capsys.readouterr().err
    run = tmp_path / "run"
    _train(run)
    capsys.readouterr()
    assert main(["eval", str(run), "--checkpoint", "worst", "--no-progress"]) != 0
    assert capsys.readouterr().err.count("\n") == 1


def test_unknown_environment_id_is_one_line_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), "--env-id", "metarl/Nope-v0",
                 *TINY]) == 1
    err = capsys.readouterr().err
    assert "unknown environment id" in err and err.count("\n") == 1
    assert not run.exists()


def test_bench_prints_its_figures() -> None:
    config = TrainConfig(meta_batch_size=2, episodes_per_task=2, horizon=10, torch_threads=1)
    result = run_bench(config, iterations=1, repeats=1)
    assert result["seconds_per_iteration_median"] > 0
    assert set(result["meta_gradient_seconds"]) == {
        "batched_chunk5", "batched_all", "vmap_chunk5", "loop"
    }
    assert result["peak_memory_mb"] > 0


def test_interrupted_training_keeps_its_finished_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_iteration = MetaLearner.iteration
    calls = {"n": 0}

    def interrupt_on_second_call(self: MetaLearner, state):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_iteration(self, state)

    monkeypatch.setattr(MetaLearner, "iteration", interrupt_on_second_call)
    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), *TINY]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 1
    assert len(_metrics(run)) == 1
    # the finished iteration is summarised and plotted as a finished run's are
    assert json.loads((run / "summary.json").read_text())["iterations"] == 1
    assert (run / "curves.png").stat().st_size > 0


def test_training_records_videos_every_video_interval(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _train(run, "--video-interval", "2")
    videos = sorted((run / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["iteration00002.mp4"]
    assert videos[0].stat().st_size > 1000


@pytest.mark.parametrize("extra", [[], ["--outer", "promp", "--estimator", "lvc"],
                                   ["--learner", "reptile", "--outer", "adam"]])
def test_resumed_run_ends_exactly_like_an_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: list[str]
) -> None:
    settings = ["--iterations", "4", "--meta-batch-size", "3", "--episodes-per-task", "2",
                "--horizon", "12", "--torch-threads", "1", "--no-progress", *extra]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert main(["train", "navigation2d", "--run-dir", str(whole), *settings]) == 0

    real_iteration = MetaLearner.iteration
    calls = {"n": 0}

    def stop_after_two(self: MetaLearner, state):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_iteration(self, state)

    monkeypatch.setattr(MetaLearner, "iteration", stop_after_two)
    assert main(["train", "navigation2d", "--run-dir", str(resumed), *settings]) == 130
    monkeypatch.setattr(MetaLearner, "iteration", real_iteration)
    assert load_checkpoint(resumed / "checkpoints" / "last.pt")["iteration"] == 2
    assert main(["train", "--resume", str(resumed), "--no-progress"]) == 0

    a = load_checkpoint(whole / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed / "checkpoints" / "last.pt")
    assert a["iteration"] == b["iteration"] == 4
    for name in a["params"]:
        assert torch.equal(a["params"][name], b["params"][name]), name
    assert _without_timings(_metrics(whole)) == _without_timings(_metrics(resumed))


def test_resume_refuses_a_changed_config(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    _train(run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--inner-lr", "0.2", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "cannot resume with a different inner_lr" in err and err.count("\n") == 1
    assert main(["train", "--resume", str(run), "--iterations", "3", "--no-progress"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 3
    assert [r["iteration"] for r in _metrics(run)] == [1, 2, 3]


def test_time_budget_stops_the_run_and_counts_earlier_sessions(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    _train(run, "--max-minutes", "1e-9")  # of 2 iterations; spent by the first
    assert "stopped at iteration 1: the time budget" in capsys.readouterr().out
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["iteration"] == 1 and last["train_seconds"] > 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["iterations"] == 1 and summary["train_minutes_total"] > 0
    # earlier sessions count: with an hour already trained, an hour's budget stops the resumed
    # run after one more iteration
    save_checkpoint(run / "checkpoints" / "last.pt", {**last, "train_seconds": 3600.0})
    more = ["--iterations", "5", "--no-progress"]
    assert main(["train", "--resume", str(run), *more, "--max-minutes", "60"]) == 0
    again = load_checkpoint(run / "checkpoints" / "last.pt")
    assert again["iteration"] == 2 and again["train_seconds"] > 3600.0
    # no budget: the run finishes its iterations
    assert main(["train", "--resume", str(run), *more, "--max-minutes", "0"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 5


def test_sigterm_checkpoints_and_exits_cleanly(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    command = [sys.executable, "-m", "metarl", "train", "navigation2d", "--run-dir", str(run),
               "--iterations", "100000", "--meta-batch-size", "2", "--episodes-per-task", "2",
               "--horizon", "10", "--torch-threads", "1", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (run / "metrics.jsonl").is_file() or not (run / "metrics.jsonl").read_text():
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.strip().splitlines()[-1].startswith("metarl: error: interrupted at iteration ")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] >= 1


def test_evaluating_the_other_checkpoint_keeps_the_runs_own_results(tmp_path: Path) -> None:
    """eval.json holds the run's eval_checkpoint (the preset's: last); the other checkpoint's
    evaluation is written beside it, whichever of the two the run names."""
    run = tmp_path / "run"
    _train(run)
    small = ["--tasks", "3", "--episodes", "2", "--no-progress"]
    assert main(["eval", str(run), *small]) == 0
    own = (run / "eval.json").read_text()
    assert json.loads(own)["checkpoint"] == "last"
    assert main(["eval", str(run), "--checkpoint", "best", *small]) == 0
    assert (run / "eval.json").read_text() == own
    assert json.loads((run / "eval_best.json").read_text())["checkpoint"] == "best"
    other = tmp_path / "best-run"
    _train(other, "--eval-checkpoint", "best")
    assert main(["eval", str(other), *small]) == 0
    assert main(["eval", str(other), "--checkpoint", "last", *small]) == 0
    assert json.loads((other / "eval.json").read_text())["checkpoint"] == "best"
    assert json.loads((other / "eval_last.json").read_text())["checkpoint"] == "last"


def test_imaml_runs_evaluate_with_proximal_solves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """iMAML adapts at test time as it did in training: one proximal solve per step, anchored
    at the current (per-task) policy, not a plain gradient step."""
    from metarl.rl.learners import imaml

    run = tmp_path / "run"
    _train(run, "--learner", "imaml", "--outer", "adam", "--inner-steps", "3")
    anchors_stacked = []
    solve = imaml.proximal_adapt  # type: ignore[attr-defined]

    def spy(*args: Any, **kwargs: Any) -> Any:
        anchors_stacked.append(kwargs.get("stacked"))
        return solve(*args, **kwargs)

    monkeypatch.setattr(imaml, "proximal_adapt", spy)
    assert main(["eval", str(run), "--tasks", "2", "--steps", "2", "--episodes", "2",
                 "--no-progress"]) == 0
    assert anchors_stacked == [True, True]
