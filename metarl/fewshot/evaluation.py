"""Held-out evaluation of a supervised few-shot run: the query score after 0..k inner steps.

Protocol (Finn et al. 2017, arXiv:1703.03400, Sec. 5): tasks drawn
with a fixed seed (600 by default; Omniglot's from the 423 meta-test characters, rotations as
classes), each adapted from the meta-parameters on its support set and scored on its own
query examples after every step; the mean over tasks and its 95% interval per step.

Each learner adapts at test time the way it adapted in training: SGD steps of ``inner_lr``
(MAML, FOMAML and the pretrained and from-scratch baselines, through the shared
``metarl.core.adaptation.adapt_step``); iMAML's safeguarded proximal gradient steps toward theta
(``metarl.core.imaml.proximal_iterates``: a step that raises the proximal objective is undone
and its rate halved, so a rate that is stable in training cannot diverge at test); Reptile's inner
optimiser (SGD, or a fresh Adam per task). Prototypical Networks take no gradient steps: the
support set enters through the class prototypes, so a ProtoNets run reports one figure, its
nearest-prototype accuracy, at step 0 (``adaptation: "prototypes"`` in ``eval.json``), and
``--steps`` does not apply to it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor
from tqdm import tqdm

from metarl.config import ConfigError, resolve_threads
from metarl.core.adam import adam_init, adam_step
from metarl.core.adaptation import adapt_step, per_task, summed_over_tasks
from metarl.core.confidence import ci95
from metarl.core.imaml import proximal_iterates
from metarl.core.linalg import Params
from metarl.fewshot.config import FewShotConfig, load_fewshot_config
from metarl.fewshot.conv import Pool
from metarl.fewshot.learners import REPTILE_ADAM_BETAS
from metarl.fewshot.problem_factory import build_problem
from metarl.fewshot.problems import Problem, Role, task_generator
from metarl.fewshot.protonet import protonet_logits
from metarl.run.atomic_write import write_json
from metarl.run.checkpoint import load_checkpoint, run_checkpoint
from metarl.run.live import running_pid


def adaptation_kind(config: FewShotConfig) -> str:
    """How the learner adapts at test time, as named in ``eval.json``."""
    if config.learner == "protonet":
        return "prototypes"
    if config.learner == "imaml":
        return "proximal sgd"
    if config.learner == "reptile" and config.inner_optimizer == "adam":
        return "adam"
    return "sgd"


def adaptation_scores(config: FewShotConfig, problem: Problem, params: Params, role: Role,
                      tasks: int, steps: int, generator: torch.Generator,
                      progress: bool = False, final_only: bool = False) -> Tensor:
    """Per-task query scores ``[steps + 1, tasks]`` after 0..``steps`` inner steps (``[1,
    tasks]`` for ProtoNets) on ``tasks`` tasks of ``role`` drawn from ``generator``, a chunk
    of tasks at a time. With ``final_only`` only the score after ``steps`` steps is computed
    (``[1, tasks]``): scoring the queries costs more than a step on the support set."""
    theta = {k: v.detach() for k, v in params.items()}
    parts = []
    chunks = range(0, tasks, problem.eval_chunk)
    with torch.no_grad():  # torch.func.grad inside still differentiates; nothing keeps a graph
        for start in tqdm(chunks, desc="evaluate", unit="chunk", disable=not progress):
            batch = problem.sample(role, min(problem.eval_chunk, tasks - start), generator)
            parts.append(_chunk_scores(config, problem, theta, batch, steps, final_only))
    return torch.cat(parts, dim=1)


def _chunk_scores(config: FewShotConfig, problem: Problem, theta: Params, batch: Any,
                  steps: int, final_only: bool) -> Tensor:
    if config.learner == "protonet":
        logits = protonet_logits(theta, batch, config.ways, cast(Pool, config.pool))
        hits: Tensor = logits.argmax(-1) == batch.query_y
        return hits.float().mean(-1).unsqueeze(0)
    n = batch.support_y.shape[0]
    kind = adaptation_kind(config)
    if kind == "proximal sgd":  # iMAML's safeguarded descent on L + lambda/2 |phi - theta|^2
        iterates: Iterator[Params] = (
            solution.adapted for solution in proximal_iterates(
                problem.support_loss, theta, batch, config.prox_lambda, config.inner_lr, steps))
    else:
        iterates = _descent(config, problem, per_task(theta, n), batch, steps, kind)
    scores = []
    for step, adapted in enumerate(iterates):
        if step == steps or not final_only:
            scores.append(problem.score(adapted, batch))
    return torch.stack(scores)


def _descent(config: FewShotConfig, problem: Problem, start: Params, batch: Any, steps: int,
             kind: str) -> Iterator[Params]:
    """The parameters after 0..``steps`` SGD (MAML's) or Adam (Reptile's) inner steps."""
    adapted = start
    adam = adam_init(adapted) if kind == "adam" else None
    yield adapted
    for _ in range(steps):
        if kind == "sgd":
            adapted = adapt_step(problem.support_loss, adapted, batch, config.inner_lr)
        else:
            assert adam is not None
            grads = torch.func.grad(summed_over_tasks(problem.support_loss, batch))(adapted)
            adapted, adam = adam_step(adapted, grads, adam, config.inner_lr, REPTILE_ADAM_BETAS)
        yield adapted


def summarize(scores: Tensor) -> tuple[list[float], list[float]]:
    """Mean over tasks of ``scores [steps, tasks]`` and each step's 95% CI half-width."""
    return scores.mean(dim=1).tolist(), [ci95(step) for step in scores]


def evaluate_run(
    run_dir: str | Path,
    tasks: int | None = None,
    steps: int | None = None,
    seed: int = 1000,
    checkpoint: str = "best",
    progress: bool = True,
    data_path: str | None = None,
    torch_threads: int | None = None,
) -> dict[str, Any]:
    """Evaluate a supervised run's checkpoint on held-out test tasks; writes
    ``RUN_DIR/eval.json`` (``eval_last.json`` for the last checkpoint; ``_interim`` added while
    the run is still training) and prints a table. ``data_path`` replaces the folder the run
    read Omniglot from (recorded in its config), ``torch_threads`` its ``torch_threads``.

    ``tasks`` and ``steps`` default to the run's ``eval_tasks`` and ``eval_steps``; tasks come
    from a generator derived from ``seed``. ``mean`` and ``ci95`` hold the metric (query MSE,
    or query accuracy as a fraction) per step; ``per_task`` the scores ``[task][step]``.
    """
    run_dir = Path(run_dir)
    checkpoint_path = run_checkpoint(run_dir, checkpoint)
    config = load_fewshot_config(run_dir / "config.yaml")
    if data_path is not None:
        config = dataclasses.replace(config, data_path=data_path)
    if config.learner == "protonet" and steps not in (None, 0):
        raise ConfigError("--steps does not apply to learner protonet: it adapts through its "
                          "prototypes, with no gradient steps")
    tasks = config.eval_tasks if tasks is None else tasks
    steps = config.eval_steps if steps is None else steps
    if tasks < 1 or steps < 0 or seed < 0:
        raise ValueError(f"need --tasks >= 1, --steps >= 0, --seed >= 0; got {tasks}, {steps}, "
                         f"{seed}")
    payload = load_checkpoint(checkpoint_path)
    torch.set_num_threads(resolve_threads(
        config.torch_threads if torch_threads is None else torch_threads))
    problem = build_problem(config)
    scores = adaptation_scores(config, problem, payload["params"], "test", tasks, steps,
                               task_generator(seed, "test"), progress)
    mean, ci = summarize(scores)
    result: dict[str, Any] = {
        "metric": problem.metric,
        "steps": list(range(scores.shape[0])),
        "mean": mean,
        "ci95": ci,
        "tasks": tasks,
        "seed": seed,
        "problem": config.problem,
        "learner": config.learner,
        "ways": config.ways,
        "shots": config.shots,
        "queries_per_class": config.eval_queries,
        "adaptation": adaptation_kind(config),
        "inner_lr": None if config.learner == "protonet" else config.inner_lr,
        "checkpoint": checkpoint,
        "checkpoint_iteration": payload.get("iteration"),
        "per_task": scores.T.tolist(),
    }
    live = running_pid(run_dir)
    if live is not None:
        result["interim"] = True
    suffix = ("" if checkpoint == "best" else f"_{checkpoint}") + ("_interim" if live else "")
    path = run_dir / f"eval{suffix}.json"
    write_json(path, result)
    print(format_table(result))
    print(f"results: {path}")
    if live is not None:
        print(f"note: {run_dir} is still training (process {live}); this result is interim "
              "(eval.json is written by an evaluation after the run ends)")
    return result


def format_table(result: dict[str, Any]) -> str:
    """The per-step means and intervals; accuracies as percentages."""
    accuracy = result["metric"] == "accuracy"
    task = (f"{result['ways']}-way {result['shots']}-shot" if result["problem"] == "omniglot"
            else f"K = {result['shots']}")
    lines = [
        f"{result['problem']} {task}, {result['learner']}: {result['tasks']} held-out tasks, "
        f"adaptation {result['adaptation']}, checkpoint {result['checkpoint']} "
        f"(iteration {result['checkpoint_iteration']})",
        f"{'steps':>5}  {'accuracy %' if accuracy else 'mse':>10}  {'95% CI':>8}",
    ]
    scale = 100.0 if accuracy else 1.0
    for step, mean, ci in zip(result["steps"], result["mean"], result["ci95"]):
        lines.append(f"{step:>5}  {scale * mean:>10.3f}  {scale * ci:>8.3f}")
    return "\n".join(lines)
