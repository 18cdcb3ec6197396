"""Held-out evaluation of a meta-trained policy: return after 0, 1, ..., k gradient steps.

Protocol of the MAML paper (Finn et al. 2017, arXiv:1703.03400, Sec. 5.3 and its RL code):
held-out tasks drawn with a fixed seed; at each step the current (adapted) policy samples fresh
episodes per task, their mean return is the score of that step, and the same episodes drive the
next vanilla policy-gradient step (iMAML: the next proximal solve, as in training). Step sizes:
``inner_lr`` for the first step and ``inner_lr / 2`` afterwards (0.1 then 0.05 in the paper).
Benchmarks with a fixed test split (Meta-World) are evaluated on their test tasks, and
environments that report success also get the success rate after each step (an episode
succeeds if it met its goal on any step).

The policy and its adaptation run on the device of the parameters they are given; ``metarl
eval`` puts them on the run's ``device`` (``metarl.rl.device.evaluation_device``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from metarl.config import TrainConfig, load_config, resolve_threads
from metarl.core.adaptation import per_task
from metarl.core.confidence import ci95
from metarl.core.episodes import episode_returns, episode_success, mean_over_episodes
from metarl.core.linalg import Params, params_to
from metarl.envs import held_out_tasks, make_task_vector_env
from metarl.rl.advantages import advantages_batch
from metarl.rl.device import evaluation_device
from metarl.rl.learners import build_learner
from metarl.rl.policy import build_policy, load_params
from metarl.rl.step_budget import sample_batch
from metarl.run.atomic_write import write_json
from metarl.run.checkpoint import run_checkpoint
from metarl.run.live import running_pid

PLOTTED_TASKS = 4


def step_learning_rates(inner_lr: float, steps: int) -> list[float]:
    return [inner_lr if s == 0 else inner_lr / 2 for s in range(steps)]


def evaluate_adaptation(
    config: TrainConfig,
    params: Params,
    tasks: int = 40,
    steps: int = 3,
    episodes: int = 40,
    seed: int = 1000,
    progress: bool = False,
) -> dict[str, Any]:
    """Per-task mean return after each of ``0..steps`` adaptation steps.

    Returns ``returns`` (a ``[steps + 1, tasks]`` array), ``success`` (the same shape: each
    task's fraction of successful episodes; None for environments that report no success), the
    held-out ``tasks``, ``adapted`` (the per-task parameters, stacked on a leading task
    dimension, after each of 0..steps steps), the step sizes, and the observations of the first
    episode of the first few tasks at every step (``paths``), for plotting.
    """
    env = make_task_vector_env(config.env_id, tasks * episodes, config.physics,
                               action_space=config.action_space)
    policy = build_policy(config, env)
    held_out = held_out_tasks(config.env_id, env, tasks, seed, config.eval_task_set)
    generator = torch.Generator().manual_seed(seed)
    learner = build_learner(config, policy)
    adapted = per_task({k: v.detach() for k, v in params.items()}, tasks)
    returns, successes, paths, adapted_per_step = [], [], [], [adapted]
    rates = step_learning_rates(config.inner_lr, steps)
    for step in tqdm(range(steps + 1), desc="evaluate", disable=not progress, unit="step"):
        batch_episodes = sample_batch(env, policy, adapted, held_out, episodes, config.horizon,
                                      config.batch_unit, generator, seed + step)
        returns.append(mean_over_episodes(episode_returns(batch_episodes), batch_episodes)
                       .cpu().numpy())
        success = episode_success(batch_episodes)
        if success is not None:
            successes.append(mean_over_episodes(success, batch_episodes).cpu().numpy())
        shown = min(PLOTTED_TASKS, tasks)
        valid = batch_episodes.mask[:shown, :, 0] > 0
        paths.append([batch_episodes.observations[i, valid[i], 0].cpu().numpy()
                      for i in range(shown)])
        if step < steps:
            support = advantages_batch(batch_episodes, config)
            adapted = learner.adapt_at_test(adapted, support, rates[step])
            adapted_per_step.append(adapted)
    return {"returns": np.stack(returns), "tasks": held_out, "paths": paths, "rates": rates,
            "adapted": adapted_per_step, "policy": policy,
            "success": np.stack(successes) if successes else None}


def chosen_checkpoint(run_dir: Path,
                      checkpoint: str | None) -> tuple[TrainConfig, str, Path]:
    """The run's config, and the name and path of the checkpoint to evaluate: ``checkpoint``,
    or the run's ``eval_checkpoint`` for None (one-line errors for a folder that is no run)."""
    path = run_checkpoint(run_dir, checkpoint or "best")  # checks the folder before reading it
    config = load_config(run_dir / "config.yaml")
    if checkpoint is None:
        checkpoint = config.eval_checkpoint
        path = run_checkpoint(run_dir, checkpoint)
    return config, checkpoint, path


def other_than_own(config: TrainConfig, checkpoint: str | None, task_set: str | None) -> str:
    """The name part of an evaluation's files (``eval_last.json``) and of a comparison's folder
    (``compare_last_maml_paper``): ``_<checkpoint>`` and ``_<task set>`` for each that is not
    the run's own (None: the run's own), so that no result replaces another."""
    return ("" if checkpoint is None or checkpoint == config.eval_checkpoint
            else f"_{checkpoint}") + (
        "" if task_set is None or task_set == config.eval_task_set else f"_{task_set}")


def with_protocol(config: TrainConfig, batch_unit: str | None,
                  task_set: str | None) -> TrainConfig:
    """``config`` counting its batches in ``batch_unit`` and evaluating on ``task_set`` (None:
    as it does)."""
    if batch_unit is not None:
        config = dataclasses.replace(config, batch_unit=batch_unit)
    if task_set is not None:
        config = dataclasses.replace(config, eval_task_set=task_set)
    return config


def steps_per_task(config: TrainConfig, episodes: int) -> int | None:
    """A task's step budget per step when ``config`` counts in steps; None when in episodes."""
    return episodes * config.horizon if config.batch_unit == "steps" else None


def batch_label(episodes: int, steps: int | None) -> str:
    """How many episodes a task's batch holds: ``episodes``, or whole episodes to ``steps``."""
    return f"{episodes} episodes" if steps is None else f"whole episodes to {steps} steps"


def tasks_label(tasks: int, task_set: str | None) -> str:
    """How an evaluation's held-out tasks are named in its tables."""
    return (f"{tasks} of the MAML paper's test tasks" if task_set == "maml_paper"
            else f"{tasks} held-out tasks")


def summarize(returns: np.ndarray) -> tuple[list[float], list[float]]:
    """Mean over tasks of ``returns [steps, tasks]`` and each step's 95% CI half-width."""
    return returns.mean(axis=1).tolist(), [ci95(step) for step in returns]


def summarize_gain(returns: np.ndarray) -> tuple[list[float], list[float]]:
    """Mean gain over step 0 of ``returns [steps, tasks]`` and its paired 95% CI half-width.

    Every step is measured on the same held-out tasks, so the interval of the per-task
    differences is the test of whether adaptation helps: where tasks differ widely in how much
    return they allow (the Ant's goal velocities), each step's own interval is wide and two steps'
    intervals may overlap although every task gained."""
    return summarize(returns - returns[:1])


def evaluate_run(
    run_dir: str | Path,
    tasks: int | None = None,
    steps: int | None = None,
    episodes: int | None = None,
    seed: int = 1000,
    checkpoint: str | None = None,
    progress: bool = True,
    device: str | None = None,
    batch_unit: str | None = None,
    task_set: str | None = None,
    torch_threads: int | None = None,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint (default: its ``eval_checkpoint``); writes
    ``RUN_DIR/eval.json`` (and a PNG for navigation) on the run's own checkpoint and tasks, and
    adds the name of any other (``eval_last.json``, ``eval_maml_paper.json``), so one evaluation
    never replaces another. A run still training (``metarl.run.live``) gets
    ``eval_interim.json`` (``eval_last_interim``) instead: its checkpoints may still change, and
    the result must not look final.

    ``tasks``, ``steps`` and ``episodes`` default to the run's ``eval_*`` config fields;
    ``device`` to the run's own (the CPU, with a note, where that is cuda and there is none);
    ``batch_unit`` (how ``episodes`` are counted, ``TrainConfig.batch_unit``) and ``task_set``
    (the held-out tasks, ``TrainConfig.eval_task_set``) to the run's own, and ``torch_threads``
    to the run's ``torch_threads``.
    """
    run_dir = Path(run_dir)
    run_config, checkpoint, checkpoint_path = chosen_checkpoint(run_dir, checkpoint)
    config = with_protocol(run_config, batch_unit, task_set)
    tasks = config.eval_tasks if tasks is None else tasks
    steps = config.eval_steps if steps is None else steps
    episodes = config.eval_episodes if episodes is None else episodes
    for name, value, low in (("tasks", tasks, 1), ("steps", steps, 0), ("episodes", episodes, 1),
                             ("seed", seed, 0)):
        if value < low:
            raise ValueError(f"--{name} must be >= {low}, got {value}")
    params, payload = load_params(checkpoint_path, config)
    params = params_to(params, evaluation_device(config.device, device))
    torch.set_num_threads(resolve_threads(
        config.torch_threads if torch_threads is None else torch_threads))
    outcome = evaluate_adaptation(config, params, tasks, steps, episodes, seed, progress)
    mean, ci95 = summarize(outcome["returns"])
    gain, gain_ci95 = summarize_gain(outcome["returns"])
    result: dict[str, Any] = {
        "metric": "return",
        "steps": list(range(steps + 1)),
        "mean": mean,
        "ci95": ci95,
        "gain": gain,
        "gain_ci95": gain_ci95,
        "tasks": tasks,
        "episodes_per_task": episodes,
        "batch_unit": config.batch_unit,
        "steps_per_task": steps_per_task(config, episodes),
        "task_set": config.eval_task_set,
        "step_sizes": outcome["rates"],
        "seed": seed,
        "env_id": config.env_id,
        "checkpoint": checkpoint,
        "checkpoint_iteration": payload.get("iteration"),
        # the best checkpoint's training return was measured in the next iteration's rollouts
        "checkpoint_measured_at_iteration": payload.get("measured_at_iteration"),
        "per_task": outcome["returns"].T.tolist(),
    }
    live = running_pid(run_dir)
    if live is not None:
        result["interim"] = True
    if outcome["success"] is not None:
        success_mean, success_ci95 = summarize(outcome["success"])
        result["success_rate"] = {"mean": success_mean, "ci95": success_ci95,
                                  "per_task": outcome["success"].T.tolist()}
    suffix = other_than_own(run_config, checkpoint, config.eval_task_set) + (
        "_interim" if live else "")
    write_json(run_dir / f"eval{suffix}.json", result)
    print(format_table(result))
    print(f"results: {run_dir / f'eval{suffix}.json'}")
    if live is not None:
        print(f"note: {run_dir} is still training (process {live}); this result is interim "
              "(eval.json is written by an evaluation after the run ends)")
    if config.env_id.startswith("metarl/Navigation2D"):
        from metarl.run.plots import plot_navigation

        png = run_dir / f"eval{suffix}_trajectories.png"
        goals = [t.as_array("goal") for t in outcome["tasks"][:PLOTTED_TASKS]]
        plot_navigation(png, outcome["paths"], goals)
        print(f"trajectories: {png}")
    return result


def _checkpoint_label(result: dict[str, Any]) -> str:
    label = f"after {result['checkpoint_iteration']} updates"
    measured = result.get("checkpoint_measured_at_iteration")
    if measured is not None:
        label += f"; its training return is iteration {measured} of metrics.jsonl"
    return label


def format_table(result: dict[str, Any]) -> str:
    per_step = batch_label(result["episodes_per_task"], result.get("steps_per_task"))
    lines = [
        f"{result['env_id']}: {tasks_label(result['tasks'], result.get('task_set'))}, "
        f"{per_step} per step, "
        f"checkpoint {result['checkpoint']} "
        f"({_checkpoint_label(result)})",
        f"{'steps':>5}  {'return':>10}  {'95% CI':>8}"
        + (f"  {'gain':>10}  {'paired CI':>9}" if "gain" in result else "")
        + (f"  {'success':>8}  {'95% CI':>8}" if "success_rate" in result else ""),
    ]
    for i, (step, mean, ci) in enumerate(zip(result["steps"], result["mean"], result["ci95"])):
        line = f"{step:>5}  {mean:>10.2f}  {ci:>8.2f}"
        if "gain" in result:  # evaluations written before the gain was recorded lack it
            line += f"  {result['gain'][i]:>10.2f}  {result['gain_ci95'][i]:>9.2f}"
        if "success_rate" in result:
            rate = result["success_rate"]
            line += f"  {rate['mean'][i]:>8.3f}  {rate['ci95'][i]:>8.3f}"
        lines.append(line)
    return "\n".join(lines)
