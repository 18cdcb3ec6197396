"""Meta-training driver: MAML with a TRPO or Adam (REINFORCE) outer step on a task family.

One iteration (Finn et al. 2017, arXiv:1703.03400, Algorithm 3): sample ``meta_batch_size``
tasks; for each, sample support episodes with theta, adapt by ``inner_steps`` policy-gradient
steps (resampling with the adapted policy before each later step), sample query episodes with
the adapted policy; then update theta on the query surrogate through the adaptation.
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from metarl.adaptation import adapt_step, per_task
from metarl.atomic_write import write_json, write_text
from metarl.baselines import fit_linear_baseline
from metarl.checkpoint import check_params, load_checkpoint, save_checkpoint
from metarl.config import TrainConfig, load_config, resolve_threads, save_config
from metarl.envs import Task, TaskVectorEnv, make_task_vector_env
from metarl.episodes import (
    Episodes,
    StepBatch,
    concat_episodes,
    discounted_returns,
    episode_returns,
    gae,
    normalize_per_task,
    success_rate,
    to_step_batch,
)
from metarl.estimators import InnerLoss, inner_loss_for
from metarl.graceful_stop import GracefulStop
from metarl.guards import NonFiniteError, check_finite
from metarl.imaml import imaml_gradient, proximal_adapt
from metarl.linalg import Params, flatten
from metarl.logger import RunLogger
from metarl.maml import (
    MetaBatch,
    QueryBatch,
    curvature_subsample,
    fisher_vector_product,
    meta_gradient,
    pre_update_fisher_product,
    query_loss_and_kl,
    random_subset,
    surrogate_loss,
)
from metarl.outer import AdamState, adam_init, adam_step, trpo_step
from metarl.plots import plot_training_curves
from metarl.policies import GaussianMLPPolicy, gaussian_log_prob
from metarl.policy_proximal import anchored_batch, floored_surrogate_loss
from metarl.promp import pre_update_kl, promp_step
from metarl.reptile import reptile_direction
from metarl.resources import peak_rss_mb
from metarl.rollout import draw_task_seeds, rollout
from metarl.watchdog import rollout_deadline

if TYPE_CHECKING:
    from metarl.ray_sampler import RaySampler


class TrainState(NamedTuple):
    params: Params
    adam: AdamState | None  # the "adam" and "promp" outer steps' optimiser state
    iteration: int
    env_steps: int
    best_return: float
    kl_coef: float = 0.0  # the "promp" outer step's current KL penalty weight
    skipped: int = 0  # batches skipped for non-finite values (skip_nonfinite)


def build_policy(config: TrainConfig, obs_dim: int, act_dim: int) -> GaussianMLPPolicy:
    return GaussianMLPPolicy(
        obs_dim, act_dim, config.hidden_sizes, config.activation, config.init_log_std
    )


def initial_params(config: TrainConfig) -> Params:
    """The parameters a run of ``config`` starts from (``MetaLearner`` seeds torch the same):
    the random-initialisation baseline, and the names and shapes a checkpoint must have."""
    env = make_task_vector_env(config.env_id, 1, config.physics,
                               action_space=config.action_space)
    torch.manual_seed(config.seed)
    return build_policy(config, env.obs_dim, env.act_dim).initial_params()


def load_params(path: Path, config: TrainConfig) -> tuple[Params, dict[str, Any]]:
    """A checkpoint's parameters, checked against ``config``'s policy (one-line error if they
    do not fit), and the whole payload."""
    payload = load_checkpoint(path)
    check_params(path, payload["params"], initial_params(config))
    return payload["params"], payload


def check_episodes(episodes: Episodes, where: str) -> None:
    check_finite(f"the {where} observations", episodes.observations)
    check_finite(f"the {where} rewards", episodes.rewards)


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


def success_metrics(support: Episodes, query: Episodes) -> dict[str, float]:
    """``support/success_rate`` and ``query/success_rate`` (fraction of episodes that met their
    task's goal on any step), for environments that report success (Meta-World)."""
    rates = {"support/success_rate": success_rate(support),
             "query/success_rate": success_rate(query)}
    return {key: rate for key, rate in rates.items() if rate is not None}


class SampledEpisodes(NamedTuple):
    """What one meta-iteration samples for some tasks (all, or a Ray worker's share)."""

    supports: list[Episodes]  # the support episodes of every inner step
    query: Episodes  # sampled with the adapted parameters
    adapted: Params  # the per-task parameters that sampled the query episodes
    # the supports with their advantages, as the adaptation used them; a Ray worker leaves them
    # out (half the transfer) and the learner recomputes them from the episodes, identically
    support_batches: list[StepBatch]


def support_rollouts(config: TrainConfig) -> int:
    """Support rollouts per meta-iteration; iMAML's inner steps all reuse one support batch."""
    return 1 if config.learner == "imaml" else config.inner_steps


def sample_episodes(
    env: TaskVectorEnv, policy: GaussianMLPPolicy, inner_loss: InnerLoss, config: TrainConfig,
    params: Params, tasks: Sequence[Task], seeds: Sequence[Sequence[int]],
) -> SampledEpisodes:
    """Support rollouts, the sampling-time adaptation and the query rollout of ``tasks``.

    ``seeds[r]`` holds one seed per task for rollout ``r`` (the supports, then the query): every
    task's episodes depend on its own seeds only, so sampling the tasks in shards, as the Ray
    workers do, gives exactly the episodes of sampling them together. The pretrained baseline
    does not adapt: all its rollouts use theta.
    """
    c = config
    if len(seeds) != support_rollouts(c) + 1:
        raise ValueError(f"got seeds for {len(seeds)} rollouts, need {support_rollouts(c) + 1}")
    adapted = per_task(params, len(tasks))
    supports: list[Episodes] = []
    batches: list[StepBatch] = []
    for s in range(support_rollouts(c)):
        episodes = rollout(env, policy, adapted, tasks, c.episodes_per_task, c.horizon,
                           task_seeds=seeds[s])
        check_episodes(episodes, f"support step {s}")
        supports.append(episodes)
        if c.learner == "pretrained":
            continue
        batches.append(advantages_batch(episodes, c))
        if c.learner == "imaml":
            adapted = proximal_adapt(floored_surrogate_loss(policy), params,
                                     anchored_batch(policy, params, batches[-1]), c.prox_lambda,
                                     c.inner_lr, c.inner_steps).adapted
        else:
            adapted = adapt_step(inner_loss, adapted, batches[-1], c.inner_lr)
    query = rollout(env, policy, adapted, tasks, c.episodes_per_task, c.horizon,
                    task_seeds=seeds[-1])
    check_episodes(query, "query")
    return SampledEpisodes(supports, query, adapted, batches)


class MetaLearner:
    """Holds what one run samples with: the vector environment, the policy and the RNGs."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.env = make_task_vector_env(
            config.env_id, config.meta_batch_size * config.episodes_per_task, config.physics,
            action_space=config.action_space,
        )
        torch.manual_seed(config.seed)
        self.policy = build_policy(config, self.env.obs_dim, self.env.act_dim)
        # tasks from their own stream, so that how much a run samples never changes its tasks
        task_seed, dynamics_seed = np.random.SeedSequence(config.seed).spawn(2)
        self.task_rng = np.random.default_rng(task_seed)
        self.dynamics_rng = np.random.default_rng(dynamics_seed)  # environment reset seeds
        self.generator = torch.Generator().manual_seed(config.seed)
        self.inner_loss = inner_loss_for(self.policy, config.estimator, config.episodes_per_task)
        self.outer_loss = surrogate_loss(self.policy)
        self.ray: RaySampler | None = None  # last: nothing after it may fail and leak its actors
        if config.sampler == "ray":
            from metarl.ray_sampler import RaySampler

            self.ray = RaySampler(config)

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
        params = self.policy.initial_params()
        adam = adam_init(params) if self.config.outer in ("adam", "promp") else None
        return TrainState(params, adam, 0, 0, float("-inf"), self.config.inner_kl_coef)

    def sample(self, params: Params) -> tuple[MetaBatch, dict[str, float]]:
        """Support and query episodes for a fresh meta-batch of tasks.

        The inner steps here only choose the policies that sample; the meta-gradient recomputes
        them with their graph, a few tasks at a time, which bounds peak memory.
        """
        c = self.config
        tasks = self.env.sample_tasks(c.meta_batch_size, self.task_rng)
        sampled = self._sample_episodes(params, tasks)
        if c.learner == "pretrained":
            return self._sample_without_adaptation(sampled)
        supports = sampled.support_batches or [advantages_batch(e, c) for e in sampled.supports]
        steps = sum(e.num_steps for e in sampled.supports) + sampled.query.num_steps
        batch = MetaBatch(supports, self._query_batch(sampled.adapted, sampled.query))
        metrics = {
            "support/return": episode_returns(sampled.supports[0]).mean().item(),
            "query/return": episode_returns(sampled.query).mean().item(),
            "env/steps_per_iteration": float(steps),
            **success_metrics(sampled.supports[0], sampled.query),
        }
        return batch, metrics

    def _sample_episodes(self, params: Params, tasks: list[Any]) -> SampledEpisodes:
        """The meta-batch's episodes, sampled here or by the Ray workers: the same either way.
        Each rollout takes one seed per task from the dynamics stream."""
        c = self.config
        seeds = [draw_task_seeds(self.dynamics_rng, len(tasks))
                 for _ in range(support_rollouts(c) + 1)]
        if self.ray is not None:
            return self.ray.sample(params, tasks, seeds)
        return sample_episodes(self.env, self.policy, self.inner_loss, c, params, tasks, seeds)

    def _sample_without_adaptation(self, sampled: SampledEpisodes
                                   ) -> tuple[MetaBatch, dict[str, float]]:
        """The pretrained baseline's batch: as many episodes as MAML samples per iteration
        (every support step and the query), all with theta, pooled per task as one query."""
        shared = sampled.adapted  # theta per task: the pretrained baseline does not adapt
        episodes = concat_episodes([*sampled.supports, sampled.query], dim=2)
        check_episodes(episodes, "pretraining")
        mean_return = episode_returns(episodes).mean().item()
        metrics = {"support/return": mean_return, "query/return": mean_return,
                   "env/steps_per_iteration": float(episodes.num_steps),
                   **success_metrics(episodes, episodes)}
        return MetaBatch([], self._query_batch(shared, episodes)), metrics

    def _query_batch(self, params: Params, episodes: Episodes) -> QueryBatch:
        """Query steps with the sampling policy's outputs, for the surrogate and the KL."""
        query = advantages_batch(episodes, self.config)
        with torch.no_grad():
            old_mean, old_log_std = self.policy.distribution_params(params, query.observations)
            old_log_prob = gaussian_log_prob(old_mean, old_log_std, query.actions)
        return QueryBatch(query, old_mean, old_log_std, old_log_prob)

    def update(self, state: TrainState, batch: MetaBatch) -> tuple[TrainState, dict[str, float]]:
        """The outer step on ``batch``: the state with new parameters (and optimiser state),
        and the step's metrics. The iteration and step counters are the caller's."""
        c = self.config

        def loss_and_kl(params: Params) -> tuple[torch.Tensor, torch.Tensor]:
            return query_loss_and_kl(
                self.policy, self.inner_loss, params, batch, c.inner_lr,
                c.first_order_meta_gradient, c.meta_grad_chunk,
            )

        if c.outer == "promp":
            assert state.adam is not None
            promp = promp_step(
                self.policy, self.inner_loss, state.params, state.adam, batch, c.inner_lr,
                c.outer_lr, c.promp_steps, c.clip_eps, state.kl_coef, c.inner_kl_target,
                c.first_order_meta_gradient, c.meta_grad_chunk,
            )
            with torch.no_grad():
                loss_after, kl = loss_and_kl(promp.params)
            metrics = {
                "outer/surrogate_before": promp.loss_before,
                "outer/surrogate_after": loss_after.item(),
                "outer/kl": kl.item(),
                "outer/pre_update_kl": promp.pre_update_kl,
                "outer/kl_coef": state.kl_coef,
            }
            new = state._replace(params=promp.params, adam=promp.adam, kl_coef=promp.kl_coef)
            return new, metrics
        loss, grads, metrics = self.meta_gradient(state.params, batch)
        check_finite("the meta-loss", loss)
        check_finite("the meta-gradient", grads)
        if c.outer == "trpo":
            gradient = flatten(grads)
            curvature_batch = curvature_subsample(batch, c.fvp_fraction, self.generator,
                                                  c.fvp_task_fraction)
            fisher = fisher_vector_product(
                self.policy, self.inner_loss, state.params, curvature_batch, c.inner_lr,
                c.first_order_meta_gradient, c.cg_damping,
            )
            trust_region: Callable[[Params], tuple[Tensor, Tensor]] = loss_and_kl
            if c.trpo_pre_update_kl and batch.supports:  # the pretrained baseline has none
                fisher, trust_region = self._with_pre_update_kl(state.params, batch,
                                                                curvature_batch, fisher)
            result = trpo_step(
                state.params, gradient, loss.item(), fisher, trust_region,
                c.max_kl, c.cg_iters, c.ls_backtrack, c.ls_max_steps,
            )
            post_update_kl = result.kl
            if trust_region is not loss_and_kl:  # result.kl includes the pre-update term
                with torch.no_grad():
                    post_update_kl = loss_and_kl(result.params)[1].item()
            metrics.update({
                "outer/surrogate_before": result.loss_before,
                "outer/surrogate_after": result.loss_after,
                "outer/kl": post_update_kl,
                "outer/trust_region_kl": result.kl,
                "outer/ls_steps": float(result.line_search_steps),
                "outer/accepted": float(result.accepted),
                "outer/cg_residual": result.cg_residual,
            })
            return state._replace(params=result.params), metrics
        adam = state.adam
        if c.outer == "adam":
            assert adam is not None
            params, adam = adam_step(state.params, grads, adam, c.outer_lr)
        else:  # sgd: with Reptile's direction this is theta + eps mean(phi - theta)
            params = {k: state.params[k] - c.outer_lr * grads[k] for k in grads}
        metrics["outer/surrogate_before"] = loss.item()
        if c.learner in ("maml", "fomaml", "pretrained"):
            with torch.no_grad():
                loss_after, kl = loss_and_kl(params)
            metrics.update({"outer/surrogate_after": loss_after.item(), "outer/kl": kl.item()})
        return state._replace(params=params, adam=adam), metrics

    def _with_pre_update_kl(
        self, params: Params, batch: MetaBatch, curvature_batch: MetaBatch,
        post_update: Callable[[Tensor], Tensor],
    ) -> tuple[Callable[[Tensor], Tensor], Callable[[Params], tuple[Tensor, Tensor]]]:
        """TRPO's curvature and trust-region measure with the pre-update policy's KL on the
        first support batch's states added to the adapted policies' KL (``trpo_pre_update_kl``):
        its curvature on the curvature batch's tasks and a ``fvp_fraction`` of their steps, the
        line search's check on all of them."""
        c = self.config
        support = batch.supports[0]
        with torch.no_grad():
            old = self.policy.distribution_params(params, support.observations)
        curvature_support = curvature_batch.supports[0]
        index = random_subset(curvature_support.mask.shape[-1], c.fvp_fraction, self.generator)
        pre_update = pre_update_fisher_product(self.policy, params,
                                               curvature_support.subsample(index))

        def fisher(vector: Tensor) -> Tensor:
            return post_update(vector) + pre_update(vector)

        def loss_and_total_kl(candidate: Params) -> tuple[Tensor, Tensor]:
            loss, kl = query_loss_and_kl(self.policy, self.inner_loss, candidate, batch,
                                         c.inner_lr, c.first_order_meta_gradient,
                                         c.meta_grad_chunk)
            return loss, kl + pre_update_kl(self.policy, candidate, support, old)

        return fisher, loss_and_total_kl

    def meta_gradient(
        self, params: Params, batch: MetaBatch
    ) -> tuple[torch.Tensor, Params, dict[str, float]]:
        """The learner's loss, meta-gradient (a direction, for Reptile) and solver metrics."""
        c = self.config
        if c.learner == "reptile":
            loss, direction = reptile_direction(self.inner_loss, params, batch.supports,
                                                c.inner_lr, chunk_size=c.meta_grad_chunk)
            return loss, direction, {}
        if c.learner == "imaml":
            return imaml_gradient(
                floored_surrogate_loss(self.policy), self.outer_loss, params,
                anchored_batch(self.policy, params, batch.supports[0]), batch.query,
                c.prox_lambda, c.inner_lr, c.inner_steps, c.imaml_cg_iters, c.prox_damping,
                chunk_size=c.meta_grad_chunk,
            )
        loss, grads = meta_gradient(
            self.inner_loss, self.outer_loss, params, batch.supports, batch.query, c.inner_lr,
            c.first_order_meta_gradient, mode="batched", chunk_size=c.meta_grad_chunk,
        )
        return loss, grads, {}

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
        best = max(state.best_return, metrics["query/return"])
        return updated._replace(iteration=state.iteration + 1, env_steps=env_steps,
                                best_return=best), metrics


def checkpoint_payload(
    config: TrainConfig, state: TrainState, query_return: float | None = None,
    rng: dict[str, Any] | None = None, train_seconds: float = 0.0,
) -> dict[str, Any]:
    """What a checkpoint holds; ``query_return`` is the training return ``state.params`` earned
    after adaptation, when it was measured. With the learner's ``rng`` streams it holds all a
    resumed run needs to continue exactly as if it had never stopped; ``train_seconds`` (all
    sessions' training time so far) lets a resumed run keep to its ``max_minutes``."""
    return {
        "params": state.params,
        "iteration": state.iteration,
        "env_steps": state.env_steps,
        "best_return": state.best_return,
        "kl_coef": state.kl_coef,
        "skipped": state.skipped,
        "adam": None if state.adam is None else state.adam._asdict(),
        "query_return": query_return,
        "rng": rng,
        "train_seconds": train_seconds,
        "config": config.to_dict(),
    }


def restore_state(payload: dict[str, Any]) -> TrainState:
    adam = payload["adam"]
    return TrainState(
        params=payload["params"],
        adam=None if adam is None else AdamState(**adam),
        iteration=payload["iteration"],
        env_steps=payload["env_steps"],
        best_return=payload["best_return"],
        kl_coef=payload["kl_coef"],
        skipped=payload.get("skipped", 0),
    )


def check_resumable(config: TrainConfig, payload: dict[str, Any]) -> None:
    """A one-line error unless ``payload`` came from a run of ``config`` and can be continued."""
    if payload.get("rng") is None:
        raise ValueError("the checkpoint holds no random streams (written by an older metarl); "
                         "it cannot be resumed exactly")
    missing = [key for key in ("config", "iteration", "adam", "kl_coef") if key not in payload]
    if missing:
        raise ValueError(f"the checkpoint lacks {', '.join(missing)}; it cannot be resumed")
    check_same_run(config, payload["config"])
    if payload["iteration"] > config.iterations:
        raise ValueError(f"the run is at iteration {payload['iteration']}, beyond --iterations "
                         f"{config.iterations}")


def check_same_run(config: TrainConfig, saved: dict[str, Any]) -> None:
    """A one-line error if ``config`` differs from the run's ``saved`` config in a field that
    changes the maths or the random streams. A field that ``saved`` lacks (a run written before
    the field existed, such as ``action_space``) ran with that field's default."""
    defaults = TrainConfig().to_dict()
    changed = sorted(k for k, v in config.to_dict().items()
                     if k not in RESUMABLE_CHANGES and saved.get(k, defaults[k]) != v)
    if changed:
        raise ValueError(f"cannot resume with a different {', '.join(changed)} "
                         f"(only {', '.join(sorted(RESUMABLE_CHANGES))} may change)")


def resume_state(config: TrainConfig, run_dir: Path,
                 learner: MetaLearner) -> tuple[TrainState, float]:
    """Where ``run_dir`` continues from: its last checkpoint (the learner's random streams are
    set from it), or the start when the run stopped before writing one; starting over then
    reproduces the run exactly. Metrics logged after that point are dropped. Also returns the
    training seconds of the earlier sessions (0 when the checkpoint predates their record)."""
    last = run_dir / "checkpoints" / "last.pt"
    if not last.exists():
        check_same_run(config, load_config(run_dir / "config.yaml").to_dict())
        truncate_metrics(run_dir / "metrics.jsonl", 0)
        return learner.initial_state(), 0.0
    payload = load_checkpoint(last)
    check_resumable(config, payload)
    check_params(last, payload["params"], learner.policy.initial_params())
    state = restore_state(payload)
    learner.set_rng_state(payload["rng"])
    truncate_metrics(run_dir / "metrics.jsonl", state.iteration)
    return state, float(payload.get("train_seconds", 0.0))


def truncate_metrics(path: Path, iteration: int) -> None:
    """Drop the metrics logged after ``iteration`` (the run resumes from there), atomically."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines(keepends=True):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a crash
            break
        if row["iteration"] <= iteration:
            kept.append(line if line.endswith("\n") else line + "\n")
    write_text(path, "".join(kept))


def record_training_video(run_dir: Path, state: TrainState, logger: RunLogger) -> None:
    """A video of the current meta-policy before and after one inner step, into ``videos/``
    and TensorBoard. Rendering problems (no OpenGL, say) warn instead of stopping training."""
    from metarl.video import record_video

    try:
        record_video(run_dir, tasks=2, steps=1, params=state.params, tensorboard=logger.writer,
                     global_step=state.iteration,
                     out=run_dir / "videos" / f"iteration{state.iteration:05d}.mp4")
    except (OSError, ValueError) as err:
        warnings.warn(f"no video at iteration {state.iteration}: {err}", stacklevel=2)


# Fields a resumed run may change: they affect neither the maths nor the random streams.
RESUMABLE_CHANGES = frozenset({"iterations", "max_minutes", "log_interval", "checkpoint_interval",
                               "video_interval", "eval_tasks", "eval_steps", "eval_episodes",
                               "rollout_timeout_s",
                               # either sampler gives the same episodes: a run may move to Ray
                               "sampler", "ray_workers", "ray_address"})


def write_summary(run_dir: Path, state: TrainState, metrics: dict[str, float],
                  iteration_seconds: list[float], session_seconds: float,
                  total_seconds: float) -> dict[str, Any]:
    """Write ``summary.json`` (atomically) and ``curves.png`` of a run; returns the summary."""
    summary = {
        "iterations": state.iteration,
        "minutes": session_seconds / 60,
        "train_minutes_total": total_seconds / 60,
        "seconds_per_iteration_median": (statistics.median(iteration_seconds)
                                         if iteration_seconds else None),
        "peak_memory_mb": peak_rss_mb(),
        "env_steps": state.env_steps,
        "best_query_return": state.best_return,
        "final_support_return": metrics.get("support/return"),
        "final_query_return": metrics.get("query/return"),
    }
    write_json(run_dir / "summary.json", summary)
    plot_training_curves(run_dir / "curves.png", run_dir / "metrics.jsonl")
    return summary


def train(config: TrainConfig, run_dir: Path, progress: bool = True,
          resume: bool = False) -> dict[str, Any]:
    """Meta-train per ``config``, writing config, logs and checkpoints into ``run_dir``.

    ``checkpoints/best.pt`` holds the meta-parameters whose adapted policies earned the best
    training return (the MAML paper's evaluation checkpoint): those in force while that
    iteration sampled, before its outer update. ``checkpoints/last.pt`` holds the latest ones
    with the optimiser state and random streams; an interruption (Ctrl-C) saves it before
    stopping, and ``summary.json`` and ``curves.png`` as a finished run does. With ``resume``
    the run continues from ``last.pt`` and ends exactly where an uninterrupted run would (same
    parameters and metrics, on the same machine and threads). A ``max_minutes`` budget ends the
    run early, after the iteration that passes it.
    """
    torch.set_num_threads(resolve_threads(config.torch_threads))
    learner = MetaLearner(config)  # fails on a bad env id before the run dir is touched
    checkpoints = run_dir / "checkpoints"
    try:
        state, seconds_before = (resume_state(config, run_dir, learner) if resume
                                 else (learner.initial_state(), 0.0))
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
    except BaseException:
        learner.close()  # Ray workers, if any, end with the run however it ends
        raise
    started = time.perf_counter()

    def elapsed() -> float:
        """Training seconds of all sessions of this run."""
        return seconds_before + time.perf_counter() - started

    metrics: dict[str, float] = {}
    iteration_seconds: list[float] = []
    summary: dict[str, Any] = {}
    rng = learner.rng_state()  # the streams as of state.iteration, never mid-iteration
    with (learner,  # stops the Ray workers, if any, last
          RunLogger(run_dir, config.iterations, progress, initial=state.iteration) as logger,
          GracefulStop() as stop):  # Ctrl-C / SIGTERM: stop between iterations
        try:
            while state.iteration < config.iterations:
                stop.raise_if_requested()
                previous = state
                state, metrics = learner.iteration(state)
                rng = learner.rng_state()
                echo = state.iteration % config.log_interval == 0 or state.iteration == 1
                logger.log(state.iteration, metrics, echo)
                if "time/iteration_s" in metrics:  # absent when the batch was skipped
                    iteration_seconds.append(metrics["time/iteration_s"])
                if state.best_return > previous.best_return:
                    save_checkpoint(checkpoints / "best.pt",
                                    checkpoint_payload(config, previous, metrics["query/return"]))
                if state.iteration % config.checkpoint_interval == 0:
                    save_checkpoint(checkpoints / "last.pt",
                                    checkpoint_payload(config, state, rng=rng,
                                                       train_seconds=elapsed()))
                if config.video_interval and state.iteration % config.video_interval == 0:
                    record_training_video(run_dir, state, logger)
                if (0 < config.max_minutes * 60 <= elapsed()
                        and state.iteration < config.iterations):
                    logger.bar.write(f"stopped at iteration {state.iteration}: the time budget "
                                     f"of {config.max_minutes:g} minutes is spent")
                    break
        finally:  # also when interrupted: the finished iterations keep checkpoint and summary
            if state.iteration > 0:
                save_checkpoint(checkpoints / "last.pt",
                                checkpoint_payload(config, state, rng=rng,
                                                   train_seconds=elapsed()))
                summary = write_summary(run_dir, state, metrics, iteration_seconds,
                                        time.perf_counter() - started, elapsed())
    return summary
