"""`metarl compare` and its baselines: pretrained, random initialisation, oracle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from metarl.cli import main
from metarl.config import TrainConfig, load_config
from metarl.envs import make_task_vector_env
from metarl.rl.compare import paired_differences, parse_baselines, pretrained_config
from metarl.rl.meta_learner import MetaLearner
from metarl.rl.oracle import evaluate_oracle
from metarl.rl.policy import initial_params

TINY = ["--iterations", "2", "--meta-batch-size", "3", "--episodes-per-task", "2",
        "--horizon", "12", "--torch-threads", "1", "--no-progress"]


def test_parse_baselines() -> None:
    assert parse_baselines("pretrained, oracle") == ["pretrained", "oracle"]
    with pytest.raises(ValueError, match="unknown baseline 'expert'"):
        parse_baselines("random,expert")


def test_pretrained_config_keeps_the_run_budget_and_drops_adaptation_only_fields() -> None:
    run = TrainConfig(outer="promp", estimator="lvc", iterations=7, video_interval=3)
    baseline = pretrained_config(run, None)
    assert (baseline.learner, baseline.outer, baseline.estimator) == ("pretrained", "trpo", "maml")
    assert baseline.iterations == 7 and baseline.video_interval == 0
    assert baseline.meta_batch_size == run.meta_batch_size
    assert pretrained_config(run, 3).iterations == 3


def test_random_baseline_starts_where_the_run_started() -> None:
    config = TrainConfig(seed=5)
    expected = MetaLearner(config).initial_state().params
    for name, value in initial_params(config).items():
        torch.testing.assert_close(value, expected[name])


class _StandStill:
    """A stand-in oracle that never moves: its return is known in closed form."""

    def predict(self, obs: np.ndarray, deterministic: bool = False) -> tuple[np.ndarray, Any]:
        assert obs.shape[1] == 4  # position and revealed goal
        return np.zeros((obs.shape[0], 2), np.float32), None


def test_oracle_evaluation_on_the_held_out_tasks_matches_a_hand_computation() -> None:
    config = TrainConfig(horizon=7)
    returns = evaluate_oracle(config, _StandStill(), tasks=4, episodes=2, seed=1000)
    held_out = make_task_vector_env(config.env_id, 1).sample_tasks(4, np.random.default_rng(1000))
    # the point stays at the origin: reward -|goal| at each of the 7 steps
    expected = [-7 * np.linalg.norm(t.as_array("goal")) for t in held_out]
    np.testing.assert_allclose(returns, expected, rtol=1e-5)


def test_compare_cli_writes_table_plot_and_reuses_the_pretrained_baseline(
        tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), *TINY]) == 0
    args = ["compare", str(run), "--baselines", "pretrained,random", "--tasks", "3", "--steps",
            "1", "--episodes", "2", "--pretrained-iterations", "2", "--no-progress"]
    assert main(args) == 0
    result = json.loads((run / "compare" / "compare.json").read_text())
    assert list(result) == ["MAML-TRPO", "pretrained", "random"]
    for row in result.values():
        assert row["steps"] == [0, 1] and len(row["mean"]) == len(row["ci95"]) == 2
    assert (run / "compare" / "compare.png").is_file()
    assert "| pretrained |" in (run / "compare" / "compare.md").read_text()
    assert "| MAML-TRPO - random |" in (run / "compare" / "compare.md").read_text()
    checkpoint = run / "baselines" / "pretrained" / "checkpoints" / "best.pt"
    trained_at = checkpoint.stat().st_mtime_ns
    assert main(args) == 0  # the second comparison evaluates again but does not retrain
    assert checkpoint.stat().st_mtime_ns == trained_at
    assert json.loads((run / "compare" / "compare.json").read_text()) == result


def test_paired_differences_are_per_task_and_skip_methods_without_tasks() -> None:
    # per_task is [tasks, steps]; the run gains 1, 2, 3 over the baseline on three tasks at step 1
    ours = {"steps": [0, 1], "per_task": [[0.0, 11.0], [100.0, 102.0], [-50.0, -47.0]]}
    baseline = {"steps": [0, 1], "per_task": [[0.0, 10.0], [100.0, 100.0], [-50.0, -50.0]]}
    oracle = {"steps": [0, 1]}  # one number per task, recorded without per-task returns
    lines = paired_differences({"MAML-TRPO": ours, "pretrained": baseline, "oracle": oracle})
    rows = [line for line in lines if line.startswith("| MAML")]
    half_width = 1.96 / np.sqrt(3)  # the differences 1, 2, 3 have sample std 1
    assert rows == [f"| MAML-TRPO - pretrained | 0.00 (0.00) | 2.00 ({half_width:.2f}) |"]
    assert paired_differences({"MAML-TRPO": oracle, "pretrained": baseline}) == []


def test_compare_rejects_bad_input_on_one_line(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["compare", str(run), "--baselines", "expert"]) == 1
    err = capsys.readouterr().err
    assert "unknown baseline 'expert'" in err and len(err.strip().splitlines()) == 1


def test_checkpoint_of_another_policy_is_refused_on_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from metarl.run.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), *TINY]) == 0
    best = run / "checkpoints" / "best.pt"
    payload = load_checkpoint(best)
    save_checkpoint(best, {**payload, "params": {"w": torch.zeros(3)}})
    capsys.readouterr()
    for command in (["eval", str(run), "--checkpoint", "best", "--no-progress"],
                    ["compare", str(run), "--baselines", "random", "--checkpoint", "best",
                     "--no-progress"]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert "holds parameters ['w']" in err and len(err.strip().splitlines()) == 1


def test_compare_refuses_a_supervised_run_on_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "sinusoid"
    run.mkdir()
    (run / "config.yaml").write_text("problem: sinusoid\n")
    assert main(["compare", str(run)]) == 1
    err = capsys.readouterr().err
    assert "supervised few-shot run" in err and len(err.strip().splitlines()) == 1


class _HalfThrottle:
    """A stand-in oracle acting +0.5 in PPO's [-1, 1] space: +0.05 per axis in navigation's."""

    def predict(self, obs: np.ndarray, deterministic: bool = False) -> tuple[np.ndarray, Any]:
        return np.full((obs.shape[0], 2), 0.5, np.float32), None


def test_oracle_actions_are_rescaled_to_the_environment_bounds() -> None:
    config = TrainConfig(horizon=3)
    returns = evaluate_oracle(config, _HalfThrottle(), tasks=3, episodes=1, seed=1000)
    held_out = make_task_vector_env(config.env_id, 1).sample_tasks(3, np.random.default_rng(1000))
    expected = [-sum(np.linalg.norm(np.full(2, 0.05 * k) - t.as_array("goal"))
                     for k in (1, 2, 3)) for t in held_out]
    np.testing.assert_allclose(returns, expected, rtol=1e-5)


def test_a_comparison_adds_to_the_last_one_and_records_its_budgets(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), *TINY]) == 0
    common = ["--tasks", "3", "--steps", "1", "--episodes", "2", "--no-progress"]
    assert main(["compare", str(run), "--baselines", "pretrained", "--pretrained-iterations",
                 "2", *common]) == 0
    assert main(["compare", str(run), "--baselines", "random", *common]) == 0
    result = json.loads((run / "compare" / "compare.json").read_text())
    assert set(result) == {"MAML-TRPO", "pretrained", "random"}  # pretrained is kept
    assert result["pretrained"]["iterations"] == 2 and result["pretrained"]["tasks"] == 3
    assert result["MAML-TRPO"]["checkpoint_iteration"] is not None
    assert "| pretrained |" in (run / "compare" / "compare.md").read_text()
    assert "| MAML-TRPO - random |" in (run / "compare" / "compare.md").read_text()
    capsys.readouterr()
    # another protocol in the same folder is refused, naming what differs
    assert main(["compare", str(run), "--baselines", "random", "--tasks", "4", "--steps", "1",
                 "--episodes", "2", "--no-progress"]) == 1
    assert "tasks 3 (now 4)" in capsys.readouterr().err
    # a changed pretrained budget is refused, naming the field and how to reuse it
    assert main(["compare", str(run), "--baselines", "pretrained", "--pretrained-iterations",
                 "3", *common, "--out", str(tmp_path / "other")]) == 1
    err = capsys.readouterr().err
    assert "iterations 2 (asked: 3)" in err and "--pretrained-iterations 2" in err


def test_a_saved_oracle_of_another_budget_is_not_reused(tmp_path: Path) -> None:
    pytest.importorskip("stable_baselines3")
    from metarl.rl.oracle import train_oracle

    out = tmp_path / "oracle"
    out.mkdir()
    (out / "model.zip").write_bytes(b"not read: the budget check comes first")
    (out / "budget.json").write_text('{"timesteps": 5000}')
    with pytest.raises(ValueError, match="trained for 5000 PPO steps, not 20000"):
        train_oracle(TrainConfig(), out, timesteps=20000)


def test_baselines_can_fine_tune_with_their_own_step_size(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), *TINY]) == 0
    assert main(["compare", str(run), "--baselines", "random", "--tasks", "3", "--steps", "2",
                 "--episodes", "2", "--baseline-inner-lr", "0.02", "--no-progress"]) == 0
    result = json.loads((run / "compare" / "compare.json").read_text())
    run_rate = load_config(run / "config.yaml").inner_lr
    assert result["MAML-TRPO"]["step_sizes"] == [run_rate, run_rate / 2]
    assert result["random"]["step_sizes"] == [0.02, 0.01]
    assert "random 0.02, 0.01" in (run / "compare" / "compare.md").read_text()


def test_a_pretrained_baseline_is_reused_when_only_the_runs_budget_changed(
        tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), *TINY]) == 0
    common = ["--baselines", "pretrained", "--pretrained-iterations", "2", "--tasks", "2",
              "--steps", "1", "--episodes", "2", "--no-progress"]
    assert main(["compare", str(run), *common]) == 0
    # the run resumed later with a larger time budget: its baseline still stands
    config = run / "config.yaml"
    assert "max_minutes: 0.0\n" in config.read_text()
    config.write_text(config.read_text().replace("max_minutes: 0.0", "max_minutes: 90.0"))
    assert main(["compare", str(run), *common]) == 0


def test_batch_unit_is_part_of_the_protocol_and_older_comparisons_counted_episodes(
        tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), *TINY,
                 "--batch-unit", "episodes"]) == 0
    common = ["--baselines", "random", "--tasks", "2", "--steps", "1", "--episodes", "2",
              "--no-progress"]
    assert main(["compare", str(run), *common]) == 0
    saved = run / "compare" / "compare.json"
    result = json.loads(saved.read_text())
    assert {row["batch_unit"] for row in result.values()} == {"episodes"}
    # a comparison written before the key existed counted episodes: it still merges
    for row in result.values():
        del row["batch_unit"]
    saved.write_text(json.dumps(result))
    assert main(["compare", str(run), *common]) == 0
    # counted in steps, the same tasks are another protocol: refused on one line, or elsewhere
    assert main(["compare", str(run), *common, "--batch-unit", "steps"]) == 1
    out = tmp_path / "steps"
    assert main(["compare", str(run), *common, "--batch-unit", "steps", "--out", str(out)]) == 0
    counted = json.loads((out / "compare.json").read_text())
    assert {row["batch_unit"] for row in counted.values()} == {"steps"}
    assert "whole episodes to 24 steps per task" in (out / "compare.md").read_text()
