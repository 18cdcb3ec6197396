import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import metarl.envs  # noqa: F401  (registers the metarl/ environments)
from metarl.envs import Navigation2DEnv, Navigation2DVectorEnv, Task, make_task_vector_env


@pytest.mark.filterwarnings("ignore:.*infinity")  # positions are unbounded by design
def test_passes_gymnasium_env_checker() -> None:
    env = gymnasium.make("metarl/Navigation2D-v0")
    check_env(env.unwrapped, skip_render_check=True)


def test_reward_and_termination_by_hand() -> None:
    env = Navigation2DEnv()
    env.set_task(Task.of(goal=[0.3, -0.4]))
    obs, _ = env.reset(seed=0)
    assert np.array_equal(obs, [0.0, 0.0])
    # the action is clipped to 0.1 per axis: the point moves to (0.1, -0.1)
    obs, reward, terminated, truncated, _ = env.step(np.array([5.0, -0.1], dtype=np.float32))
    assert np.allclose(obs, [0.1, -0.1])
    assert reward == pytest.approx(-np.hypot(0.2, -0.3))
    assert not terminated and not truncated
    env.set_task(Task.of(goal=[0.105, -0.095]))
    env.reset()
    _, reward, terminated, _, _ = env.step(np.array([0.1, -0.1], dtype=np.float32))
    assert terminated  # within 0.01 of the goal on both axes
    assert reward == pytest.approx(-np.hypot(0.005, 0.005))


def test_reset_never_changes_the_task() -> None:
    env = Navigation2DEnv()
    task = env.sample_tasks(1, np.random.default_rng(0))[0]
    env.set_task(task)
    env.reset(seed=1)
    env.reset(seed=2)
    assert env.task == task


def test_sample_tasks_is_deterministic_per_generator_and_in_range() -> None:
    env = Navigation2DEnv()
    a = env.sample_tasks(50, np.random.default_rng(7))
    b = env.sample_tasks(50, np.random.default_rng(7))
    c = env.sample_tasks(50, np.random.default_rng(8))
    assert a == b and a != c
    goals = np.stack([t.as_array("goal") for t in a])
    assert goals.shape == (50, 2) and np.all(np.abs(goals) <= 0.5)


def test_vector_env_equals_single_envs() -> None:
    rng = np.random.default_rng(3)
    tasks = Navigation2DVectorEnv(4).sample_tasks(4, rng)
    vector = make_task_vector_env("metarl/Navigation2D-v0", 4)
    vector.set_tasks(tasks)
    vector.reset()
    singles = []
    for task in tasks:
        env = Navigation2DEnv()
        env.set_task(task)
        env.reset()
        singles.append(env)
    for _ in range(5):
        actions = rng.uniform(-0.2, 0.2, size=(4, 2)).astype(np.float32)
        obs, rewards, terminated, _, _ = vector.step(actions)
        for i, env in enumerate(singles):
            o, r, term, _, _ = env.step(actions[i])
            assert np.allclose(obs[i], o) and rewards[i] == pytest.approx(r)
            assert terminated[i] == term


def test_vector_env_checks_task_count_and_unknown_ids() -> None:
    vector = Navigation2DVectorEnv(3)
    with pytest.raises(ValueError, match="3 sub-environments"):
        vector.set_tasks(vector.sample_tasks(2, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="unknown environment id"):
        make_task_vector_env("metarl/Nope-v0", 2)


def test_wrong_or_non_finite_actions_are_rejected() -> None:
    env = Navigation2DEnv()
    env.reset()
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        env.step(np.array([np.nan, 0.0], dtype=np.float32))
    vector = Navigation2DVectorEnv(2)
    vector.reset()
    with pytest.raises(ValueError, match=r"expected \(2, 2\)"):
        vector.step(np.zeros((3, 2)))


def test_a_misspelt_env_id_gets_a_suggestion() -> None:
    with pytest.raises(ValueError, match=r"^unknown environment id 'metarl/Navigaton2D-v0'; "
                                         r"did you mean metarl/Navigation2D-v0\?$"):
        make_task_vector_env("metarl/Navigaton2D-v0", 1)
