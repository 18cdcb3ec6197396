"""`metarl train` / `metarl eval` on supervised presets, in-process and tiny: every learner trains
and evaluates, the run directory and eval.json hold what they promise, a resumed run ends
exactly where an uninterrupted one does, and bad input gives one line.

The real presets are used with small overrides; Omniglot runs read a tiny synthetic archive
(``write_synthetic_omniglot``: 80 characters, 28 x 28) through ``--data-path``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from metarl.cli import main
from metarl.fewshot.learners import training_step
from metarl.fewshot.omniglot import write_synthetic_omniglot
from metarl.run.checkpoint import load_checkpoint

SINUSOID_TINY = ["--iterations", "4", "--meta-batch-size", "3", "--val-interval", "2",
                 "--val-tasks", "5", "--eval-tasks", "7", "--eval-steps", "3",
                 "--log-interval", "2", "--checkpoint-interval", "2", "--torch-threads", "1",
                 "--no-progress"]
OMNIGLOT_TINY = ["--iterations", "2", "--meta-batch-size", "2", "--filters", "4",
                 "--val-interval", "2", "--val-tasks", "3", "--eval-tasks", "5",
                 "--log-interval", "1", "--checkpoint-interval", "1", "--torch-threads", "1",
                 "--no-progress"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding omniglot/ with the synthetic archives."""
    base = tmp_path_factory.mktemp("data")
    write_synthetic_omniglot(base / "omniglot", characters=80)
    return base


def _one_error_line(capsys: pytest.CaptureFixture[str], needle: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metarl: error: "), captured.err
    assert needle in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def _with(args: list[str], **changes: str) -> list[str]:
    """``args`` with the values of the given ``--flag``s replaced (``val_interval=...``)."""
    out = list(args)
    for name, value in changes.items():
        out[out.index("--" + name.replace("_", "-")) + 1] = value
    return out


def _metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _check_eval(run: Path, metric: str, steps: int, tasks: int) -> dict[str, Any]:
    result = json.loads((run / "eval.json").read_text())
    assert result["metric"] == metric
    assert result["steps"] == list(range(steps + 1))
    assert len(result["mean"]) == len(result["ci95"]) == steps + 1
    assert result["tasks"] == tasks and len(result["per_task"]) == tasks
    assert all(len(row) == steps + 1 for row in result["per_task"])
    per_task = torch.tensor(result["per_task"], dtype=torch.float64)
    assert torch.allclose(per_task.mean(0), torch.tensor(result["mean"], dtype=torch.float64))
    assert all(ci >= 0 for ci in result["ci95"])
    if metric == "accuracy":
        assert ((per_task >= 0) & (per_task <= 1)).all()
    else:
        assert (per_task >= 0).all()
    return result


@pytest.mark.parametrize("learner", ["maml", "fomaml", "reptile", "imaml", "pretrained",
                                     "scratch"])
def test_sinusoid_learner_trains_and_evaluates(learner: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", f"sinusoid_{learner}", "--run-dir", str(run), *SINUSOID_TINY]) == 0
    for name in ("config.yaml", "summary.json", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["minutes"] >= 0 and summary["peak_memory_mb"] > 0
    if learner != "scratch":
        assert list((run / "tensorboard").glob("events.out.tfevents.*"))
        rows = _metrics(run)
        assert [row["iteration"] for row in rows] == [1, 2, 3, 4]
        assert all("train/loss" in row and "time/iteration_s" in row for row in rows)
        assert "val/mse" in rows[1] and "val/mse" not in rows[0]
        best = load_checkpoint(run / "checkpoints" / "best.pt")
        validated = [row for row in rows if "val/mse" in row]
        best_row = min(validated, key=lambda row: row["val/mse"])
        assert best["iteration"] == best_row["iteration"]
        assert best["val_score"] == pytest.approx(best_row["val/mse"])
        assert summary["iterations"] == 4 and summary["best_val_mse"] == best["val_score"]
        assert (run / "curves.png").stat().st_size > 0
    else:
        assert not (run / "curves.png").exists()  # nothing trained, nothing to draw
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == (
        0 if learner == "scratch" else 4)
    capsys.readouterr()
    assert main(["eval", str(run), "--no-progress"]) == 0
    _check_eval(run, "mse", steps=3, tasks=7)
    table = capsys.readouterr().out
    assert "mse" in table and "95% CI" in table and "eval.json" in table


@pytest.mark.parametrize("learner", ["maml", "fomaml", "reptile", "imaml", "protonet"])
def test_omniglot_learner_trains_and_evaluates(learner: str, data: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    extra = ["--train-ways", "10"] if learner == "protonet" else []
    assert main(["train", f"omniglot_5w1s_{learner}", "--run-dir", str(run),
                 "--data-path", str(data), *OMNIGLOT_TINY, *extra]) == 0
    rows = _metrics(run)
    assert [row["iteration"] for row in rows] == [1, 2]
    assert "val/accuracy" in rows[1]
    steps = 0 if learner == "protonet" else 2
    capsys.readouterr()
    assert main(["eval", str(run), "--steps", str(steps), "--no-progress"]) == 0
    result = _check_eval(run, "accuracy", steps=steps, tasks=5)
    assert result["adaptation"] == {"maml": "sgd", "fomaml": "sgd", "reptile": "adam",
                                    "imaml": "proximal sgd", "protonet": "prototypes"}[learner]
    assert "accuracy %" in capsys.readouterr().out
    assert main(["eval", str(run), "--checkpoint", "last", "--tasks", "3", "--steps",
                 str(steps), "--no-progress"]) == 0
    assert json.loads((run / "eval_last.json").read_text())["checkpoint"] == "last"
    assert json.loads((run / "eval.json").read_text())["tasks"] == 5  # not replaced


def test_omniglot_20_way_and_scratch(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "omniglot_20w1s_maml", "--learner", "scratch", "--run-dir", str(run),
                 "--data-path", str(data), *OMNIGLOT_TINY]) == 0
    assert main(["eval", str(run), "--steps", "1", "--no-progress"]) == 0
    result = _check_eval(run, "accuracy", steps=1, tasks=5)
    assert result["ways"] == 20 and result["checkpoint_iteration"] == 0


def _state(run: Path) -> dict[str, Any]:
    return load_checkpoint(run / "checkpoints" / "last.pt")


def _without_timings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in rows]


@pytest.mark.parametrize(("preset", "extra"), [
    ("sinusoid_maml", SINUSOID_TINY),
    ("sinusoid_reptile", SINUSOID_TINY),
    ("omniglot_5w1s_reptile", [*OMNIGLOT_TINY, "--eval-steps", "3"]),  # sgd, linear, Adam inner
    ("omniglot_5w1s_maml", OMNIGLOT_TINY),
])
def test_resume_after_an_interruption_ends_exactly_where_an_uninterrupted_run_does(
        preset: str, extra: list[str], data: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    common = [*_with(extra, iterations="6", val_interval="3"), "--data-path", str(data)]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(["train", preset, "--run-dir", str(whole), *common]) == 0
    def interrupted(config: Any, problem: Any, state: Any, generator: Any) -> Any:
        if state.iteration == 3:  # Ctrl-C during the fourth iteration
            raise KeyboardInterrupt
        return training_step(config, problem, state, generator)

    monkeypatch.setattr("metarl.fewshot.run.training_step", interrupted)
    assert main(["train", preset, "--run-dir", str(parts), *common]) == 130
    _one_error_line(capsys, "interrupted")
    assert _state(parts)["iteration"] == 3
    # the finished iterations are summarised and plotted as a finished run's are
    assert json.loads((parts / "summary.json").read_text())["iterations"] == 3
    assert (parts / "curves.png").stat().st_size > 0
    monkeypatch.undo()
    assert main(["train", "--resume", str(parts), "--no-progress"]) == 0
    _assert_same_run(whole, parts)


def test_a_finished_run_extended_by_iterations_continues_exactly(tmp_path: Path) -> None:
    common = _with(SINUSOID_TINY, iterations="6", val_interval="3")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(["train", "sinusoid_fomaml", "--run-dir", str(whole), *common]) == 0
    common = _with(common, iterations="3")
    assert main(["train", "sinusoid_fomaml", "--run-dir", str(parts), *common]) == 0
    assert main(["train", "--resume", str(parts), "--iterations", "6", "--no-progress"]) == 0
    _assert_same_run(whole, parts)


def test_resume_refuses_changes_that_alter_training(tmp_path: Path, data: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "omniglot_5w1s_reptile", "--run-dir", str(run), "--data-path",
                 str(data), *OMNIGLOT_TINY]) == 0
    capsys.readouterr()
    # The linear schedule's rates depend on the iteration count.
    assert main(["train", "--resume", str(run), "--iterations", "4"]) == 1
    _one_error_line(capsys, "cannot resume with a different iterations")
    assert main(["train", "--resume", str(run), "--inner-lr", "0.1"]) == 1
    _one_error_line(capsys, "cannot resume with a different inner_lr")


def _assert_same_run(whole: Path, parts: Path) -> None:
    a, b = _state(whole), _state(parts)
    assert a["iteration"] == b["iteration"] == 6
    for key in a["params"]:
        assert torch.equal(a["params"][key], b["params"][key]), key
    assert torch.equal(a["rng"], b["rng"])
    if a["adam"] is not None:
        assert a["adam"]["step"] == b["adam"]["step"] == 6
        for key in a["adam"]["second_moment"]:
            assert torch.equal(a["adam"]["second_moment"][key], b["adam"]["second_moment"][key])
    assert _without_timings(_metrics(whole)) == _without_timings(_metrics(parts))
    best_a = load_checkpoint(whole / "checkpoints" / "best.pt")
    best_b = load_checkpoint(parts / "checkpoints" / "best.pt")
    assert best_a["iteration"] == best_b["iteration"]
    assert all(torch.equal(best_a["params"][k], best_b["params"][k]) for k in best_a["params"])


# Bad input: one line, non-zero exit, nothing written --------------------------------------------


def test_missing_omniglot_says_where_to_put_it(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "omniglot_5w1s_maml", "--run-dir", str(run), "--data-path",
                 str(empty), "--no-progress"]) == 1
    line = _one_error_line(capsys, f"Omniglot data not found in {empty}")
    assert "images_background.npz" in line and "METARL_DATA" in line
    assert "nothing is downloaded" in line
    assert not run.exists()


def test_missing_omniglot_without_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("METARL_DATA", str(tmp_path / "nowhere"))
    assert main(["train", "omniglot_5w1s_protonet", "--run-dir", str(tmp_path / "run")]) == 1
    _one_error_line(capsys, f"Omniglot data not found in {tmp_path / 'nowhere' / 'omniglot'}")


def test_metarl_data_names_the_folder_holding_omniglot(data: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METARL_DATA", str(data))
    run = tmp_path / "run"
    assert main(["train", "omniglot_5w1s_fomaml", "--run-dir", str(run), *OMNIGLOT_TINY]) == 0
    assert main(["eval", str(run), "--tasks", "2", "--steps", "1", "--no-progress"]) == 0


@pytest.mark.parametrize(("argv", "needle"), [
    (["train", "sinusoid_maml", "--ways", "5"], "problem sinusoid has ways 1, not 5"),
    (["train", "sinusoid_maml", "--inner-lr", "-1"], "inner_lr must be > 0, got -1.0"),
    (["train", "sinusoid_maml", "--meta-batch-size", "many"], "meta_batch_size must be an"),
    (["train", "sinusoid_maml", "--horizon", "10"], "unknown config field 'horizon'"),
    (["bench", "sinusoid_maml"], "metarl bench times RL presets"),
])
def test_bad_input_is_one_line(argv: list[str], needle: str, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--run-dir", str(tmp_path / "run")] if argv[0] == "train"
                else argv) == 1
    _one_error_line(capsys, needle)
    assert not (tmp_path / "run").exists()


def test_eval_options_that_do_not_apply(data: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "omniglot_5w1s_protonet", "--run-dir", str(run), "--data-path",
                 str(data), "--train-ways", "5", *OMNIGLOT_TINY]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--steps", "3"]) == 1
    _one_error_line(capsys, "--steps does not apply to learner protonet")
    assert main(["eval", str(run), "--episodes", "3"]) == 1
    _one_error_line(capsys, "--episodes applies to RL runs")
    assert main(["eval", str(run), "--batch-unit", "steps"]) == 1
    _one_error_line(capsys, "--batch-unit applies to RL runs")
    (run / "checkpoints" / "best.pt").write_bytes(b"not a checkpoint")
    assert main(["eval", str(run)]) == 1
    _one_error_line(capsys, "corrupt or unreadable")
