"""Tiny real runs of the discrete presets (bandit_k5, bandit_k10, tabular_mdp): train, eval and
compare in-process, in seconds; the checkpoint's policy kind; video's refusal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metarl.cli import main
from metarl.config import load_config
from metarl.envs import make_task_vector_env, sample_held_out_tasks
from metarl.rl.oracle import known_optimal_returns
from metarl.run.checkpoint import load_checkpoint, save_checkpoint

TINY = ["--iterations", "2", "--meta-batch-size", "3", "--episodes-per-task", "2",
        "--torch-threads", "1", "--no-progress"]
EVAL = ["--tasks", "3", "--steps", "1", "--episodes", "2", "--no-progress"]


@pytest.mark.parametrize("preset, policy_params", [
    ("bandit_k5", 5), ("bandit_k10", 10), ("tabular_mdp", 5)])
def test_preset_trains_and_evaluates_with_a_categorical_policy(
        tmp_path: Path, preset: str, policy_params: int) -> None:
    run = tmp_path / preset
    assert main(["train", preset, "--run-dir", str(run), *TINY]) == 0
    checkpoint = load_checkpoint(run / "checkpoints" / "last.pt")
    assert checkpoint["policy"] == "categorical"
    assert "log_std" not in checkpoint["params"]
    last_bias = max(k for k in checkpoint["params"] if k.endswith(".bias"))
    assert checkpoint["params"][last_bias].shape == (policy_params,)  # one logit per action
    assert main(["eval", str(run), *EVAL]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["steps"] == [0, 1] and len(result["per_task"]) == 3
    horizon = load_config(run / "config.yaml").horizon
    assert all(np.isfinite(result["mean"]))
    if preset.startswith("bandit"):  # 0 or 1 per pull
        assert all(0.0 <= m <= horizon for m in result["mean"])


def test_compare_uses_the_known_optimum_as_the_oracle(tmp_path: Path) -> None:
    run = tmp_path / "bandit"
    assert main(["train", "bandit_k5", "--run-dir", str(run), *TINY]) == 0
    assert main(["compare", str(run), "--baselines", "random,oracle", *EVAL]) == 0
    results = json.loads((run / "compare" / "compare.json").read_text())
    assert set(results) == {"MAML-TRPO", "random", "oracle"}
    config = load_config(run / "config.yaml")
    env = make_task_vector_env(config.env_id, 1)
    held_out = sample_held_out_tasks(env, 3, np.random.default_rng(1000))
    best = [config.horizon * max(t.as_array("probabilities")) for t in held_out]
    assert results["oracle"]["mean"][0] == pytest.approx(float(np.mean(best)))
    assert not (run / "baselines" / "oracle").exists()  # no PPO was trained
    optimum = known_optimal_returns(config, 3, 1000)
    assert optimum is not None and optimum.tolist() == pytest.approx(best)


def test_known_optimum_of_the_mdp_is_value_iteration_and_absent_elsewhere(
        tmp_path: Path) -> None:
    from metarl.envs.tabular_mdp import optimal_return

    config = load_config(Path("experiments/tabular_mdp.yaml"))
    env = make_task_vector_env(config.env_id, 1)
    held_out = sample_held_out_tasks(env, 2, np.random.default_rng(7))
    expected = [optimal_return(t, 10, 5, config.horizon) for t in held_out]
    assert known_optimal_returns(config, 2, 7).tolist() == pytest.approx(expected)  # type: ignore[union-attr]
    navigation = load_config(Path("experiments/navigation2d.yaml"))
    assert known_optimal_returns(navigation, 2, 7) is None


def test_a_checkpoint_of_another_policy_kind_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "bandit_k5", "--run-dir", str(run), *TINY]) == 0
    best = run / "checkpoints" / "best.pt"
    payload = load_checkpoint(best)
    save_checkpoint(best, {**payload, "policy": "gaussian"})
    assert main(["eval", str(run), *EVAL]) != 0
    err = capsys.readouterr().err
    assert "holds a gaussian policy" in err and len(err.strip().splitlines()) == 1


def test_video_refuses_a_discrete_family_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "bandit_k5", "--run-dir", str(run), *TINY]) == 0
    assert main(["video", str(run)]) != 0
    err = capsys.readouterr().err
    assert "discrete actions" in err and len(err.strip().splitlines()) == 1


def test_discrete_training_is_reproducible(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert main(["train", "tabular_mdp", "--run-dir", str(tmp_path / name), *TINY]) == 0
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["params"]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["params"]
    assert all(torch.equal(a[k], b[k]) for k in a)
