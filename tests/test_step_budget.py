"""Batches counted in steps (``batch_unit: steps``): whole episodes until a task has its budget,
as the MAML paper's samplers did, and every consumer averaging over the kept episodes only."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

import metarl.rl.evaluation as evaluation
import metarl.rl.sampling as sampling
from metarl.config import ConfigError, TrainConfig
from metarl.core.episodes import (
    Episodes,
    episode_mask,
    episode_returns,
    mean_over_episodes,
    mean_return,
    pad_episodes,
)
from metarl.core.estimators import inner_loss_for
from metarl.core.linalg import Params
from metarl.envs import Navigation2DVectorEnv, Task
from metarl.rl.advantages import advantages_batch
from metarl.rl.learners import build_learner
from metarl.rl.policy import build_policy, initial_params
from metarl.rl.ray_sampler import join_shards
from metarl.rl.rollout import rollout
from metarl.rl.sampling import SampledEpisodes, sample_episodes
from metarl.rl.step_budget import first_episodes_within, sample_batch

# One step of (0.05, 0) reaches the near goal (episodes of one step); the far goal is never
# reached within the horizon (episodes of the full horizon).
NEAR, FAR = Task.of(goal=[0.05, 0.0]), Task.of(goal=[0.45, 0.45])
CONFIG = TrainConfig(hidden_sizes=(8,), init_log_std=-6.0, episodes_per_task=3, horizon=10,
                     meta_batch_size=2, batch_unit="steps", torch_threads=1)


def straight_params() -> Params:
    """A nearly deterministic policy that always steps (0.05, 0)."""
    params = {k: torch.zeros_like(v) if k != "log_std" else v
              for k, v in initial_params(CONFIG).items()}
    params["layers.1.bias"] = torch.tensor([0.05, 0.0])
    return params


def lengths_batch(lengths: list[list[int]], horizon: int) -> Episodes:
    """Episodes of the given lengths; observation = 100 * task + episode, reward 1 per step."""
    n, b = len(lengths), len(lengths[0])
    mask = torch.zeros(n, horizon, b)
    for i, row in enumerate(lengths):
        for j, length in enumerate(row):
            mask[i, :length, j] = 1.0
    ids = (100 * torch.arange(n).view(n, 1, 1) + torch.arange(b).view(1, 1, b)).float()
    observations = ids.expand(n, horizon, b).unsqueeze(-1).clone()
    return Episodes(observations, observations.clone(), torch.ones(n, horizon, b), mask)


def test_kept_are_the_episodes_started_before_the_budget_in_order() -> None:
    batch = lengths_batch([[5, 2, 3, 1], [1, 1, 1, 5]], horizon=5)
    kept = first_episodes_within(batch, budget=6)
    # task 0: episodes start after 0, 5, 7, 10 steps: the first two; task 1: all four
    assert kept.mask.shape == (2, 5, 4)
    assert episode_mask(kept).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert kept.mask.sum(dim=1).tolist() == [[5, 2, 0, 0], [1, 1, 1, 5]]
    assert kept.observations[:, 0, :, 0].tolist() == [[0, 1, 0, 0], [100, 101, 102, 103]]
    assert kept.rewards[0, :, 2:].abs().sum() == 0 and kept.actions[0, :, 2:].abs().sum() == 0
    # kept episodes move to the front, in their order, and the batch is cut to the widest task
    narrow = first_episodes_within(lengths_batch([[5, 5, 1], [1, 5, 5]], horizon=5), budget=5)
    assert narrow.observations[:, 0, :, 0].tolist() == [[0, 0], [100, 101]]
    assert episode_mask(narrow).tolist() == [[1, 0], [1, 1]]


def test_means_over_episodes_count_only_the_kept_ones() -> None:
    kept = first_episodes_within(lengths_batch([[5, 2, 3, 1], [1, 1, 1, 5]], 5), budget=6)
    assert episode_returns(kept).tolist() == [[5, 2, 0, 0], [1, 1, 1, 5]]
    assert mean_over_episodes(episode_returns(kept), kept).tolist() == [3.5, 2.0]
    assert mean_return(kept) == pytest.approx((5 + 2 + 1 + 1 + 1 + 5) / 6)


def test_a_task_whose_episodes_end_early_gets_more_of_them() -> None:
    env = Navigation2DVectorEnv(2 * 3)
    policy = build_policy(CONFIG, env)
    batch = sample_batch(env, policy, straight_params(), [NEAR, FAR], 3, 10, "steps",
                         torch.Generator().manual_seed(0), 0)
    # budget 3 x 10 = 30 steps each: thirty one-step episodes, or three full ones
    assert episode_mask(batch).sum(dim=1).tolist() == [30, 3]
    assert batch.mask.sum(dim=(1, 2)).tolist() == [30, 30]
    assert batch.observations[1, :, 3:].abs().sum() == 0  # the far task's unused places
    far = episode_returns(batch)[1, :3].mean().item()
    assert mean_over_episodes(episode_returns(batch), batch)[1].item() == pytest.approx(far)


def test_counting_in_episodes_is_the_plain_rollout_and_so_is_steps_without_early_ends() -> None:
    env = Navigation2DVectorEnv(2 * 3)
    policy = build_policy(CONFIG, env)
    params = initial_params(CONFIG)
    plain = rollout(env, policy, params, [FAR, FAR], 3, 10, torch.Generator().manual_seed(1), 1)
    for unit in ("episodes", "steps"):  # a random policy never reaches the far goal in 10 steps
        batch = sample_batch(env, policy, params, [FAR, FAR], 3, 10, unit,
                             torch.Generator().manual_seed(1), 1)
        assert all(torch.equal(a, b) for a, b in zip(batch[:4], plain[:4]))


def test_shards_counted_in_steps_join_into_the_whole_batch() -> None:
    """A task's kept episodes depend on its own seeds only, and shards of different widths
    join at the widest: what lets Ray workers sample a meta-batch counted in steps."""
    env = Navigation2DVectorEnv(2 * 3)
    one = Navigation2DVectorEnv(3)
    policy = build_policy(CONFIG, env)
    learner = build_learner(CONFIG, policy)
    params = straight_params()
    seeds = [[11, 12], [13, 14]]
    whole = sample_episodes(env, policy, learner, CONFIG, params, [NEAR, FAR], seeds)
    parts = [sample_episodes(one, policy, learner, CONFIG, params, [task], [[s[i]] for s in seeds])
             for i, task in enumerate([NEAR, FAR])]
    assert [p.supports[0].mask.shape[2] for p in parts] == [30, 3]
    joined = join_shards(parts)
    for got, want in zip(joined.supports, whole.supports):
        assert all(torch.equal(a, b) for a, b in zip(got[:4], want[:4]))
    # the adaptation's sums run over each shard's own width, so the adapted parameters, and with
    # them the query's actions, may differ from the whole batch's in the last bits
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(joined.query[:4], whole.query[:4]))
    with pytest.raises(ValueError, match="cannot pad 30 episodes to 3"):
        pad_episodes(parts[0].supports[0], 3)


def test_training_and_evaluation_sample_in_the_configured_unit(monkeypatch) -> None:
    """Wiring: the trainer's sampler and the evaluation hand ``batch_unit`` to the sampler, and
    the evaluation's return is the mean over the kept episodes (not over the padded places)."""
    units: list[str] = []
    def spy(*args: Any, **kwargs: Any) -> Episodes:
        units.append(args[6])
        return sample_batch(*args, **kwargs)

    monkeypatch.setattr(sampling, "sample_batch", spy)
    monkeypatch.setattr(evaluation, "sample_batch", spy)
    env = Navigation2DVectorEnv(2 * 3)
    policy = build_policy(CONFIG, env)
    for unit in ("steps", "episodes"):
        config = dataclasses.replace(CONFIG, batch_unit=unit)
        sampled: SampledEpisodes = sample_episodes(
            env, policy, build_learner(config, policy), config, straight_params(), [NEAR, FAR],
            [[1, 2], [3, 4]])
        assert units == [unit, unit] and sampled.supports[0].mask.shape[2] == (30 if unit == "steps"
                                                                         else 3)
        units.clear()
    monkeypatch.setattr(evaluation, "held_out_tasks",
                        lambda env_id, env, n, seed, task_set: [NEAR, FAR])
    outcome = evaluation.evaluate_adaptation(CONFIG, straight_params(), tasks=2, steps=0,
                                             episodes=3)
    assert units == ["steps"]
    units.clear()
    expected = sample_batch(env, policy, straight_params(), [NEAR, FAR], 3, 10, "steps",
                            torch.Generator().manual_seed(1000), 1000)
    assert episode_mask(expected).sum(dim=1).tolist() == [30, 3]  # 27 unused places for FAR
    per_task = mean_over_episodes(episode_returns(expected), expected)
    assert outcome["returns"][0].tolist() == pytest.approx(per_task.tolist(), abs=1e-5)


def test_batch_unit_is_validated() -> None:
    with pytest.raises(ConfigError, match="batch_unit must be one of 'episodes', 'steps'"):
        TrainConfig(batch_unit="tokens")


def test_a_batch_counted_in_steps_reaches_the_losses_packed_with_the_same_value() -> None:
    env = Navigation2DVectorEnv(2 * 3)
    policy = build_policy(CONFIG, env)
    params = straight_params()
    batch = sample_batch(env, policy, params, [NEAR, FAR], 3, 10, "steps",
                         torch.Generator().manual_seed(2), 2)
    packed = advantages_batch(batch, CONFIG)
    padded = advantages_batch(batch, dataclasses.replace(CONFIG, batch_unit="episodes"))
    assert padded.mask.shape == (2, 10 * 30) and packed.mask.shape == (2, 30)
    assert packed.mask.sum().item() == padded.mask.sum().item() == 60
    loss = inner_loss_for(policy)
    assert torch.allclose(loss(params, packed), loss(params, padded), atol=1e-6)


def test_dice_reads_a_batch_counted_in_steps_in_its_time_major_layout() -> None:
    """DiCE finds episodes from the horizon, so the batch stays unpacked; its first derivative
    is the policy gradient's."""
    env = Navigation2DVectorEnv(2 * 3)
    config = dataclasses.replace(CONFIG, estimator="dice")
    policy = build_policy(config, env)
    params = straight_params()
    batch = sample_batch(env, policy, params, [NEAR, FAR], 3, 10, "steps",
                         torch.Generator().manual_seed(3), 3)
    assert batch.mask.shape[2] == 30  # the near goal's one-step episodes: packing would shrink it
    steps = advantages_batch(batch, config)
    assert steps.mask.shape == (2, 10 * 30)
    dice = inner_loss_for(policy, "dice", config.horizon)
    plain = inner_loss_for(policy)
    leaves = {k: v.requires_grad_() for k, v in params.items()}
    got = torch.autograd.grad(dice(leaves, steps).sum(), list(leaves.values()))
    want = torch.autograd.grad(plain(leaves, steps).sum(), list(leaves.values()))
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-4) for a, b in zip(got, want))
