"""Injected NaN and inf: in observations, rewards, the meta-loss, the meta-gradient and the
updated parameters, for each outer step. The update is not applied, the one-line message names
the quantity and the iteration, the exit status is 1, the last good checkpoint stays and the run
resumes to exactly the uninterrupted run; with ``skip_nonfinite`` the batch is skipped and
counted instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from metarl.envs.navigation import Navigation2DVectorEnv
from metarl.rl.learners import LEARNERS
from metarl.rl.meta_learner import MetaLearner
from metarl.run.checkpoint import load_checkpoint

pytestmark = pytest.mark.faults

BAD_ITERATION = 2


def _poison_env(monkeypatch: pytest.MonkeyPatch, field: int, value: float, call: int) -> None:
    """Make the env's ``call``-th step return ``value`` in one entry of output ``field``
    (0: observations, 1: rewards)."""
    real_step = Navigation2DVectorEnv.step
    calls = {"n": 0}

    def step(self: Navigation2DVectorEnv, actions: np.ndarray) -> Any:
        calls["n"] += 1
        out = list(real_step(self, actions))
        if calls["n"] == call:
            poisoned = np.array(out[field], dtype=np.float64)
            poisoned.flat[-1] = value
            out[field] = poisoned
        return tuple(out)

    monkeypatch.setattr(Navigation2DVectorEnv, "step", step)


def _poison_meta_gradient(monkeypatch: pytest.MonkeyPatch, in_loss: bool, value: float) -> None:
    """Poison the direction every registered learner hands its outer step, at the
    ``BAD_ITERATION``-th call."""
    calls = {"n": 0}

    def poisoned(real: Any) -> Any:
        def direction(self: Any, params: Any, batch: Any) -> Any:
            calls["n"] += 1
            loss, grads, metrics = real(self, params, batch)
            if calls["n"] == BAD_ITERATION:
                if in_loss:
                    loss = loss * value
                else:
                    name = sorted(grads)[0]
                    grads = {**grads, name: grads[name].clone().index_fill_(
                        0, torch.tensor([0]), value)}
            return loss, grads, metrics

        return direction

    for cls in LEARNERS.values():
        if "direction" in vars(cls):  # each override once; subclasses inherit the wrapper
            monkeypatch.setattr(cls, "direction", poisoned(vars(cls)["direction"]))


def _poison_update(monkeypatch: pytest.MonkeyPatch, value: float) -> None:
    real = MetaLearner.update
    calls = {"n": 0}

    def update(self: MetaLearner, state: Any, batch: Any) -> Any:
        calls["n"] += 1
        new, metrics = real(self, state, batch)
        if calls["n"] == BAD_ITERATION:
            params = {k: v.clone() for k, v in new.params.items()}
            params[sorted(params)[-1]].view(-1)[0] = value
            new = new._replace(params=params)
        return new, metrics

    monkeypatch.setattr(MetaLearner, "update", update)


# The horizon is 6 and each iteration steps the env for its support then its query episodes, so
# call 6 + 6 + 2 is the support rollout of iteration 2, and 6 + 6 + 6 + 3 its query rollout.
INJECTIONS = {
    "nan support observation": (lambda m: _poison_env(m, 0, np.nan, 14),
                                "the observations at step 2"),
    "inf query reward": (lambda m: _poison_env(m, 1, np.inf, 21), "the query rewards"),
    "nan meta-loss": (lambda m: _poison_meta_gradient(m, True, np.nan), "the meta-loss"),
    "nan meta-gradient": (lambda m: _poison_meta_gradient(m, False, np.nan),
                          "the meta-gradient"),
    "inf meta-gradient": (lambda m: _poison_meta_gradient(m, False, -np.inf),
                          "the meta-gradient"),
    "nan parameters": (lambda m: _poison_update(m, np.nan), "the updated parameters"),
    "inf parameters": (lambda m: _poison_update(m, np.inf), "the updated parameters"),
}
# Every injection with TRPO; with the other outer steps, one per stage of the iteration (the
# sampled episodes, the learner's gradient, the new parameters). ProMP computes its gradients
# inside its proximal steps, so only its parameters are checked.
CASES = [(name, "trpo", "maml") for name in INJECTIONS] + [
    (name, outer, learner)
    for outer, learner in [("adam", "maml"), ("promp", "maml"), ("sgd", "reptile")]
    for name in ("inf query reward", "nan meta-gradient", "nan parameters")
    if not (outer == "promp" and "meta-" in name)]


@pytest.mark.parametrize(("injection", "outer", "learner"), CASES)
def test_nonfinite_stops_before_the_update_and_keeps_the_last_good_checkpoint(
    cli: Any, tiny: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helpers: Any,
    reference_run: Any, injection: str, outer: str, learner: str,
) -> None:
    inject, quantity = INJECTIONS[injection]
    settings = [*tiny, "--iterations", "3", "--outer", outer, "--learner", learner]
    whole, run = reference_run(*settings), tmp_path / "run"
    inject(monkeypatch)
    code, err = cli("train", "navigation2d", "--run-dir", str(run), *settings)
    line = helpers.one_error_line(err)
    assert code == 1
    assert f"iteration {BAD_ITERATION}: " in line and quantity in line
    assert "non-finite" in line and "not applied" in line
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["iteration"] == BAD_ITERATION - 1
    assert all(bool(torch.isfinite(v).all()) for v in last["params"].values())
    monkeypatch.undo()
    assert cli("train", "--resume", str(run), "--no-progress")[0] == 0
    helpers.assert_same_run(whole, run)


@pytest.mark.parametrize("injection", ["inf query reward", "nan meta-gradient",
                                       "nan parameters"])
def test_skip_nonfinite_skips_the_batch_and_counts_it(
    cli: Any, tiny: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helpers: Any,
    injection: str,
) -> None:
    settings = [*tiny, "--skip-nonfinite", "true", "--outer", "adam"]
    before = tmp_path / "before"
    assert cli("train", "navigation2d", "--run-dir", str(before), *settings,
               "--iterations", str(BAD_ITERATION - 1))[0] == 0
    INJECTIONS[injection][0](monkeypatch)
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match=f"iteration {BAD_ITERATION} skipped"):
        code, _ = cli("train", "navigation2d", "--run-dir", str(run), *settings,
                      "--iterations", str(BAD_ITERATION))
    assert code == 0
    skipped = load_checkpoint(run / "checkpoints" / "last.pt")
    assert skipped["iteration"] == BAD_ITERATION and skipped["skipped"] == 1
    # the parameters and optimiser state did not move in the skipped iteration
    kept = load_checkpoint(before / "checkpoints" / "last.pt")
    helpers.assert_equal_trees(kept["params"], skipped["params"])
    helpers.assert_equal_trees(kept["adam"], skipped["adam"])
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert '"guard/skipped": 1.0' in rows[-1] and '"guard/skipped": 0.0' in rows[0]
