"""Determinism: the same seed on the same machine gives identical metrics and byte-identical
checkpoints, for every preset in experiments/ at smoke size; and the tasks come from a stream of
their own, so how much a run samples per task never changes which tasks it draws."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metarl.config import TrainConfig
from metarl.envs.navigation import Navigation2DVectorEnv
from metarl.fewshot.config import is_fewshot_config
from metarl.rl.meta_learner import MetaLearner
from metarl.run.checkpoint import content_digest, load_checkpoint

pytestmark = pytest.mark.faults

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
# every preset `metarl train` runs; the architecture-search presets (`metarl search`) resume
# and repeat exactly by tests/test_autometa_search.py
PRESETS = sorted(path.stem for path in EXPERIMENTS.glob("*.yaml")
                 if not path.stem.startswith("autometa_"))
RL_SMOKE = ["--iterations", "2", "--meta-batch-size", "2", "--episodes-per-task", "2",
            "--horizon", "5", "--hidden-sizes", "[8]", "--checkpoint-interval", "1"]
FEWSHOT_SMOKE = ["--iterations", "2", "--meta-batch-size", "2", "--val-interval", "2",
                 "--val-tasks", "3", "--log-interval", "1", "--checkpoint-interval", "1"]
# Run by default: one preset per code path (task family, simulator, problem, learner kind);
# the rest differ only in sizes and settings and run with -m slow (or -m faults).
DEFAULT = {"navigation2d", "smoke_mujoco", "ant_goal", "metaworld_smoke", "sinusoid_maml",
           "sinusoid_reptile", "omniglot_5w1s_maml", "omniglot_5w1s_protonet"}


def _needs(preset: str) -> str | None:
    """The optional package a preset needs, if any."""
    text = (EXPERIMENTS / f"{preset}.yaml").read_text()
    if "metarl/ML1" in text or "metarl/ML10" in text:
        return "metaworld"
    if any(family in text for family in ("HalfCheetah", "metarl/Ant")):
        return "mujoco"
    return None


@pytest.fixture(scope="module")
def omniglot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from metarl.fewshot.omniglot import write_synthetic_omniglot

    base = tmp_path_factory.mktemp("data")
    write_synthetic_omniglot(base / "omniglot", characters=200)  # enough for 20-way tasks
    return base


@pytest.mark.parametrize("preset", [
    preset if preset in DEFAULT else pytest.param(preset, marks=pytest.mark.slow)
    for preset in PRESETS])
def test_same_seed_same_metrics_and_checkpoints(
    cli: Any, tmp_path: Path, helpers: Any, omniglot: Path, preset: str,
) -> None:
    needed = _needs(preset)
    if needed:
        pytest.importorskip(needed)
    if is_fewshot_config(EXPERIMENTS / f"{preset}.yaml"):
        settings = [*FEWSHOT_SMOKE, "--filters", "4", "--data-path", str(omniglot)] \
            if preset.startswith("omniglot") else FEWSHOT_SMOKE
    else:
        settings = RL_SMOKE
    runs = [tmp_path / "first", tmp_path / "second"]
    for run in runs:
        code, err = cli("train", preset, "--run-dir", str(run), *settings, "--torch-threads", "1",
                        "--no-progress")
        assert code == 0, err
    helpers.assert_same_run(*runs)
    if settings is RL_SMOKE:  # few-shot checkpoints also record the time spent (their budget)
        first, second = (run / "checkpoints" / "best.pt" for run in runs)
        assert first.read_bytes() == second.read_bytes(), "best.pt"
        # last.pt records the training time too (max_minutes); all else is identical
        digests = []
        for run in runs:
            payload = load_checkpoint(run / "checkpoints" / "last.pt")
            assert payload.pop("train_seconds") > 0
            digests.append(content_digest(payload))
        assert digests[0] == digests[1], "last.pt"


def _tasks_drawn(config: TrainConfig, iterations: int) -> list[list[Any]]:
    drawn: list[list[Any]] = []
    real = Navigation2DVectorEnv.sample_tasks

    def record(self: Navigation2DVectorEnv, n: int, rng: np.random.Generator) -> list[Any]:
        tasks = real(self, n, rng)
        drawn.append(tasks)
        return tasks

    learner = MetaLearner(config)
    learner.env.sample_tasks = record.__get__(learner.env)  # type: ignore[method-assign]
    state = learner.initial_state()
    for _ in range(iterations):
        state, _ = learner.iteration(state)
    return drawn


@pytest.mark.parametrize("change", [{"inner_steps": 2}, {"episodes_per_task": 3},
                                    {"horizon": 7}, {"learner": "imaml", "outer": "adam"}])
def test_tasks_do_not_depend_on_how_much_each_task_samples(change: dict[str, Any]) -> None:
    base = TrainConfig(meta_batch_size=3, episodes_per_task=2, horizon=5, hidden_sizes=(4,),
                       torch_threads=1, outer="adam")
    other = TrainConfig(**{**base.to_dict(), **change})
    first, second = _tasks_drawn(base, 3), _tasks_drawn(other, 3)
    assert first == second
    assert len({task for tasks in first for task in tasks}) == 9  # and they are not all alike


def test_task_and_reset_streams_differ_and_each_follows_the_seed() -> None:
    a = MetaLearner(TrainConfig(seed=5, meta_batch_size=1, episodes_per_task=1, horizon=2))
    b = MetaLearner(TrainConfig(seed=5, meta_batch_size=1, episodes_per_task=1, horizon=2))
    draws = [rng.integers(2**31, size=4).tolist() for rng in (a.task_rng, a.dynamics_rng)]
    assert draws[0] != draws[1]
    assert [rng.integers(2**31, size=4).tolist() for rng in (b.task_rng, b.dynamics_rng)] == draws
