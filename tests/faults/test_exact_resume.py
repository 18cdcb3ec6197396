"""Exact resume for every valid (learner, outer step, estimator) and a MuJoCo family: a run
stopped in the middle of an iteration and resumed ends bit-for-bit where an uninterrupted run
ends (parameters, optimiser state, ProMP penalty weight, random streams, metrics)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from metarl.config import ConfigError, TrainConfig
from metarl.rl.combination import check_combination
from metarl.rl.learners import LEARNERS
from metarl.rl.meta_learner import MetaLearner
from metarl.rl.outer_steps import OUTER_STEPS
from metarl.run.checkpoint import load_checkpoint

pytestmark = pytest.mark.faults


def _valid_combinations() -> list[tuple[str, str, str]]:
    valid = []
    for learner in LEARNERS:
        for outer in OUTER_STEPS:
            for estimator in ("maml", "lvc", "dice"):
                try:
                    check_combination(TrainConfig(learner=learner, outer=outer,
                                                  estimator=estimator))
                except ConfigError:
                    continue
                valid.append((learner, outer, estimator))
    return valid


COMBINATIONS = _valid_combinations()


def _stop_in_the_second_update(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C twice during iteration 2's outer step: stop at once, after its sampling drew
    from every random stream."""
    real_update = MetaLearner.update
    calls = {"n": 0}

    def update(self: MetaLearner, state: Any, batch: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_update(self, state, batch)

    monkeypatch.setattr(MetaLearner, "update", update)


def _stopped_and_resumed(cli: Any, monkeypatch: pytest.MonkeyPatch, run: Path, config: str,
                         settings: list[str]) -> None:
    _stop_in_the_second_update(monkeypatch)
    assert cli("train", config, "--run-dir", str(run), *settings)[0] == 130
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 1
    monkeypatch.undo()
    code, err = cli("train", "--resume", str(run), "--no-progress")
    assert code == 0, err


def test_the_combinations_are_all_there() -> None:
    assert len(COMBINATIONS) == 23  # 12 maml, 4 fomaml, 2 reptile, 2 imaml, 3 pretrained
    assert ("maml", "promp", "dice") in COMBINATIONS and ("imaml", "sgd", "maml") in COMBINATIONS


@pytest.mark.parametrize(("learner", "outer", "estimator"), COMBINATIONS)
def test_every_learner_resumes_exactly(
    cli: Any, tiny: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helpers: Any,
    reference_run: Any, learner: str, outer: str, estimator: str,
) -> None:
    # two inner steps: several support rollouts, Reptile's k steps, iMAML's proximal steps
    settings = [*tiny, "--iterations", "3", "--inner-steps", "2", "--learner", learner,
                "--outer", outer, "--estimator", estimator]
    whole = reference_run(*settings)
    run = tmp_path / "run"
    _stopped_and_resumed(cli, monkeypatch, run, "navigation2d", settings)
    helpers.assert_same_run(whole, run)


@pytest.mark.parametrize("outer", ["trpo", "promp"])
def test_a_mujoco_family_resumes_exactly(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helpers: Any,
    reference_run: Any, outer: str,
) -> None:
    pytest.importorskip("mujoco")
    settings = ["--iterations", "3", "--outer", outer, "--no-progress"]
    whole = reference_run(*settings, config="smoke_mujoco")
    run = tmp_path / "run"
    _stopped_and_resumed(cli, monkeypatch, run, "smoke_mujoco", settings)
    helpers.assert_same_run(whole, run)
