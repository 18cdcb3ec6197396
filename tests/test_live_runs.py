"""What commands do with a run that is still training, and the labels that tie a checkpoint to
its metrics: a live run's evaluation is interim and never writes eval.json; a stale marker is
ignored; the best checkpoint names the metrics row of its return; a few-shot run records where
it found its data, so that evaluating it needs no environment variable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metarl.cli import main
from metarl.fewshot.omniglot import write_synthetic_omniglot
from metarl.run.checkpoint import load_checkpoint
from metarl.run.live import MARKER, clear_running, mark_running, running_pid

TINY = ["--iterations", "3", "--meta-batch-size", "2", "--episodes-per-task", "2",
        "--horizon", "5", "--hidden-sizes", "[8]", "--torch-threads", "1", "--no-progress",
        "--eval-tasks", "2", "--eval-episodes", "2", "--eval-steps", "1"]


def _marker_of(run: Path, pid: int) -> None:
    mark_running(run)
    marker = json.loads((run / MARKER).read_text())
    (run / MARKER).write_text(json.dumps({**marker, "pid": pid}))


def test_the_loop_marks_a_run_only_while_it_runs(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    import metarl.rl.trainer as trainer

    real_step = trainer.RLRun.step

    def step(self: trainer.RLRun, budget_spent: object) -> dict[str, float]:
        seen.append((self.run_dir / MARKER).is_file())
        return real_step(self, budget_spent)  # type: ignore[arg-type]

    monkeypatch.setattr(trainer.RLRun, "step", step)
    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), *TINY]) == 0
    assert seen == [True, True, True]
    assert not (run / MARKER).exists()


def test_evaluating_a_live_run_is_interim(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), *TINY]) == 0
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _marker_of(run, other.pid)
        assert running_pid(run) == other.pid
        capsys.readouterr()
        assert main(["eval", str(run), "--no-progress"]) == 0
        out = capsys.readouterr().out
    finally:
        other.kill()
        other.wait()
    assert "still training" in out and "interim" in out
    assert json.loads((run / "eval_interim.json").read_text())["interim"] is True
    assert not (run / "eval.json").exists()
    assert running_pid(run) is None  # its process has ended: the marker is stale
    assert main(["eval", str(run), "--no-progress"]) == 0
    assert "interim" not in json.loads((run / "eval.json").read_text())
    clear_running(run)


def test_the_best_checkpoint_names_the_metrics_row_of_its_return(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), *TINY]) == 0
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    rows = {json.loads(line)["iteration"]: json.loads(line)
            for line in (run / "metrics.jsonl").read_text().splitlines()}
    assert best["measured_at_iteration"] == best["iteration"] + 1
    assert rows[best["measured_at_iteration"]]["query/return"] == pytest.approx(
        best["query_return"])
    assert main(["eval", str(run), "--checkpoint", "best", "--no-progress"]) == 0
    result = json.loads((run / "eval_best.json").read_text())
    assert result["checkpoint_measured_at_iteration"] == best["measured_at_iteration"]


def test_a_fewshot_run_records_its_data_folder(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    write_synthetic_omniglot(data / "omniglot", characters=80)
    monkeypatch.setenv("METARL_DATA", str(data))
    run = tmp_path / "run"
    assert main(["train", "omniglot_5w1s_protonet", "--run-dir", str(run), "--iterations", "1",
                 "--meta-batch-size", "2", "--filters", "4", "--val-interval", "0",
                 "--eval-tasks", "3", "--torch-threads", "1", "--no-progress"]) == 0
    monkeypatch.delenv("METARL_DATA")
    assert f"data_path: {data / 'omniglot'}" in (run / "config.yaml").read_text()
    assert main(["eval", str(run), "--no-progress"]) == 0
    moved = tmp_path / "moved"
    data.rename(moved)
    assert main(["eval", str(run), "--no-progress"]) == 1  # the recorded folder is gone
    assert main(["eval", str(run), "--no-progress", "--data-path", str(moved)]) == 0


def test_data_path_is_refused_for_an_rl_run(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--data-path", "x"]) == 1
    assert "--data-path applies to few-shot runs" in capsys.readouterr().err


def test_tensorboard_shows_the_runs_config(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), *TINY]) == 0
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    assert "config/text_summary" in events.Tags()["tensors"]
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "env_id: metarl/Navigation2D-v0" in text


def test_the_policys_entropy_and_std_are_logged(tmp_path: Path) -> None:
    import math

    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), *TINY]) == 0
    last_row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    log_std = load_checkpoint(run / "checkpoints" / "last.pt")["params"]["log_std"]
    # a diagonal Gaussian's entropy: sum over dimensions of log std + (1 + log 2 pi) / 2
    expected = float((log_std + 0.5 * (1 + math.log(2 * math.pi))).sum())
    assert last_row["policy/entropy"] == pytest.approx(expected, rel=1e-5)
    assert last_row["policy/std"] == pytest.approx(float(log_std.exp().mean()), rel=1e-6)


def test_periodic_held_out_evaluation_is_logged_and_changes_no_training(tmp_path: Path) -> None:
    from metarl.config import load_config
    from metarl.rl.evaluation import evaluate_adaptation

    plain, evaluated = tmp_path / "plain", tmp_path / "evaluated"
    assert main(["train", "navigation2d", "--run-dir", str(plain), *TINY]) == 0
    assert main(["train", "navigation2d", "--run-dir", str(evaluated), *TINY,
                 "--eval-interval", "2"]) == 0
    rows = [json.loads(line) for line in (evaluated / "metrics.jsonl").read_text().splitlines()]
    assert ["heldout/return_step1" in row for row in rows] == [False, True, False]
    # the last iteration's parameters, evaluated again: the same figures as a later eval_interval
    config = load_config(evaluated / "config.yaml")
    params = load_checkpoint(evaluated / "checkpoints" / "last.pt")["params"]
    again = main(["train", "--resume", str(evaluated), "--iterations", "4", "--no-progress"])
    assert again == 0
    row = json.loads((evaluated / "metrics.jsonl").read_text().splitlines()[-1])
    resumed = load_checkpoint(evaluated / "checkpoints" / "last.pt")["params"]
    outcome = evaluate_adaptation(config, resumed, 2, 1, 2, seed=1000)
    assert row["heldout/return_step0"] == pytest.approx(float(outcome["returns"][0].mean()))
    assert row["heldout/return_step1"] == pytest.approx(float(outcome["returns"][1].mean()))
    assert any(not torch.equal(params[k], resumed[k]) for k in params)

    def training(row: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in row.items() if not k.startswith(("time/", "heldout/"))}

    plain_rows = [json.loads(line) for line in (plain / "metrics.jsonl").read_text().splitlines()]
    assert [training(r) for r in rows] == [training(r) for r in plain_rows]
