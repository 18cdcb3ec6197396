"""The MAML paper's own test tasks, and their wiring into `metarl eval`, `compare` and `train`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from metarl.config import _TASK_SETS, ConfigError, TrainConfig, load_config
from metarl.envs import TASK_SETS, held_out_tasks, make_task_vector_env
from metarl.envs.maml_paper_tasks import has_maml_paper_test_tasks, maml_paper_test_tasks
from metarl.rl import evaluation

PER_TASK = Path(__file__).resolve().parents[1] / "experiments" / "maml_paper_per_task.json"

# The first draws of numpy's legacy generator seeded 1 and 2 (np.random.seed(s);
# np.random.random_sample(4)), written out by hand so that a change of generator shows.
SEED1 = [0.417022004702574, 0.7203244934421581, 0.00011437481734488664, 0.30233257263183977]
SEED2 = [0.43599490214200376, 0.025926231827891333, 0.5496624778787091, 0.4353223926182769]


def test_navigation_goals_are_the_papers_first_draws():
    goals = [t.as_array("goal") for t in maml_paper_test_tasks("metarl/Navigation2D-v0", 2)]
    np.testing.assert_allclose(goals[0], [SEED1[0] - 0.5, SEED1[1] - 0.5], rtol=0, atol=1e-12)
    np.testing.assert_allclose(goals[1], [SEED1[2] - 0.5, SEED1[3] - 0.5], rtol=0, atol=1e-12)


def test_velocity_and_direction_tasks_follow_the_papers_draws():
    cheetah = maml_paper_test_tasks("metarl/HalfCheetahVel-v0", 4)
    np.testing.assert_allclose([t.as_array("velocity") for t in cheetah],
                               [2.0 * u for u in SEED1], rtol=0, atol=1e-12)
    ant = maml_paper_test_tasks("metarl/AntVel-v0", 4)
    np.testing.assert_allclose([t.as_array("velocity") for t in ant],
                               [3.0 * u for u in SEED1], rtol=0, atol=1e-12)
    # backward below the range's middle: 0.83, 1.44, 0.0002, 0.60 of [0, 2)
    cheetah_dir = maml_paper_test_tasks("metarl/HalfCheetahDir-v0", 4)
    assert [float(t.as_array("direction")) for t in cheetah_dir] == [-1.0, 1.0, -1.0, -1.0]
    # AntDir's script seeded 2: 1.31, 0.08, 1.65, 1.31 of [0, 3)
    ant_dir = maml_paper_test_tasks("metarl/AntDir-v0", 4)
    assert [float(t.as_array("direction")) for t in ant_dir] == [-1.0, -1.0, 1.0, -1.0]
    assert 3.0 * SEED2[2] >= 1.5 > 3.0 * SEED2[0]


def test_more_than_forty_tasks_extend_the_papers_forty():
    forty = maml_paper_test_tasks("metarl/Navigation2D-v0", 40)
    fifty = maml_paper_test_tasks("metarl/Navigation2D-v0", 50)
    assert fifty[:40] == forty and len(fifty) == 50


def test_the_papers_navigation_results_were_measured_on_these_goals():
    """Before any step the paper's MAML policy walks the same way on every task, so its return
    on a task is a near-exact function of the goal's distance: on the paper's goals, in order,
    the per-task returns it published fall as the distance grows; on other goals they do not."""
    before = np.array(json.loads(PER_TASK.read_text())["MAML"]["navigation2d"][0])
    goals = [t.as_array("goal") for t in maml_paper_test_tasks("metarl/Navigation2D-v0", 40)]
    distance = np.linalg.norm(goals, axis=1)
    assert np.corrcoef(distance, before)[0, 1] < -0.99
    other = np.linalg.norm(np.random.RandomState(2).uniform(-0.5, 0.5, (40, 2)), axis=1)
    assert abs(np.corrcoef(other, before)[0, 1]) < 0.5
    means = np.array(json.loads(PER_TASK.read_text())["MAML"]["navigation2d"]).mean(axis=1)
    np.testing.assert_allclose(means, [-40.4, -11.7, -3.33, -3.23], atol=0.03)  # Figure 5


def test_a_family_the_paper_did_not_test_says_how_to_recover():
    with pytest.raises(ValueError, match="--task-set sampled"):
        maml_paper_test_tasks("metarl/AntGoal-v0", 40)


def test_held_out_tasks_ignore_the_seed_only_for_the_papers_set():
    env = make_task_vector_env("metarl/Navigation2D-v0", 1)
    paper = [held_out_tasks("metarl/Navigation2D-v0", env, 5, seed, "maml_paper")
             for seed in (0, 1000)]
    sampled = [held_out_tasks("metarl/Navigation2D-v0", env, 5, seed, "sampled")
               for seed in (0, 1000)]
    assert paper[0] == paper[1] == maml_paper_test_tasks("metarl/Navigation2D-v0", 5)
    assert sampled[0] != sampled[1] and sampled[0] != paper[0]


@pytest.mark.parametrize("preset", ["navigation2d", "halfcheetah_vel_paper",
                                    "halfcheetah_dir_paper", "ant_vel_paper", "ant_dir_paper",
                                    "ant_vel_paper_cpu", "ant_dir_paper_cpu"])
def test_paper_presets_evaluate_on_the_papers_test_tasks(preset: str) -> None:
    """Every preset of the paper's settings whose family has the paper's test tasks uses them."""
    config = load_config(Path(__file__).resolve().parents[1] / "experiments" / f"{preset}.yaml")
    assert has_maml_paper_test_tasks(config.env_id)
    assert config.eval_task_set == "maml_paper"


def test_config_checks_the_task_set():
    assert _TASK_SETS == TASK_SETS
    assert TrainConfig().eval_task_set == "sampled"
    with pytest.raises(ConfigError, match="eval_task_set"):
        TrainConfig(eval_task_set="paper")


def _tiny_navigation_run(tmp_path: Path) -> tuple[Path, TrainConfig]:
    from metarl.rl.trainer import train

    config = TrainConfig(iterations=1, meta_batch_size=2, episodes_per_task=2, horizon=5,
                         hidden_sizes=(8,), eval_tasks=3, eval_steps=1, eval_episodes=2,
                         torch_threads=1)
    run = tmp_path / "run"
    train(config, run, progress=False)  # writes run / "config.yaml"
    return run, config


def test_eval_on_the_papers_tasks_uses_them_and_keeps_the_runs_own_result(tmp_path, monkeypatch):
    run, _ = _tiny_navigation_run(tmp_path)
    seen: list[list] = []
    original = evaluation.evaluate_adaptation

    def spy(config, *args, **kwargs):
        outcome = original(config, *args, **kwargs)
        seen.append(outcome["tasks"])
        return outcome

    monkeypatch.setattr(evaluation, "evaluate_adaptation", spy)
    own = evaluation.evaluate_run(run, progress=False)
    paper = evaluation.evaluate_run(run, progress=False, task_set="maml_paper")
    assert seen[1] == maml_paper_test_tasks("metarl/Navigation2D-v0", 3)
    assert seen[0] != seen[1]
    assert own["task_set"] == "sampled" and paper["task_set"] == "maml_paper"
    assert json.loads((run / "eval.json").read_text())["task_set"] == "sampled"
    assert json.loads((run / "eval_maml_paper.json").read_text())["task_set"] == "maml_paper"


def test_a_run_configured_for_the_papers_tasks_evaluates_on_them(tmp_path, monkeypatch):
    run, config = _tiny_navigation_run(tmp_path)
    from metarl.config import save_config

    save_config(dataclasses.replace(config, eval_task_set="maml_paper"), run / "config.yaml")
    result = evaluation.evaluate_run(run, progress=False)
    assert result["task_set"] == "maml_paper" and (run / "eval.json").is_file()
    sampled = evaluation.evaluate_run(run, progress=False, task_set="sampled")
    assert sampled["mean"] != result["mean"] and (run / "eval_sampled.json").is_file()


def test_compare_evaluates_every_method_on_the_papers_tasks(tmp_path, monkeypatch):
    from metarl.rl import compare

    run, _ = _tiny_navigation_run(tmp_path)
    seen: list[list] = []
    original = evaluation.evaluate_adaptation  # the function compare imported

    def spy(config, *args, **kwargs):
        outcome = original(config, *args, **kwargs)
        seen.append(outcome["tasks"])
        return outcome

    monkeypatch.setattr(compare, "evaluate_adaptation", spy)
    results = compare.compare_run(run, ["random"], progress=False, task_set="maml_paper")
    paper = maml_paper_test_tasks("metarl/Navigation2D-v0", 3)
    assert seen == [paper, paper]
    assert {row["task_set"] for row in results.values()} == {"maml_paper"}
    assert (run / "compare_maml_paper" / "compare.json").is_file()
    own = compare.compare_run(run, ["random"], progress=False)  # beside it, not refused
    assert own["random"]["task_set"] == "sampled" and (run / "compare" / "compare.json").is_file()
    with pytest.raises(ValueError, match="task_set"):  # one folder, one protocol
        compare.compare_run(run, ["random"], progress=False, out=run / "compare_maml_paper")


def test_training_for_the_papers_tasks_where_it_had_none_stops_before_it_starts(tmp_path, capsys):
    from metarl.cli import main

    run = tmp_path / "run"
    code = main(["train", "bandit_k5", "--run-dir", str(run), "--iterations", "1",
                 "--eval-task-set", "maml_paper", "--no-progress"])
    assert code == 1 and not run.exists()
    assert "--eval-task-set sampled" in capsys.readouterr().err
