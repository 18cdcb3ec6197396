"""Meta-World adapter: task lists, spaces, per-sub-environment tasks, success, held-out split.

Fast tests use ML1 reach-v3 and coffee-push-v3 (about a second each to build); ML10 and the
sweep over all 50 ML1 task classes are marked slow.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
import yaml

import metarl.envs  # noqa: F401  (registers the metarl/ environments)
from metarl.cli import main
from metarl.config import TrainConfig, load_config
from metarl.envs import Task, make_task_vector_env, registered_env_ids, sample_held_out_tasks

metaworld = pytest.importorskip("metaworld")

from metarl.core.policies import GaussianMLPPolicy  # noqa: E402
from metarl.envs.metaworld_tasks import (  # noqa: E402
    BENCHMARK_SEED,
    ML1_TASK_NAMES,
    MetaWorldEnv,
    MetaWorldVectorEnv,
    import_metaworld,
    load_benchmark,
)
from metarl.rl.rollout import rollout  # noqa: E402

REACH = "metarl/ML1-reach-v3"
EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
PRESETS = sorted(EXPERIMENTS.glob("metaworld_*.yaml"))


def _goal(task: Task) -> np.ndarray:
    return np.asarray(task["rand_vec"][3:])  # reach: object position, then goal


def _reach_controller(obs: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """Move the hand straight at the goal, gripper idle: ``[n, 4]`` actions."""
    move = np.clip((goals - obs[:, :3]) * 50.0, -1.0, 1.0)
    return np.concatenate([move, np.zeros((len(obs), 1))], axis=1)


def test_task_names_are_meta_worlds() -> None:
    assert list(ML1_TASK_NAMES) == list(metaworld.ML1.ENV_NAMES)
    ids = registered_env_ids()
    assert "metarl/ML10-v3" in ids
    assert all(f"metarl/ML1-{name}" in ids for name in ML1_TASK_NAMES)


def test_spaces_and_shapes() -> None:
    env = make_task_vector_env(REACH, 6)
    assert (env.obs_dim, env.act_dim) == (39, 4)
    tasks = env.sample_tasks(3, np.random.default_rng(0))
    env.set_tasks([t for t in tasks for _ in range(2)])
    obs, _ = env.reset(seed=0)
    assert obs.shape == (6, 39) and obs.dtype == np.float64
    assert np.all(obs[:, -3:] == 0)  # ML benchmarks hide the goal
    obs, rewards, terminated, truncated, info = env.step(np.zeros((6, 4)))
    assert obs.shape == (6, 39) and rewards.shape == (6,)
    assert not terminated.any() and not truncated.any()
    assert info["success"].shape == (6,) and info["success"].dtype == bool
    assert env.observation_space.contains(obs.astype(np.float64))
    single = gymnasium.make(REACH)
    assert single.observation_space == env.single_observation_space
    assert single.action_space == env.single_action_space
    with pytest.raises(ValueError, match="action has shape"):
        env.step(np.zeros((6, 3)))


def test_each_sub_environment_runs_its_own_task() -> None:
    env = make_task_vector_env(REACH, 4)
    bench = load_benchmark("ML1", "reach-v3")
    a, b = bench.tasks["train"][0], bench.tasks["train"][1]
    assert not np.allclose(_goal(a), _goal(b))
    env.set_tasks([a, b, a, b])
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    for _ in range(20):
        same = rng.uniform(-1, 1, size=4)
        _, rewards, _, _, _ = env.step(np.tile(same, (4, 1)))
        assert rewards[0] == rewards[2] and rewards[1] == rewards[3]  # same task, same reward
    assert rewards[0] != rewards[1]  # same actions, different goals


@pytest.mark.parametrize("name", ["reach-v3", "coffee-push-v3"])  # moves a site; body and site
def test_shared_model_sub_environments_equal_independent_environments(name: str) -> None:
    """Sub-environments on one shared model step exactly like Meta-World environments of their
    own, interleaved, though each reset moves bodies and sites of that model."""
    bench = load_benchmark("ML1", name)
    tasks = list(bench.tasks["train"][:3])
    env = MetaWorldVectorEnv(3, "ML1", name)
    env.set_tasks(tasks)
    cls = bench.classes[name]
    alone = []
    for task in tasks:
        single = cls(reward_function_version="v2")
        single.set_task(bench.metaworld_task(task))
        alone.append(single)
    obs = env.reset()[0]
    for i, single in enumerate(alone):
        np.testing.assert_array_equal(obs[i], single.reset()[0])
    rng = np.random.default_rng(0)
    for _ in range(25):
        actions = rng.uniform(-1, 1, size=(3, 4))
        obs, rewards, _, _, info = env.step(actions)
        for i, single in enumerate(alone):
            o, r, _, _, inf = single.step(actions[i])
            np.testing.assert_array_equal(obs[i], o)
            assert rewards[i] == r and info["success"][i] == bool(inf["success"])
            # the whole world, including the bodies and sites that resets move
            own = env._slots[i].env.data
            np.testing.assert_array_equal(own.xpos, single.data.xpos)
            np.testing.assert_array_equal(own.site_xpos, single.data.site_xpos)


def test_success_matches_the_distance_to_the_goal() -> None:
    """reach succeeds when the gripper is within 5 cm of the goal: a controller that moves the
    hand to the goal succeeds, a hand that stays put (at least 0.15 m away) never does."""
    env = MetaWorldVectorEnv(2, "ML1", "reach-v3")
    task = load_benchmark("ML1", "reach-v3").tasks["test"][0]
    env.set_tasks([task, task])
    obs = env.reset()[0]
    goals = np.stack([_goal(task)] * 2)
    seen = np.zeros(2, dtype=bool)
    for _ in range(100):
        actions = _reach_controller(obs, goals)
        actions[1] = 0.0
        obs, _, _, _, info = env.step(actions)
        for i, sub in enumerate(env._slots):  # the environment's own gripper position
            near = np.linalg.norm(sub.env.tcp_center - goals[i]) <= 0.05
            assert info["success"][i] == near
        seen |= info["success"]
    assert seen.tolist() == [True, False]


def test_rollout_fills_success_through_the_vector_env() -> None:
    env = make_task_vector_env(REACH, 4)
    tasks = env.sample_tasks(2, np.random.default_rng(0))
    policy = GaussianMLPPolicy(39, 4, (8,))
    episodes = rollout(env, policy, policy.initial_params(), tasks, 2, 6,
                       torch.Generator().manual_seed(0), seed=0)
    assert episodes.observations.shape == (2, 6, 2, 39) and episodes.actions.shape == (2, 6, 2, 4)
    assert episodes.success is not None and episodes.success.shape == (2, 6, 2)
    assert episodes.success.sum() == 0  # a random hand is not 5 cm from the goal in 6 steps
    assert torch.all(episodes.rewards > 0) and torch.all(episodes.mask == 1)


def test_held_out_tasks_are_the_benchmarks_test_tasks() -> None:
    env = make_task_vector_env(REACH, 1)
    reference = metaworld.ML1("reach-v3", seed=BENCHMARK_SEED)
    expected_test = {pickle.loads(t.data)["rand_vec"].tobytes() for t in reference.test_tasks}
    expected_train = {pickle.loads(t.data)["rand_vec"].tobytes() for t in reference.train_tasks}
    held_out = sample_held_out_tasks(env, 50, np.random.default_rng(1000))
    assert {t.as_array("rand_vec").tobytes() for t in held_out} == expected_test
    assert expected_test.isdisjoint(expected_train)
    assert all(t["split"] == "test" for t in held_out)
    training = env.sample_tasks(50, np.random.default_rng(0))
    assert {t.as_array("rand_vec").tobytes() for t in training} == expected_train
    # the Meta-World task behind a metarl task is the benchmark's own object
    bench = load_benchmark("ML1", "reach-v3")
    for task in held_out[:3]:
        native = bench.metaworld_task(task)
        assert native.data == reference.test_tasks[task["index"]].data
    with pytest.raises(ValueError, match="50 test tasks, asked for 51"):
        sample_held_out_tasks(env, 51, np.random.default_rng(0))


def test_foreign_tasks_are_refused() -> None:
    env = gymnasium.make(REACH).unwrapped
    assert isinstance(env, MetaWorldEnv)
    with pytest.raises(ValueError, match="not a task of Meta-World ML1-reach-v3"):
        env.set_task(Task.of(goal=[0.1, 0.2]))
    task = env.task
    moved = Task.of(env_name="reach-v3", split="train", index=task["index"],
                    rand_vec=np.asarray(task["rand_vec"]) + 0.01)
    with pytest.raises(ValueError, match="not a task of Meta-World"):
        env.set_task(moved)


def test_single_environment_reports_success_and_truncates_at_500() -> None:
    env = gymnasium.make(REACH).unwrapped
    assert isinstance(env, MetaWorldEnv)
    task = load_benchmark("ML1", "reach-v3").tasks["test"][3]
    env.set_task(task)
    obs, _ = env.reset(seed=0)
    successes, truncated, steps = [], False, 0
    while not truncated:
        action = _reach_controller(obs[None], _goal(task)[None])[0]
        obs, reward, terminated, truncated, info = env.step(action)
        assert not terminated and 0.0 <= float(reward) <= 10.0
        successes.append(info["success"])
        steps += 1
    assert steps == 500 and isinstance(successes[0], bool)
    assert not successes[0] and successes[-1]


def test_missing_extra_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "metaworld", None)  # import metaworld -> ImportError
    with pytest.raises(ValueError, match=r"pip install -e '\.\[metaworld\]'") as err:
        import_metaworld()
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="metaworld extra"):
        make_task_vector_env("metarl/ML1-soccer-v3", 1)  # not built yet in this process


def test_unknown_benchmark_names() -> None:
    with pytest.raises(ValueError, match="unknown Meta-World task 'reach-v9'"):
        load_benchmark("ML1", "reach-v9")
    with pytest.raises(ValueError, match="unknown Meta-World benchmark 'ML7'"):
        load_benchmark("ML7")


def test_presets_write_every_field_and_load() -> None:
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    for preset in PRESETS:
        assert set(yaml.safe_load(preset.read_text())) == names, preset.name
        config = load_config(preset)
        assert config.env_id in registered_env_ids()
    paper = load_config(EXPERIMENTS / "metaworld_ml1_reach.yaml")  # the Meta-World paper's settings
    assert (paper.meta_batch_size, paper.episodes_per_task, paper.horizon) == (20, 10, 500)
    assert (paper.hidden_sizes, paper.activation) == ((128, 128), "tanh")
    assert (paper.inner_lr, paper.outer, paper.max_kl, paper.eval_tasks) == (1e-4, "trpo", 0.01, 50)


def test_smoke_preset_trains_and_evaluates_success(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", str(EXPERIMENTS / "metaworld_smoke.yaml"), "--run-dir", str(run),
                 "--no-progress"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        for key in ("support/success_rate", "query/success_rate"):
            assert 0.0 <= row[key] <= 1.0
    assert main(["eval", str(run), "--no-progress"]) == 0
    result = json.loads((run / "eval.json").read_text())
    rate = result["success_rate"]
    assert len(rate["mean"]) == len(rate["ci95"]) == len(result["steps"]) == 2
    assert np.array(rate["per_task"]).shape == (2, 2)  # tasks x steps
    assert all(0.0 <= m <= 1.0 for m in rate["mean"])


@pytest.mark.slow
def test_ml10_splits_and_class_switching() -> None:
    env = make_task_vector_env("metarl/ML10-v3", 6)
    train = env.sample_tasks(500, np.random.default_rng(0))
    test = sample_held_out_tasks(env, 250, np.random.default_rng(0))
    train_names = {t["env_name"] for t in train}
    test_names = {t["env_name"] for t in test}
    assert train_names == set(metaworld.ML10(seed=BENCHMARK_SEED).train_classes)
    assert test_names == {"drawer-open-v3", "door-close-v3", "shelf-place-v3",
                          "sweep-into-v3", "lever-pull-v3"}
    for tasks in (train[:6], test[:6], train[6:12]):
        env.set_tasks(tasks)
        obs = env.reset()[0]
        obs, rewards, *_ = env.step(np.zeros((6, 4)))
        assert obs.shape == (6, 39) and np.isfinite(rewards).all()
    single = gymnasium.make("metarl/ML10-v3").unwrapped
    assert isinstance(single, MetaWorldEnv)
    for task in (test[0], train[0], test[1]):
        single.set_task(task)
        single.reset()
        assert single.step(np.zeros(4))[0].shape == (39,)


@pytest.mark.slow
@pytest.mark.parametrize("name", ML1_TASK_NAMES)
def test_every_ml1_task_matches_independent_environments(name: str) -> None:
    test_shared_model_sub_environments_equal_independent_environments(name)
