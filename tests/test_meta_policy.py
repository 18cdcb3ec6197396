"""The Python API to a trained meta-policy: it loads a run, adapts exactly as metarl eval does
(same episodes, same step), and acts with the adapted parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from metarl.cli import main
from metarl.rl.evaluation import evaluate_adaptation
from metarl.rl.meta_policy import MetaPolicy
from metarl.run.checkpoint import load_checkpoint

TINY = ["--iterations", "2", "--meta-batch-size", "2", "--episodes-per-task", "2",
        "--horizon", "6", "--hidden-sizes", "[8]", "--torch-threads", "1", "--no-progress"]


def test_adapt_and_act_match_the_evaluation(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), *TINY]) == 0
    meta = MetaPolicy.load(run)
    best = load_checkpoint(run / "checkpoints" / "best.pt")["params"]
    assert all(torch.equal(meta.params[k], best[k]) for k in best)
    # evaluate_adaptation on one held-out task, seed 7: its step-1 parameters
    outcome = evaluate_adaptation(meta.config, meta.params, tasks=1, steps=1, episodes=3, seed=7)
    adapted = meta.adapt(outcome["tasks"][0], steps=1, episodes=3, seed=7)
    expected = {k: v[0] for k, v in outcome["adapted"][1].items()}
    assert all(torch.allclose(adapted[k], expected[k]) for k in expected)
    assert any(not torch.equal(adapted[k], meta.params[k]) for k in adapted)
    env = meta.make_env()
    env.unwrapped.set_task(outcome["tasks"][0])
    obs, _ = env.reset(seed=0)
    action = meta.act(obs, adapted)
    mean = meta.policy.distribution_params(adapted, torch.as_tensor(obs, dtype=torch.float32))[0]
    assert np.allclose(action, mean.detach().numpy())
    assert env.action_space.shape == action.shape
    env.close()
