"""Non-finite values stop a training step before it is applied, or skip it when asked."""

from pathlib import Path

import numpy as np
import pytest
import torch

from metarl.cli import main
from metarl.core.guards import NonFiniteError, check_finite
from metarl.envs.navigation import Navigation2DVectorEnv
from metarl.run.checkpoint import load_checkpoint

TINY = ["--iterations", "3", "--meta-batch-size", "2", "--episodes-per-task", "2",
        "--horizon", "8", "--torch-threads", "1", "--no-progress"]


def test_check_finite_names_the_quantity() -> None:
    check_finite("ok", {"a": torch.ones(3)})
    with pytest.raises(NonFiniteError, match=r"1 non-finite value\(s\) in the gradient\[b\]"):
        check_finite("the gradient", {"a": torch.ones(2), "b": torch.tensor([1.0, float("nan")])})
    with pytest.raises(NonFiniteError, match="rewards"):
        check_finite("rewards", torch.tensor([float("inf")]))


def _poison_rewards_from_call(monkeypatch: pytest.MonkeyPatch, bad_call: int) -> None:
    real_step = Navigation2DVectorEnv.step
    calls = {"n": 0}

    def step(self, actions):
        calls["n"] += 1
        obs, rewards, terminated, truncated, info = real_step(self, actions)
        if calls["n"] == bad_call:
            rewards = np.full_like(rewards, np.nan)
        return obs, rewards, terminated, truncated, info

    monkeypatch.setattr(Navigation2DVectorEnv, "step", step)


def test_nan_reward_stops_the_run_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # each iteration steps the env 8 times for support and 8 for query: call 19 is in iteration 2
    _poison_rewards_from_call(monkeypatch, bad_call=16 + 3)
    run = tmp_path / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), *TINY]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "iteration 2" in err and "support step 0 rewards" in err
    checkpoint = load_checkpoint(run / "checkpoints" / "last.pt")
    assert checkpoint["iteration"] == 1
    assert all(torch.isfinite(v).all() for v in checkpoint["params"].values())


def test_nan_reward_batch_is_skipped_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _poison_rewards_from_call(monkeypatch, bad_call=16 + 3)
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="skipped"):
        assert main(["train", "navigation2d", "--run-dir", str(run), *TINY,
                     "--skip-nonfinite", "true"]) == 0
    checkpoint = load_checkpoint(run / "checkpoints" / "last.pt")
    assert checkpoint["iteration"] == 3 and checkpoint["skipped"] == 1
