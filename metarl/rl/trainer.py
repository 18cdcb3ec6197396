"""RL meta-training: ``metarl train`` with an RL preset, as a run of the shared loop.

The loop (``metarl.run.loop``) owns the stopping, resuming, logging and summary; this module
plugs in the RL run's state (``TrainState`` and the learner's random streams), its step (one
meta-iteration of ``MetaLearner``), its checkpoints and its videos.

``checkpoints/best.pt`` holds the meta-parameters whose adapted policies earned the best
training return (the MAML paper's evaluation checkpoint): those in force while that iteration
sampled, before its outer update. ``checkpoints/last.pt`` holds the latest ones with the
optimiser state and random streams; an interruption (Ctrl-C) saves it before stopping, and
``summary.json`` and ``curves.png`` as a finished run does. With ``resume`` the run continues
from ``last.pt`` and ends exactly where an uninterrupted run would (same parameters and
metrics, on the same machine and threads).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from metarl.config import (
    RESUMABLE_FIELDS,
    ConfigError,
    TrainConfig,
    load_config,
    resolve_threads,
    save_config,
)
from metarl.core.adam import AdamState
from metarl.core.linalg import Params
from metarl.envs.maml_paper_tasks import has_maml_paper_test_tasks
from metarl.rl.evaluation import evaluate_adaptation
from metarl.rl.meta_learner import MetaLearner
from metarl.rl.policy import LEGACY_POLICY_KIND, check_policy_kind, policy_kind
from metarl.rl.train_state import TrainState
from metarl.run.checkpoint import check_params, load_checkpoint, save_checkpoint
from metarl.run.logger import RunLogger
from metarl.run.loop import LoopSettings, run_loop
from metarl.run.plots import plot_training_curves
from metarl.run.resume import check_iteration, truncate_metrics
from metarl.run.resume import check_same_run as check_same_fields


def checkpoint_payload(
    config: TrainConfig, state: TrainState, query_return: float | None = None,
    rng: dict[str, Any] | None = None, train_seconds: float = 0.0,
    policy: str = LEGACY_POLICY_KIND,
) -> dict[str, Any]:
    """What a checkpoint holds; ``query_return`` is the training return ``state.params`` earned
    after adaptation, when it was measured. With the learner's ``rng`` streams it holds all a
    resumed run needs to continue exactly as if it had never stopped; ``train_seconds`` (all
    sessions' training time so far) lets a resumed run keep to its ``max_minutes``. ``policy``
    is the policy's kind (``metarl.rl.policy.policy_kind``), checked whenever it is loaded."""
    return {
        "params": state.params,
        "policy": policy,
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
    check_iteration(payload["iteration"], config.iterations)


def check_same_run(config: TrainConfig, saved: dict[str, Any]) -> None:
    """A one-line error if ``config`` differs from the run's ``saved`` config in a field that
    changes the maths or the random streams. A field that ``saved`` lacks (a run written before
    the field existed, such as ``action_space``) ran with that field's default."""
    check_same_fields(config.to_dict(), saved, TrainConfig().to_dict(), RESUMABLE_FIELDS)


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
    check_policy_kind(last, payload, policy_kind(learner.policy))
    check_params(last, payload["params"], learner.policy.initial_params())
    state = restore_state(payload).to(learner.device)  # saved on the CPU
    learner.set_rng_state(payload["rng"])
    truncate_metrics(run_dir / "metrics.jsonl", state.iteration)
    return state, float(payload.get("train_seconds", 0.0))


def record_training_video(run_dir: Path, state: TrainState, logger: RunLogger) -> None:
    """A video of the current meta-policy before and after one inner step, into ``videos/``
    and TensorBoard. Rendering problems (no OpenGL, say) warn instead of stopping training."""
    from metarl.rl.video import record_video

    try:
        record_video(run_dir, tasks=2, steps=1, params=state.params, tensorboard=logger.writer,
                     global_step=state.iteration,
                     out=run_dir / "videos" / f"iteration{state.iteration:05d}.mp4")
    except (OSError, ValueError) as err:
        warnings.warn(f"no video at iteration {state.iteration}: {err}", stacklevel=2)


def held_out_returns(config: TrainConfig, params: Params) -> dict[str, float]:
    """The evaluation of ``metarl eval`` on ``params`` (the run's eval_* sizes, seed 1000), as
    metrics: ``heldout/return_step<k>`` after k steps, and its seconds. The torch random state
    is restored after it, so a run with held-out evaluations samples exactly as one without."""
    began = time.perf_counter()
    with torch.random.fork_rng():
        outcome = evaluate_adaptation(config, params, config.eval_tasks, config.eval_steps,
                                      config.eval_episodes, seed=1000)
    means = outcome["returns"].mean(axis=1)
    metrics = {f"heldout/return_step{k}": float(m) for k, m in enumerate(means)}
    metrics["time/heldout_s"] = time.perf_counter() - began
    return metrics


class RLRun:
    """The RL run as the shared loop drives it."""

    def __init__(self, config: TrainConfig, run_dir: Path, learner: MetaLearner,
                 state: TrainState) -> None:
        self.config, self.run_dir, self.learner, self.state = config, run_dir, learner, state
        self.rng = learner.rng_state()  # the streams as of state.iteration, never mid-iteration
        self.last_metrics: dict[str, float] = {}
        self.policy_kind = policy_kind(learner.policy)

    @property
    def iteration(self) -> int:
        return self.state.iteration

    @property
    def iterations(self) -> int:
        return self.config.iterations

    def step(self, budget_spent: Callable[[], bool]) -> dict[str, float]:
        previous = self.state
        self.state, metrics = self.learner.iteration(previous)
        self.rng = self.learner.rng_state()
        self.last_metrics = metrics
        interval = self.config.eval_interval
        if interval and self.state.iteration % interval == 0:
            metrics.update(held_out_returns(self.config, self.state.params))
        if self.state.best_return > previous.best_return:
            payload = checkpoint_payload(self.config, previous, metrics["query/return"],
                                         policy=self.policy_kind)
            # the parameters after previous.iteration updates earned this return in the
            # rollouts of the next iteration, the row of metrics.jsonl that shows it
            payload["measured_at_iteration"] = self.state.iteration
            save_checkpoint(self.run_dir / "checkpoints" / "best.pt", payload)
        return metrics

    def after_log(self, logger: RunLogger) -> None:
        interval = self.config.video_interval
        if interval and self.state.iteration % interval == 0:
            record_training_video(self.run_dir, self.state, logger)

    def save_checkpoint(self, train_seconds: float) -> None:
        save_checkpoint(self.run_dir / "checkpoints" / "last.pt",
                        checkpoint_payload(self.config, self.state, rng=self.rng,
                                           train_seconds=train_seconds,
                                           policy=self.policy_kind))

    def summary(self) -> dict[str, Any]:
        return {
            "env_steps": self.state.env_steps,
            "best_query_return": self.state.best_return,
            "final_support_return": self.last_metrics.get("support/return"),
            "final_query_return": self.last_metrics.get("query/return"),
            "device": str(self.learner.device),
        }

    def plot(self, run_dir: Path) -> None:
        plot_training_curves(run_dir / "curves.png", run_dir / "metrics.jsonl")


def train(config: TrainConfig, run_dir: Path, progress: bool = True,
          resume: bool = False) -> dict[str, Any]:
    """Meta-train per ``config``, writing config, logs and checkpoints into ``run_dir`` (or
    continue it from ``last.pt`` with ``resume``); returns the summary also written to
    ``summary.json``. A ``max_minutes`` budget ends the run early, after the iteration that
    passes it."""
    torch.set_num_threads(resolve_threads(config.torch_threads))
    learner = MetaLearner(config)  # fails on a bad config or env id before the run dir is touched
    with learner:  # stops the Ray workers, if any, however the run ends
        # now, not at the first held-out evaluation hours later
        if config.eval_task_set == "maml_paper" and not has_maml_paper_test_tasks(config.env_id):
            raise ConfigError(f"eval_task_set: the MAML paper has no test tasks for "
                              f"{config.env_id}; train with --eval-task-set sampled")
        state, seconds_before = (resume_state(config, run_dir, learner) if resume
                                 else (learner.initial_state(), 0.0))
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
        settings = LoopSettings(config.max_minutes, config.log_interval,
                                config.checkpoint_interval, progress,
                                resume_hint=f"metarl train --resume {run_dir}")
        return run_loop(RLRun(config, run_dir, learner, state), run_dir, settings,
                        seconds_before)
