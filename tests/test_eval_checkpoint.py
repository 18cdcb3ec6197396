"""eval_checkpoint: the checkpoint that `metarl eval`, `compare` and `video` take by default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metarl.config import ConfigError, TrainConfig
from metarl.rl import evaluation


def test_config_checks_the_checkpoint():
    from metarl.config import _CHECKPOINTS
    from metarl.run.checkpoint import CHECKPOINTS

    assert _CHECKPOINTS == CHECKPOINTS and TrainConfig().eval_checkpoint == "best"
    with pytest.raises(ConfigError, match="eval_checkpoint"):
        TrainConfig(eval_checkpoint="final")


def _iterations(run: Path) -> dict[str, int]:
    from metarl.run.checkpoint import load_checkpoint

    return {name: int(load_checkpoint(run / "checkpoints" / f"{name}.pt")["iteration"])
            for name in ("best", "last")}


def test_a_run_evaluates_its_eval_checkpoint_unless_told(tmp_path):
    from metarl.rl.trainer import train

    config = TrainConfig(iterations=3, meta_batch_size=2, episodes_per_task=2, horizon=5,
                         hidden_sizes=(8,), eval_tasks=2, eval_steps=1, eval_episodes=2,
                         torch_threads=1, eval_checkpoint="last")
    run = tmp_path / "run"
    train(config, run, progress=False)  # writes run / "config.yaml"
    iterations = _iterations(run)
    assert iterations["best"] < iterations["last"]  # so that the two can be told apart
    own = evaluation.evaluate_run(run, progress=False)
    assert own["checkpoint"] == "last" and own["checkpoint_iteration"] == iterations["last"] == 3
    assert json.loads((run / "eval.json").read_text())["checkpoint"] == "last"
    import torch

    threads = torch.get_num_threads()
    try:  # the run's torch_threads is 1; the argument replaces it
        best = evaluation.evaluate_run(run, progress=False, checkpoint="best", torch_threads=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert best["checkpoint_iteration"] == iterations["best"]
    assert json.loads((run / "eval_best.json").read_text())["checkpoint"] == "best"

    from metarl.rl import compare

    results = compare.compare_run(run, ["random"], progress=False)
    row = results["MAML-TRPO"]
    assert row["checkpoint_name"] == "last" and row["checkpoint_iteration"] == 3
    assert row["mean"] == own["mean"]  # the same checkpoint, tasks and seeds as eval

    # the other checkpoint compares into its own folder; the run's own comparison stays
    other = compare.compare_run(run, ["random"], progress=False, checkpoint="best")
    assert other["MAML-TRPO"]["checkpoint_iteration"] == iterations["best"]
    assert other["MAML-TRPO"]["mean"] == best["mean"]
    kept = json.loads((run / "compare" / "compare.json").read_text())["MAML-TRPO"]
    assert kept["checkpoint_name"] == "last" and kept["mean"] == own["mean"]
    assert json.loads((run / "compare_best" / "compare.json").read_text())[
        "MAML-TRPO"]["checkpoint_name"] == "best"
    # asked into the folder of the other checkpoint, compare refuses instead of replacing it
    with pytest.raises(ValueError, match="at its last checkpoint.*another --out"):
        compare.compare_run(run, ["random"], progress=False, checkpoint="best",
                            out=run / "compare")
    assert json.loads((run / "compare" / "compare.json").read_text())["MAML-TRPO"] == kept


def test_comparison_folder_names_the_other_checkpoint_and_task_set(tmp_path):
    from metarl.rl.compare import comparison_dir

    config = TrainConfig(eval_checkpoint="last", eval_task_set="sampled")
    assert comparison_dir(tmp_path, config, None) == tmp_path / "compare"
    assert comparison_dir(tmp_path, config, "sampled", "last") == tmp_path / "compare"
    assert comparison_dir(tmp_path, config, None, "best") == tmp_path / "compare_best"
    assert comparison_dir(tmp_path, config, "maml_paper") == tmp_path / "compare_maml_paper"
    assert (comparison_dir(tmp_path, config, "maml_paper", "best")
            == tmp_path / "compare_best_maml_paper")
