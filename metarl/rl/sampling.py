"""What one meta-iteration samples for some tasks: the support rollouts, the learner's
sampling-time adaptation between them, and the query rollout with the adapted policies.

Used alike by the local trainer and by the Ray workers (``metarl.rl.ray_sampler``), which
sample shards of the tasks: every task's episodes depend on its own seeds only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from metarl.config import TrainConfig
from metarl.core.adaptation import per_task
from metarl.core.distributions import Policy
from metarl.core.episodes import Episodes, StepBatch
from metarl.core.guards import check_finite
from metarl.core.linalg import Params, params_to
from metarl.envs import Task, TaskVectorEnv
from metarl.rl.advantages import advantages_batch
from metarl.rl.learners.base import Learner
from metarl.rl.step_budget import sample_batch


class SampledEpisodes(NamedTuple):
    """What one meta-iteration samples for some tasks (all, or a Ray worker's share)."""

    supports: list[Episodes]  # the support episodes of every inner step
    query: Episodes  # sampled with the adapted parameters
    adapted: Params  # the per-task parameters that sampled the query episodes
    # the supports with their advantages, as the adaptation used them; a Ray worker leaves them
    # out (half the transfer) and the learner recomputes them from the episodes, identically
    support_batches: list[StepBatch]

    def to(self, device: torch.device) -> SampledEpisodes:
        """Everything on ``device``: what the Ray workers sampled on their CPUs, for a run
        whose maths run elsewhere."""
        return SampledEpisodes(
            [e.to(device) for e in self.supports], self.query.to(device),
            params_to(self.adapted, device),
            [StepBatch(*(x.to(device) for x in b)) for b in self.support_batches])


def check_episodes(episodes: Episodes, where: str) -> None:
    check_finite(f"the {where} observations", episodes.observations)
    check_finite(f"the {where} rewards", episodes.rewards)


def sample_episodes(
    env: TaskVectorEnv, policy: Policy, learner: Learner, config: TrainConfig,
    params: Params, tasks: Sequence[Task], seeds: Sequence[Sequence[int]],
) -> SampledEpisodes:
    """Support rollouts, the sampling-time adaptation and the query rollout of ``tasks``.

    ``seeds[r]`` holds one seed per task for rollout ``r`` (the supports, then the query): every
    task's episodes depend on its own seeds only, so sampling the tasks in shards, as the Ray
    workers do, gives exactly the episodes of sampling them together. A learner that does not
    adapt (the pretrained baseline) samples every rollout with theta.
    """
    c = config
    rollouts = learner.support_rollouts()
    if len(seeds) != rollouts + 1:
        raise ValueError(f"got seeds for {len(seeds)} rollouts, need {rollouts + 1}")
    adapted = per_task(params, len(tasks))
    supports: list[Episodes] = []
    batches: list[StepBatch] = []
    for s in range(rollouts):
        episodes = sample_batch(env, policy, adapted, tasks, c.episodes_per_task, c.horizon,
                                c.batch_unit, task_seeds=seeds[s])
        check_episodes(episodes, f"support step {s}")
        supports.append(episodes)
        if learner.adapts:
            batches.append(advantages_batch(episodes, c))
            adapted = learner.adapt_for_sampling(params, adapted, batches[-1])
    query = sample_batch(env, policy, adapted, tasks, c.episodes_per_task, c.horizon,
                         c.batch_unit, task_seeds=seeds[-1])
    check_episodes(query, "query")
    return SampledEpisodes(supports, query, adapted, batches)
