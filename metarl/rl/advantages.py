"""Advantages of sampled episodes, as every learner's losses take them: the linear feature
baseline fitted per task, GAE, and (optionally) per-task normalisation."""

from __future__ import annotations

from metarl.config import TrainConfig
from metarl.core.episodes import (
    Episodes,
    StepBatch,
    discounted_returns,
    gae,
    normalize_per_task,
    to_step_batch,
)
from metarl.core.linear_baseline import fit_linear_baseline


def advantages_batch(episodes: Episodes, config: TrainConfig) -> StepBatch:
    """Baseline fit, GAE and (optionally) per-task normalisation, flattened for the losses."""
    returns = discounted_returns(episodes.rewards, episodes.mask, config.gamma)
    values = fit_linear_baseline(
        episodes.observations, returns, episodes.mask, config.baseline_ridge
    )
    advantages = gae(episodes.rewards, values, episodes.mask, config.gamma, config.gae_lambda)
    if config.normalize_advantages:
        advantages = normalize_per_task(advantages, episodes.mask)
    return to_step_batch(episodes, advantages)
