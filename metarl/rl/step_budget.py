"""A task's batch counted in steps: whole episodes until the task has its budget of steps.

The MAML paper's samplers (Finn et al. 2017, arXiv:1703.03400; its RL code,
github.com/cbfinn/maml_rl, rllab's samplers) counted a batch in environment steps, not episodes:
"20 trajectories" of horizon 100 meant 2,000 steps per task, and the held-out test's "4,000
steps per update" meant whole episodes sampled one after another until 4,000 steps were reached.
Where episodes end early (2D navigation stops at the goal; a fallen Ant), a task then gets more
of them: after two adaptation steps on 2D navigation about 85 instead of 40. Those extra
episodes make the later test-time gradient steps less noisy; counted in episodes instead, the
second and third navigation steps score worse than the paper's protocol would give them.

``batch_unit: steps`` samples that way. Episodes are drawn in rounds of ``episodes_per_task``
per task (the lockstep rollout of ``metarl.rl.rollout``) until every task has at least its budget
of steps; each task then keeps, in the order drawn, every episode that started while its count
was below the budget (rllab's test sampler: whole episodes, the last one finished). A task's
kept episodes depend on its own seeds and parameters only, so sharded sampling (Ray) gives the
local episodes for the same parameters; the adaptation between rollouts sums over a shard's own
width, so the adapted parameters may differ from the local ones in the last bits.

The training sampler of the paper's code ran one environment per task in lockstep until the
meta-batch's completed steps reached the total, and dropped the episodes still running; here
training uses the test's rule per task, which keeps the last, possibly long, episode too.

Tasks keep different numbers of episodes: the batch is as wide as the widest task, each task's
kept episodes first, the places it does not use all zeros and masked out
(``metarl.core.episodes.episode_mask``, ``pad_episodes``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from metarl.core.distributions import Policy
from metarl.core.episodes import Episodes, concat_episodes
from metarl.core.linalg import Params
from metarl.envs.base import Task, TaskVectorEnv
from metarl.rl.rollout import rollout

BATCH_UNITS = ("episodes", "steps")


def sample_batch(
    env: TaskVectorEnv,
    policy: Policy,
    params: Params,
    tasks: Sequence[Task],
    episodes_per_task: int,
    horizon: int,
    unit: str,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    task_seeds: Sequence[int] | None = None,
) -> Episodes:
    """Each task's batch: ``episodes_per_task`` episodes (``unit`` "episodes"), or whole
    episodes until ``episodes_per_task * horizon`` steps (``unit`` "steps").

    The randomness arguments are those of ``metarl.rl.rollout.rollout``; the first round uses
    them as given, so a batch whose first round reaches every budget (no episode ended early)
    is the batch counted in episodes.
    """
    if unit not in BATCH_UNITS:
        raise ValueError(f"batch unit must be one of {BATCH_UNITS}, got {unit!r}")
    first = rollout(env, policy, params, tasks, episodes_per_task, horizon, generator, seed,
                    task_seeds)
    if unit == "episodes":
        return first
    budget = episodes_per_task * horizon
    rounds = [first]
    steps = first.mask.sum(dim=(1, 2))
    while bool((steps < budget).any()):
        r = len(rounds)
        more = rollout(env, policy, params, tasks, episodes_per_task, horizon, generator,
                       None if seed is None else _round_seed(seed, r),
                       None if task_seeds is None else [_round_seed(s, r) for s in task_seeds])
        rounds.append(more)
        steps = steps + more.mask.sum(dim=(1, 2))
    episodes = rounds[0] if len(rounds) == 1 else concat_episodes(rounds, dim=2)
    return first_episodes_within(episodes, budget)


def first_episodes_within(episodes: Episodes, budget: int) -> Episodes:
    """Per task, the episodes (in order) that started before ``budget`` steps were used up,
    moved to the front; the batch is cut to the widest task's count and the others' extra
    places are masked out."""
    lengths = episodes.mask.sum(dim=1)  # [N, B]
    started_after = torch.cumsum(lengths, dim=1) - lengths
    keep = started_after < budget
    width = int(keep.sum(dim=1).max().item())
    # kept episodes first, in their order (a stable sort of "not kept")
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices[:, :width]
    kept = torch.gather(keep, 1, order).to(episodes.mask.dtype)

    def pick(x: torch.Tensor) -> torch.Tensor:
        index = order.view(order.shape[0], 1, width, *([1] * (x.dim() - 3)))
        return torch.gather(x, 2, index.expand(x.shape[0], x.shape[1], width, *x.shape[3:]))

    # a place a task does not use holds zeros, as `pad_episodes` fills it
    mask = pick(episodes.mask) * kept.unsqueeze(1)
    places = kept.view(*kept.shape[:1], 1, width, 1)
    success = None if episodes.success is None else pick(episodes.success) * mask
    return Episodes(pick(episodes.observations) * places, pick(episodes.actions) * places,
                    pick(episodes.rewards) * mask, mask, success)


def _round_seed(seed: int, round_index: int) -> int:
    """The seed of a later round, from the batch's seed and the round's index alone."""
    return int(np.random.SeedSequence([seed, round_index]).generate_state(1)[0])
