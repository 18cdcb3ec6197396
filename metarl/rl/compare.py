"""`metarl compare`: a meta-trained run against the MAML paper's baselines, one protocol for all.

Finn et al. 2017 (arXiv:1703.03400, Sec. 5.3, Fig. 5) judge MAML-RL against three references,
each evaluated here exactly like the run itself (``evaluate_adaptation``: the same held-out tasks
and sampling seeds, the same inner loop and step sizes, 0..k vanilla policy-gradient steps):

- ``pretrained``: one policy trained jointly on tasks of the distribution with the run's own
  outer optimiser and sample budget (``learner: pretrained``), then fine-tuned;
- ``random``: the run's initial parameters (a random initialisation), fine-tuned;
- ``oracle``: a policy that sees the task parameters in its observation (stable-baselines3 PPO,
  ``metarl.rl.oracle``); it does not adapt, so it is one dashed line. For the discrete families
  (bandits, tabular MDPs) it is instead each held-out task's known optimal expected return.

The baselines are trained once into ``RUN_DIR/baselines/`` and reused (an interrupted pretrained
run resumes), so comparing again, or with more tasks, costs only the evaluations.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.config import RESUMABLE_FIELDS, TrainConfig, load_config, resolve_threads
from metarl.core.linalg import Params, params_to
from metarl.rl.device import evaluation_device
from metarl.rl.evaluation import (
    batch_label,
    chosen_checkpoint,
    evaluate_adaptation,
    other_than_own,
    steps_per_task,
    summarize,
    tasks_label,
    with_protocol,
)
from metarl.rl.policy import initial_params, load_params
from metarl.rl.trainer import train
from metarl.run.atomic_write import write_json, write_text
from metarl.run.plots import plot_returns_vs_steps

BASELINES = ("pretrained", "random", "oracle")


def parse_baselines(text: str) -> list[str]:
    """``"pretrained,oracle"`` -> the names, each checked against ``BASELINES``."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline {unknown[0]!r} (known: {', '.join(BASELINES)})")
    return names


def pretrained_config(config: TrainConfig, iterations: int | None) -> TrainConfig:
    """The run's config turned into the pretrained baseline's: same tasks, sizes and outer step
    (TRPO where the run used ProMP, whose inner KL penalty needs adaptation)."""
    return dataclasses.replace(
        config,
        learner="pretrained",
        outer="trpo" if config.outer == "promp" else config.outer,
        estimator="maml",
        first_order=False,
        iterations=config.iterations if iterations is None else iterations,
        video_interval=0,
    )


def pretrained_params(config: TrainConfig, run_dir: Path, iterations: int | None,
                      progress: bool) -> tuple[Params, dict[str, Any]]:
    """Train (or reuse, or resume) the pretrained baseline in ``run_dir``; its best checkpoint,
    chosen like the run's own by training return, and what the comparison records of it."""
    baseline = pretrained_config(config, iterations)
    finished = (run_dir / "summary.json").is_file()
    last = run_dir / "checkpoints" / "last.pt"
    if not finished:
        print(f"training the pretrained baseline into {run_dir}")
        train(baseline, run_dir, progress=progress, resume=last.is_file())
    else:
        saved = load_config(run_dir / "config.yaml").to_dict()
        # what changes no result (a budget in minutes, logging, evaluation sizes) may differ;
        # the iteration budget may not
        ignored = RESUMABLE_FIELDS - {"iterations"}
        changed = [k for k, v in baseline.to_dict().items()
                   if k not in ignored and saved.get(k) != v]
        if changed:
            shown = ", ".join(f"{k} {saved.get(k)!r} (asked: {getattr(baseline, k)!r})"
                              for k in changed)
            hint = (f"pass --pretrained-iterations {saved['iterations']} to reuse it, or "
                    if changed == ["iterations"] else "")
            raise ValueError(f"{run_dir} holds a pretrained baseline trained with {shown}; "
                             f"{hint}remove that folder to retrain")
    params, payload = load_params(run_dir / "checkpoints" / "best.pt", baseline)
    return params, {"iterations": baseline.iterations, "checkpoint": str(run_dir),
                    "checkpoint_iteration": payload.get("iteration")}


def compare_run(
    run_dir: str | Path,
    baselines: list[str],
    out: str | Path | None = None,
    tasks: int | None = None,
    steps: int | None = None,
    episodes: int | None = None,
    seed: int = 1000,
    pretrained_iterations: int | None = None,
    oracle_timesteps: int | None = None,
    progress: bool = True,
    baseline_inner_lr: float | None = None,
    device: str | None = None,
    batch_unit: str | None = None,
    task_set: str | None = None,
    checkpoint: str | None = None,
    torch_threads: int | None = None,
) -> dict[str, Any]:
    """Evaluate the run's checkpoint (``checkpoint``, default its ``eval_checkpoint``) and
    ``baselines`` on the same held-out tasks; write
    ``compare.json`` (``{method: {"steps", "mean", "ci95", the protocol, the checkpoint and the
    budget it was trained with}}``), ``compare.md`` and ``compare.png`` into ``out`` (default
    ``comparison_dir``). Methods of an earlier comparison in ``out`` on the same protocol
    (tasks, episodes, steps, seed) are kept; another protocol there is refused.
    ``baseline_inner_lr`` is the pretrained and random baselines' first step size (later
    steps take half), as the MAML paper fine-tuned its pretrained HalfCheetah policies with
    0.02 then 0.01 where MAML took 0.1 then 0.05; by default they take the run's.
    ``device`` is where every method is evaluated and the pretrained baseline trains:
    by default the run's own (the CPU, with a note, where that is cuda and there is none).
    ``batch_unit`` is how the evaluation counts ``episodes`` (``TrainConfig.batch_unit``;
    default: the run's own); the pretrained baseline trains as the run did. ``task_set`` is the
    held-out tasks (``TrainConfig.eval_task_set``; default: the run's own). ``torch_threads``
    replaces the run's ``torch_threads`` for the evaluations and the baselines' training."""
    run_dir = Path(run_dir)
    config, checkpoint, checkpoint_path = chosen_checkpoint(run_dir, checkpoint)
    if config.learner == "pretrained":
        raise ValueError(f"{run_dir} is itself a pretrained baseline; compare a meta-trained run")
    out = comparison_dir(run_dir, config, task_set, checkpoint) if out is None else Path(out)
    if baseline_inner_lr is not None and not baseline_inner_lr > 0:
        raise ValueError(f"--baseline-inner-lr must be > 0, got {baseline_inner_lr}")
    tasks = config.eval_tasks if tasks is None else tasks
    steps = config.eval_steps if steps is None else steps
    episodes = config.eval_episodes if episodes is None else episodes
    if "oracle" in baselines:
        from metarl.rl.oracle import check_oracle_available

        check_oracle_available(config)  # before hours of other work, not after
    if torch_threads is not None:
        config = dataclasses.replace(config, torch_threads=torch_threads)
    torch.set_num_threads(resolve_threads(config.torch_threads))
    where = evaluation_device(config.device, device)
    config = dataclasses.replace(config, device=where.type)  # the pretrained baseline's too

    # how the evaluation counts its batches and which tasks it holds out
    counted = with_protocol(config, batch_unit, task_set)

    def evaluated(params: Params, inner_lr: float | None = None) -> dict[str, Any]:
        """Adapted with ``inner_lr`` (then half of it) for the baselines that set their own;
        the run's step sizes otherwise."""
        rates = counted if inner_lr is None else dataclasses.replace(counted, inner_lr=inner_lr)
        outcome = evaluate_adaptation(rates, params_to(params, where), tasks, steps, episodes,
                                      seed, progress)
        mean, ci95 = summarize(outcome["returns"])
        return {"steps": list(range(steps + 1)), "mean": mean, "ci95": ci95,
                "step_sizes": outcome["rates"], "per_task": outcome["returns"].T.tolist()}

    protocol = {"env_id": config.env_id, "tasks": tasks, "episodes_per_task": episodes,
                "batch_unit": counted.batch_unit, "task_set": counted.eval_task_set,
                "last_step": steps, "seed": seed}
    previous = _previous_results(out / "compare.json", protocol)
    run_name = method_name(config)
    _check_same_checkpoint(previous.get(run_name), checkpoint, out)
    params, payload = load_params(checkpoint_path, config)
    results = {run_name: {**evaluated(params), **protocol, "checkpoint": str(run_dir),
                          "checkpoint_name": checkpoint,
                          "checkpoint_iteration": payload.get("iteration")}}
    for name in baselines:
        if name == "pretrained":
            params, record = pretrained_params(config, run_dir / "baselines" / "pretrained",
                                               pretrained_iterations, progress)
            results["pretrained"] = {**evaluated(params, baseline_inner_lr), **protocol,
                                     **record}
        elif name == "random":
            results["random"] = {**evaluated(initial_params(config), baseline_inner_lr),
                                 **protocol,
                                 "checkpoint": "the run's seeded initialisation"}
        else:
            from metarl.rl.oracle import evaluate_oracle, known_optimal_returns, train_oracle

            returns = known_optimal_returns(counted, tasks, seed)
            budget: int | None = None
            source = "the known optimum of each task"
            if returns is None:
                model, budget = train_oracle(config, run_dir / "baselines" / "oracle",
                                             oracle_timesteps, progress)
                returns = evaluate_oracle(counted, model, tasks, episodes, seed)
                source = str(run_dir / "baselines" / "oracle")
            results["oracle"] = {"steps": list(range(steps + 1)),
                                 "mean": [float(returns.mean())] * (steps + 1),
                                 "ci95": [summarize(returns[None])[1][0]] * (steps + 1),
                                 **protocol, "timesteps": budget, "checkpoint": source}
    # a comparison adds to the one already there (same protocol), never shrinks it; the run
    # stays first, the method every other is measured against
    results = {run_name: results[run_name],
               **{k: v for k, v in previous.items() if k not in results}, **results}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "compare.json", results)
    table = format_markdown(results, config.env_id, tasks_label(tasks, counted.eval_task_set),
                            batch_label(episodes, steps_per_task(counted, episodes)))
    write_text(out / "compare.md", table)
    plot_returns_vs_steps(out / "compare.png", results, dashed=("oracle",),
                          title=f"{config.env_id}: {tasks_label(tasks, counted.eval_task_set)}")
    print(table)
    print(f"results: {out / 'compare.json'}, plot: {out / 'compare.png'}")
    return results


def comparison_dir(run_dir: Path, config: TrainConfig, task_set: str | None,
                   checkpoint: str | None = None) -> Path:
    """Where ``metarl compare`` writes by default: ``RUN_DIR/compare`` for the run's own
    checkpoint (``eval_checkpoint``) on its own held-out tasks; another checkpoint or task set
    adds its name (``compare_last``, ``compare_maml_paper``, ``compare_last_maml_paper``), as
    ``metarl eval`` names its files, so that no comparison replaces or refuses another's."""
    return run_dir / f"compare{other_than_own(config, checkpoint, task_set)}"


# What a comparison written before a protocol key existed did: it counted episodes, on tasks
# drawn with its seed.
UNRECORDED_PROTOCOL = {"batch_unit": "episodes", "task_set": "sampled"}


def _previous_results(path: Path, protocol: dict[str, Any]) -> dict[str, Any]:
    """The methods an earlier comparison in the same folder evaluated on the same protocol; a
    one-line error if it used another protocol (its results would not stand beside these)."""
    if not path.is_file():
        return {}
    previous: dict[str, Any] = json.loads(path.read_text())
    for row in previous.values():
        for key, value in UNRECORDED_PROTOCOL.items():  # written before the key existed
            row.setdefault(key, value)
        if any(k not in row for k in protocol):
            raise ValueError(f"{path.parent} holds a comparison whose settings were not "
                             "recorded (an older metarl); choose another --out or remove it")
        differs = sorted(k for k, v in protocol.items() if row[k] != v)
        if differs:
            shown = ", ".join(f"{k} {row.get(k)!r} (now {protocol[k]!r})" for k in differs)
            raise ValueError(f"{path.parent} holds a comparison with {shown}; choose another "
                             "--out or evaluate with the same settings")
    return previous


def _check_same_checkpoint(previous_row: dict[str, Any] | None, checkpoint: str,
                           out: Path) -> None:
    """A one-line error rather than replacing a finished evaluation of the run's other
    checkpoint in the same folder (rows written before the name was recorded are replaced)."""
    earlier = (previous_row or {}).get("checkpoint_name")
    if earlier is not None and earlier != checkpoint:
        raise ValueError(f"{out} holds this run's comparison at its {earlier} checkpoint; "
                         f"compare the {checkpoint} checkpoint into another --out, or leave "
                         "--out out for its own folder")


def method_name(config: TrainConfig) -> str:
    """The run's label: learner, estimator where not the default, outer step."""
    estimator = "" if config.estimator == "maml" else f" ({config.estimator.upper()})"
    return f"{config.learner.upper()}-{config.outer.upper()}{estimator}"


def format_markdown(results: dict[str, Any], env_id: str, held_out: str, counted: str) -> str:
    """``held_out``: the tasks (``metarl.rl.evaluation.tasks_label``); ``counted``: what each
    task's batch holds (``metarl.rl.evaluation.batch_label``)."""
    steps = next(iter(results.values()))["steps"]
    lines = [f"{env_id}: mean return over {held_out} ({counted} per task "
             "and step), 95% CI in brackets", "",
             "| method | " + " | ".join(f"step {s}" for s in steps) + " |",
             "|" + " --- |" * (len(steps) + 1)]
    for name, row in results.items():
        cells = [f"{m:.2f} ({c:.2f})" for m, c in zip(row["mean"], row["ci95"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    rates = [f"{name} {', '.join(f'{r:g}' for r in row['step_sizes'])}"
             for name, row in results.items() if row.get("step_sizes")]
    if rates:
        lines += ["", "Step sizes of steps 1, 2, ...: " + "; ".join(rates) + "."]
    return "\n".join(lines + paired_differences(results)) + "\n"


def paired_differences(results: dict[str, Any]) -> list[str]:
    """Markdown lines: the first method (the meta-trained run) minus each other method evaluated
    on the same tasks, per step, with the 95% interval of the per-task differences. Every method
    meets the same held-out tasks, so this interval is far narrower than the methods' own where
    tasks allow very different returns; methods recorded without per-task returns (an older
    comparison, the oracle) are left out."""
    (name, row), *others = results.items()
    if "per_task" not in row:
        return []
    ours = np.asarray(row["per_task"], dtype=np.float64)  # [tasks, steps]
    lines = []
    for other, other_row in others:
        if "per_task" not in other_row:
            continue
        mean, ci95 = summarize((ours - np.asarray(other_row["per_task"])).T)
        cells = [f"{m:.2f} ({c:.2f})" for m, c in zip(mean, ci95)]
        lines.append(f"| {name} - {other} | " + " | ".join(cells) + " |")
    if not lines:
        return []
    steps = row["steps"]
    return ["", "Differences on the same tasks, 95% CI of the per-task differences in brackets:",
            "", "| difference | " + " | ".join(f"step {s}" for s in steps) + " |",
            "|" + " --- |" * (len(steps) + 1), *lines]
