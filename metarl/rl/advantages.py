"""Advantages of sampled episodes, as every learner's losses take them: the linear feature
baseline fitted per task, GAE, (optionally) per-task normalisation, and, for batches counted
in steps, the valid steps packed to the front."""

from __future__ import annotations

from metarl.config import TrainConfig
from metarl.core.episodes import (
    Episodes,
    StepBatch,
    compact_steps,
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
    steps = to_step_batch(episodes, advantages)
    # a batch counted in steps is mostly padding (metarl.rl.step_budget); DiCE reads episodes
    # from the time-major layout, which it keeps
    packed = config.batch_unit == "steps" and config.estimator != "dice"
    return compact_steps(steps) if packed else steps
