"""Episodes as time-major tensors with a validity mask, and the pure functions derived from them.

Shapes: ``[N tasks, T time, B episodes, ...]``. ``mask[n, t, b]`` is 1 while
episode ``b`` of task ``n`` is still running at step ``t`` and 0 after it terminated. A batch
counted in steps (``metarl.rl.step_budget``) gives tasks different numbers of episodes: the places
a task does not use are masked out at every step, so an episode is in the batch where its first
step is valid (``episode_mask``), and means over episodes count only those. Nothing here changes
its inputs.

Environments that report success (Meta-World's ``info["success"]``) also fill ``success``: 1.0
on the valid steps where the task's success criterion held; it is None for the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor


class Episodes(NamedTuple):
    observations: Tensor  # [N, T, B, obs]
    actions: Tensor  # [N, T, B, act]
    rewards: Tensor  # [N, T, B]
    mask: Tensor  # [N, T, B], 1.0 on valid steps
    success: Tensor | None = None  # [N, T, B], 1.0 on valid steps that met the task's goal

    @property
    def num_steps(self) -> int:
        """Valid environment steps in the batch."""
        return int(self.mask.sum().item())

    def to(self, device: torch.device | str) -> Episodes:
        """Every field on ``device``: a rollout fills its buffers on the host, then moves the
        whole batch to the policy's device at once."""
        success = None if self.success is None else self.success.to(device)
        return Episodes(self.observations.to(device), self.actions.to(device),
                        self.rewards.to(device), self.mask.to(device), success)


def concat_episodes(parts: Sequence[Episodes], dim: int) -> Episodes:
    """``parts`` joined along ``dim`` of every field (0: tasks, 2: episodes); ``success`` is
    joined when every part has it, else None."""
    def cat(tensors: list[Tensor]) -> Tensor:
        return torch.cat(tensors, dim=dim)

    successes = [p.success for p in parts if p.success is not None]
    return Episodes(
        cat([p.observations for p in parts]), cat([p.actions for p in parts]),
        cat([p.rewards for p in parts]), cat([p.mask for p in parts]),
        cat(successes) if len(successes) == len(parts) else None,
    )


def pad_episodes(episodes: Episodes, width: int) -> Episodes:
    """``episodes`` widened to ``width`` places per task with empty (all-zero, masked-out)
    episodes: batches counted in steps are as wide as their widest task, so two of them are
    joined along the task dimension at a common width."""
    extra = width - episodes.mask.shape[2]
    if extra < 0:
        raise ValueError(f"cannot pad {episodes.mask.shape[2]} episodes to {width}")

    def pad(x: Tensor | None) -> Tensor | None:
        if x is None or extra == 0:
            return x
        shape = (*x.shape[:2], extra, *x.shape[3:])
        return torch.cat([x, x.new_zeros(shape)], dim=2)

    return Episodes._make(pad(x) for x in episodes)


class StepBatch(NamedTuple):
    """Episodes flattened to ``[N, M = T*B]`` steps with their advantages: what losses consume.

    The leading task dimension may be absent (one task: ``[M, ...]``).
    """

    observations: Tensor  # [N, M, obs]
    actions: Tensor  # [N, M, act]
    advantages: Tensor  # [N, M]
    mask: Tensor  # [N, M]

    def subsample(self, index: Tensor) -> StepBatch:
        """The same steps ``index`` (along M) of every task."""
        return StepBatch(
            observations=self.observations.index_select(-2, index),
            actions=self.actions.index_select(-2, index),
            advantages=self.advantages.index_select(-1, index),
            mask=self.mask.index_select(-1, index),
        )

    def task(self, n: int) -> StepBatch:
        return StepBatch(*(x[n] for x in self))


def to_step_batch(episodes: Episodes, advantages: Tensor) -> StepBatch:
    n = episodes.rewards.shape[0]
    return StepBatch(
        observations=episodes.observations.reshape(n, -1, episodes.observations.shape[-1]),
        actions=episodes.actions.reshape(n, -1, episodes.actions.shape[-1]),
        advantages=advantages.reshape(n, -1),
        mask=episodes.mask.reshape(n, -1),
    )


def compact_steps(batch: StepBatch) -> StepBatch:
    """Each task's valid steps moved to the front (in order), the batch cut to the task with
    the most: the same masked sums over far fewer places. A batch counted in steps is as wide
    as its widest task (2D navigation: a goal one step from the start gives a task hundreds of
    episodes), so without this most of it would be padding. Not for DiCE, which reads episodes
    from the time-major layout."""
    mask = batch.mask
    width = max(1, int(mask.sum(dim=-1).max().item()))
    order = torch.sort((mask <= 0).to(torch.uint8), dim=-1, stable=True).indices[..., :width]

    def pick(x: Tensor) -> Tensor:
        index = order.view(*order.shape, *([1] * (x.dim() - order.dim())))
        return torch.gather(x, order.dim() - 1, index.expand(*order.shape, *x.shape[order.dim():]))

    return StepBatch(pick(batch.observations), pick(batch.actions), pick(batch.advantages),
                     pick(batch.mask))


def episode_returns(episodes: Episodes) -> Tensor:
    """Undiscounted return of every episode, ``[N, B]``."""
    return (episodes.rewards * episodes.mask).sum(dim=1)


def episode_mask(episodes: Episodes) -> Tensor:
    """1.0 for every episode in the batch, 0.0 for a place a task does not use, ``[N, B]``."""
    return episodes.mask[:, 0]


def mean_over_episodes(values: Tensor, episodes: Episodes) -> Tensor:
    """Each task's mean of a per-episode ``values [N, B]`` over its episodes, ``[N]``."""
    return masked_mean(values, episode_mask(episodes))


def mean_return(episodes: Episodes) -> float:
    """Mean undiscounted return over every episode of every task."""
    present = episode_mask(episodes)
    return ((episode_returns(episodes) * present).sum() / present.sum()).item()


def episode_success(episodes: Episodes) -> Tensor | None:
    """1.0 for every episode that met its task's goal on any valid step, else 0.0, ``[N, B]``
    (Meta-World's success metric, Yu et al. 2019, arXiv:1910.10897); None if the environment
    reports no success."""
    if episodes.success is None:
        return None
    return (episodes.success * episodes.mask).amax(dim=1)


def success_rate(episodes: Episodes) -> float | None:
    """Fraction of all episodes that succeeded, or None if the environment reports no success."""
    success = episode_success(episodes)
    if success is None:
        return None
    present = episode_mask(episodes)
    return ((success * present).sum() / present.sum()).item()


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """R_t = sum_{k>=t} gamma^(k-t) r_k over the valid steps, ``[N, T, B]``."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = (rewards[:, t] + gamma * running) * mask[:, t]
        returns[:, t] = running
    return returns


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> Tensor:
    """Generalised advantage estimation (Schulman et al. 2015, arXiv:1506.02438, eq. 16).

    The value after an episode's last valid step is taken as 0: termination and the horizon both
    end the episode, as in the MAML-RL code. With ``lam = 1`` this is ``returns - values``.
    """
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = (delta + gamma * lam * next_advantage) * mask[:, t]
        next_value = values[:, t] * mask[:, t]
        advantages[:, t] = next_advantage
    return advantages


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over the last dimension counting only ``mask == 1`` entries (0 if there are none)."""
    return (x * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def normalize_per_task(advantages: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """Zero mean, unit standard deviation over each task's valid steps; ``[N, ...]`` in and out."""
    flat = advantages.reshape(advantages.shape[0], -1)
    flat_mask = mask.reshape(mask.shape[0], -1)
    mean = masked_mean(flat, flat_mask).unsqueeze(-1)
    var = masked_mean((flat - mean).pow(2), flat_mask).unsqueeze(-1)
    normalized = (flat - mean) / (var.sqrt() + eps) * flat_mask
    return normalized.reshape(advantages.shape)
