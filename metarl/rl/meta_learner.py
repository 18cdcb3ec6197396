"""One RL meta-training run's working parts: the vector environment, the policy, the random
streams, the learner and the outer step from their registries, and the Ray workers if any.

The policy's parameters and all the learning maths live on the config's ``device``
(``metarl.rl.device``); the simulators, the random streams and the Ray workers stay on the CPU.

One iteration (Finn et al. 2017, arXiv:1703.03400, Algorithm 3): sample ``meta_batch_size``
tasks; sample their support episodes and adapt as the learner does; sample the query episodes
with the adapted policies; then the outer step updates theta along the learner's direction.
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from metarl.config import TrainConfig
from metarl.core.episodes import Episodes, masked_mean
from metarl.core.guards import NonFiniteError, check_finite
from metarl.core.linalg import Params, params_to
from metarl.core.maml import MetaBatch, QueryBatch
from metarl.envs import Task, make_task_vector_env
from metarl.rl.advantages import advantages_batch
from metarl.rl.combination import check_combination
from metarl.rl.device import note_slow_bfloat16, resolve_device
from metarl.rl.learners import learner_class
from metarl.rl.objective import MetaObjective
from metarl.rl.outer_steps import outer_step_class
from metarl.rl.policy import build_policy
from metarl.rl.rollout import draw_task_seeds
from metarl.rl.sampling import SampledEpisodes, sample_episodes
from metarl.rl.train_state import TrainState
from metarl.run.watchdog import rollout_deadline

if TYPE_CHECKING:
    from metarl.rl.ray_sampler import RaySampler


class MetaLearner:
    """Holds what one run samples and learns with; ``iteration`` is one meta-iteration."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = check_combination(config)
        self.device = resolve_device(config.device)  # no CUDA here: one line, nothing built
        note_slow_bfloat16(config.curvature_dtype, self.device)
        self.env = make_task_vector_env(
            config.env_id, config.meta_batch_size * config.episodes_per_task, config.physics,
            action_space=config.action_space,
        )
        torch.manual_seed(config.seed)
        # built on the CPU, so that a seed starts from the same parameters on every device
        self.policy = build_policy(config, self.env)
        # tasks from their own stream, so that how much a run samples never changes its tasks
        task_seed, dynamics_seed = np.random.SeedSequence(config.seed).spawn(2)
        self.task_rng = np.random.default_rng(task_seed)
        self.dynamics_rng = np.random.default_rng(dynamics_seed)  # environment reset seeds
        self.generator = torch.Generator().manual_seed(config.seed)
        self.objective = MetaObjective.for_config(config, self.policy)
        self.learner = learner_class(config.learner)(config, self.objective)
        self.outer_step = outer_step_class(config.outer)(config, self.objective, self.generator)
        self.ray: RaySampler | None = None  # last: nothing after it may fail and leak its actors
        if config.sampler == "ray":
            from metarl.rl.ray_sampler import RaySampler

            self.ray = RaySampler(config)

    @property
    def inner_loss(self) -> Any:
        return self.objective.inner_loss

    @property
    def outer_loss(self) -> Any:
        return self.objective.outer_loss

    def close(self) -> None:
        """Stop the Ray workers, if any, and the simulator's threads (idempotent)."""
        if self.ray is not None:
            self.ray.close()
        self.env.close()

    def __enter__(self) -> MetaLearner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rng_state(self) -> dict[str, Any]:
        return {"numpy": self.task_rng.bit_generator.state,
                "dynamics": self.dynamics_rng.bit_generator.state,
                "torch": self.generator.get_state()}

    def set_rng_state(self, state: dict[str, Any]) -> None:
        if "dynamics" not in state:
            raise ValueError("the checkpoint's random streams come from an older metarl that "
                             "drew tasks and resets from one stream; it cannot be resumed exactly")
        self.task_rng.bit_generator.state = state["numpy"]
        self.dynamics_rng.bit_generator.state = state["dynamics"]
        self.generator.set_state(state["torch"])

    def initial_state(self) -> TrainState:
        params = params_to(self.policy.initial_params(), self.device)
        adam = self.outer_step.initial_optimiser_state(params)
        return TrainState(params, adam, 0, 0, float("-inf"), self.config.inner_kl_coef)

    def sample(self, params: Params) -> tuple[MetaBatch, dict[str, float]]:
        """Support and query episodes for a fresh meta-batch of tasks, as the learner's batch.

        The inner steps here only choose the policies that sample; the meta-gradient recomputes
        them with their graph, a few tasks at a time, which bounds peak memory.
        """
        c = self.config
        tasks = self.env.sample_tasks(c.meta_batch_size, self.task_rng)
        sampled = self._sample_episodes(params, tasks)
        supports = sampled.support_batches
        if self.learner.adapts and not supports:  # a Ray worker's episodes come without them
            supports = [advantages_batch(e, c) for e in sampled.supports]
        return self.learner.meta_batch(sampled.supports, supports, sampled.query,
                                       sampled.adapted, self.query_batch)

    def _sample_episodes(self, params: Params, tasks: list[Task]) -> SampledEpisodes:
        """The meta-batch's episodes, sampled here or by the Ray workers: the same either way.
        Each rollout takes one seed per task from the dynamics stream."""
        seeds = [draw_task_seeds(self.dynamics_rng, len(tasks))
                 for _ in range(self.learner.support_rollouts() + 1)]
        if self.ray is not None:  # the workers sample on their CPUs
            return self.ray.sample(params, tasks, seeds).to(self.device)
        return sample_episodes(self.env, self.policy, self.learner, self.config, params, tasks,
                               seeds)

    def query_batch(self, params: Params, episodes: Episodes) -> QueryBatch:
        """Query steps with the sampling policy's outputs, for the surrogate and the KL."""
        query = advantages_batch(episodes, self.config)
        with torch.no_grad():
            old_dist = self.policy.distribution_params(params, query.observations)
            old_log_prob = self.policy.distribution.log_prob(old_dist, query.actions)
        return QueryBatch(query, old_dist, old_log_prob)

    def update(self, state: TrainState, batch: MetaBatch) -> tuple[TrainState, dict[str, float]]:
        """The outer step on ``batch``: the state with new parameters (and optimiser state),
        and the step's metrics. The iteration and step counters are the caller's."""
        return self.outer_step.update(self.learner, state, batch)

    def meta_gradient(self, params: Params, batch: MetaBatch
                      ) -> tuple[Tensor, Params, dict[str, float]]:
        """The learner's loss, meta-gradient (a direction, for Reptile) and solver metrics."""
        return self.learner.direction(params, batch)

    def exploration(self, params: Params, batch: MetaBatch) -> dict[str, float]:
        """How much the meta-policy ``params`` still explores: its mean entropy on the query
        states (``policy/entropy``) and, for a Gaussian, its mean standard deviation."""
        steps = batch.query.steps
        with torch.no_grad():
            dist = self.policy.distribution_params(params, steps.observations)
            entropy = masked_mean(self.policy.distribution.entropy(dist), steps.mask).mean()
        metrics = {"policy/entropy": entropy.item()}
        if "log_std" in params:
            metrics["policy/std"] = params["log_std"].exp().mean().item()
        return metrics

    def iteration(self, state: TrainState) -> tuple[TrainState, dict[str, float]]:
        """One meta-iteration. A NaN or inf raises ``NonFiniteError`` before the update is
        applied; with ``skip_nonfinite`` the batch is skipped instead (parameters unchanged,
        counted in ``guard/skipped``)."""
        start = time.perf_counter()
        try:
            with rollout_deadline(self.config.rollout_timeout_s, state.iteration + 1):
                batch, metrics = self.sample(state.params)
            sampled = time.perf_counter()
            updated, update_metrics = self.update(state, batch)
            check_finite("the updated parameters", updated.params)
        except NonFiniteError as err:
            if not self.config.skip_nonfinite:
                raise NonFiniteError(f"iteration {state.iteration + 1}: {err}") from err
            warnings.warn(f"iteration {state.iteration + 1} skipped: {err}", stacklevel=2)
            skipped = state._replace(iteration=state.iteration + 1,
                                     skipped=state.skipped + 1)
            return skipped, {"guard/skipped": float(skipped.skipped)}
        done = time.perf_counter()
        env_steps = state.env_steps + int(metrics.pop("env/steps_per_iteration"))
        metrics.update(update_metrics)
        metrics.update({
            "time/rollout_s": sampled - start,
            "time/update_s": done - sampled,
            "time/iteration_s": done - start,
            "env/steps": float(env_steps),
        })
        metrics["guard/skipped"] = float(state.skipped)
        metrics.update(self.exploration(updated.params, batch))
        best = max(state.best_return, metrics["query/return"])
        return updated._replace(iteration=state.iteration + 1, env_steps=env_steps,
                                best_return=best), metrics
