"""Success-rate plumbing, with a fake environment whose success steps are known in advance:
rollout -> Episodes.success -> episode_success / success_rate -> evaluation. Needs no Meta-World.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch

import metarl.rl.evaluation as evaluation
from metarl.config import TrainConfig
from metarl.core.episodes import Episodes, concat_episodes, episode_success, success_rate
from metarl.core.policies import GaussianMLPPolicy
from metarl.envs import Task, TaskVectorEnv
from metarl.rl.rollout import rollout


class ScheduledSuccessEnv(TaskVectorEnv):
    """A task ``(success_at, end_at)`` reports success on exactly step ``success_at`` (0-based;
    -1: never) and terminates after step ``end_at``; it keeps reporting success afterwards,
    which the rollout must mask out."""

    def __init__(self, num_envs: int) -> None:
        super().__init__(num_envs)
        self.single_observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.single_action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._schedule = np.zeros((num_envs, 2), dtype=int)
        self._t = 0

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return [Task.of(success_at=int(rng.integers(0, 4)), end_at=9) for _ in range(n)]

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        self._schedule = np.array([[t["success_at"], t["end_at"]] for t in tasks])

    def reset(self, *, seed: Any = None, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
        self._t = 0
        return np.zeros((self.num_envs, 1), np.float32), {}

    def step(self, actions: np.ndarray) -> tuple[Any, ...]:
        t, self._t = self._t, self._t + 1
        success = (self._schedule[:, 0] == t) | (t > self._schedule[:, 1])
        terminated = t >= self._schedule[:, 1]
        obs = np.full((self.num_envs, 1), t + 1, np.float32)
        info = {"success": success}
        return obs, np.ones(self.num_envs), terminated, np.zeros_like(terminated), info


def _rollout(tasks: list[Task], episodes: int = 2, horizon: int = 6) -> Episodes:
    env = ScheduledSuccessEnv(len(tasks) * episodes)
    policy = GaussianMLPPolicy(1, 1, (4,))
    return rollout(env, policy, policy.initial_params(), tasks, episodes, horizon,
                   torch.Generator().manual_seed(0), seed=0)


def test_rollout_records_success_on_valid_steps_only() -> None:
    tasks = [Task.of(success_at=2, end_at=9), Task.of(success_at=-1, end_at=1),
             Task.of(success_at=4, end_at=3)]
    episodes = _rollout(tasks)
    assert episodes.success is not None and episodes.success.shape == (3, 6, 2)
    expected = torch.zeros(3, 6, 2)
    expected[0, 2] = 1.0  # success on step 2 only
    # task 1 ends after step 1 and then reports success on every step: all masked out
    # task 2 would succeed on step 4, after it terminated on step 3: masked out
    assert torch.equal(episodes.success, expected)
    assert torch.equal(episodes.mask[1, :, 0], torch.tensor([1.0, 1.0, 0, 0, 0, 0]))
    success = episode_success(episodes)
    assert success is not None
    assert torch.equal(success, torch.tensor([[1.0, 1.0], [0, 0], [0, 0]]))
    assert success_rate(episodes) == pytest.approx(1 / 3)


def test_environments_without_success_leave_it_none() -> None:
    obs = torch.zeros(2, 3, 4, 1)
    episodes = Episodes(obs, obs, obs[..., 0], torch.ones(2, 3, 4))
    assert episodes.success is None
    assert episode_success(episodes) is None and success_rate(episodes) is None


def test_concat_joins_success_when_every_part_has_it() -> None:
    a = _rollout([Task.of(success_at=1, end_at=9)])
    b = _rollout([Task.of(success_at=-1, end_at=9)])
    joined = concat_episodes([a, b], dim=0)
    assert joined.rewards.shape == (2, 6, 2) and joined.success is not None
    success = episode_success(joined)
    assert success is not None and torch.equal(success, torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    along_episodes = concat_episodes([a, a], dim=2)
    assert along_episodes.success is not None and along_episodes.success.shape == (1, 6, 4)
    plain = Episodes(*a[:4])
    assert concat_episodes([a, plain], dim=0).success is None


def test_evaluation_reports_success_per_step_and_task(monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = [Task.of(success_at=0, end_at=9), Task.of(success_at=-1, end_at=9)]

    class HeldOut(ScheduledSuccessEnv):
        def sample_test_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
            return tasks[:n]

    monkeypatch.setattr(evaluation, "make_task_vector_env",
                        lambda env_id, n, physics, **kwargs: HeldOut(n))
    config = TrainConfig(horizon=5, hidden_sizes=(4,))
    policy = GaussianMLPPolicy(1, 1, (4,))
    outcome = evaluation.evaluate_adaptation(config, policy.initial_params(), tasks=2, steps=2,
                                             episodes=3, seed=0)
    assert outcome["tasks"] == tasks  # the environment's test split, not fresh draws
    np.testing.assert_array_equal(outcome["success"], [[1.0, 0.0]] * 3)
    mean, ci95 = evaluation.summarize(outcome["success"])
    assert mean == [0.5] * 3 and all(ci > 0 for ci in ci95)
    result = {"env_id": "fake", "tasks": 2, "episodes_per_task": 3, "checkpoint": "best",
              "checkpoint_iteration": 1, "steps": [0, 1, 2], "mean": [5.0] * 3,
              "ci95": [0.0] * 3, "success_rate": {"mean": mean, "ci95": ci95}}
    table = evaluation.format_table(result)
    assert "success" in table.splitlines()[1] and "0.500" in table.splitlines()[2]
