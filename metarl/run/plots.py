"""Figures: 2D-navigation paths before and after adaptation (the MAML paper's Fig. 4 view),
return against gradient steps per method (its Fig. 5 view), training curves of the returns
before and after adaptation, few-shot training curves (loss and validation score), and an
architecture search's candidates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def plot_training_curves(path: Path, metrics_jsonl: Path, window: int = 10) -> None:
    """Pre- and post-adaptation training return per iteration (faint) and their moving average
    over ``window`` iterations, from a run's ``metrics.jsonl``."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_jsonl.read_text().splitlines() if line]
    rows = [row for row in rows if "query/return" in row]  # skipped batches have no returns
    if not rows:
        return
    iterations = np.array([row["iteration"] for row in rows])
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label, color in (("support/return", "before adaptation", "tab:blue"),
                              ("query/return", "after 1 step (adapted)", "tab:orange")):
        values = np.array([row[key] for row in rows])
        ax.plot(iterations, values, color=color, alpha=0.25, linewidth=0.8)
        width = min(window, len(values))
        smooth = np.convolve(values, np.ones(width) / width, mode="valid")
        ax.plot(iterations[width - 1:], smooth, color=color, label=label, linewidth=2)
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("mean episode return (training tasks)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_navigation(path: Path, paths: Sequence[Sequence[np.ndarray]],
                    goals: Sequence[np.ndarray]) -> None:
    """``paths[step][task]`` is a ``[T, 2]`` array of positions; one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = len(goals)
    fig, axes = plt.subplots(1, tasks, figsize=(3.2 * tasks, 3.4), squeeze=False)
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(paths)))
    for task, ax in enumerate(axes[0]):
        ax.plot(0, 0, "ko", markersize=4)
        for step, step_paths in enumerate(paths):
            xy = np.vstack([np.zeros((1, 2)), step_paths[task]])
            label = "pre-update" if step == 0 else f"{step} grad step{'s' * (step > 1)}"
            ax.plot(xy[:, 0], xy[:, 1], "-", color=colors[step], label=label, linewidth=1.5)
        ax.plot(*goals[task], "r*", markersize=14, label="goal")
        ax.set_xlim(-0.6, 0.6)
        ax.set_ylim(-0.6, 0.6)
        ax.set_aspect("equal")
        ax.set_title(f"task {task}")
    axes[0][0].legend(loc="lower left", fontsize=7)
    fig.suptitle("2D navigation: first episode per task after k adaptation steps")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_returns_vs_steps(path: Path, results: Mapping[str, Mapping[str, Sequence[float]]],
                          dashed: Sequence[str] = (), title: str = "",
                          ylabel: str = "average return") -> None:
    """The MAML paper's Fig. 5 view: return against gradient steps, one line per method with
    its 95% CI as a band; the methods in ``dashed`` (an oracle) as dashed lines.

    ``results[method]`` holds ``steps``, ``mean`` and a CI half-width under ``ci95`` (or
    ``ci95_over_seeds``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, row in results.items():
        steps = np.asarray(row["steps"])
        mean = np.asarray(row["mean"])
        ci = np.asarray(row["ci95"] if "ci95" in row else row["ci95_over_seeds"])
        style = "--" if name in dashed else "-o"
        (line,) = ax.plot(steps, mean, style, label=name, linewidth=1.8, markersize=4)
        ax.fill_between(steps, mean - ci, mean + ci, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("number of gradient steps")
    ax.set_ylabel(ylabel)
    ax.set_xticks(np.asarray(next(iter(results.values()))["steps"]))
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_fewshot_curves(path: Path, runs: Mapping[str, Path], metric: str) -> None:
    """Few-shot training curves, one line per run (``runs[label]`` is its ``metrics.jsonl``):
    the training loss as a moving average over 1 % of the logged iterations, and the validation
    ``metric`` ("mse" or "accuracy", shown in %) with its 95% CI as a band."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, val_ax) = plt.subplots(1, 2, figsize=(10, 4))
    scale = 100.0 if metric == "accuracy" else 1.0
    plotted = False
    for label, metrics_jsonl in runs.items():
        text = metrics_jsonl.read_text() if metrics_jsonl.exists() else ""
        rows = [json.loads(line) for line in text.splitlines() if line]
        trained = [row for row in rows if "train/loss" in row]
        if not trained:  # a run that trains nothing (scratch) has no curves
            continue
        plotted = True
        iterations = np.array([row["iteration"] for row in trained])
        loss = np.array([row["train/loss"] for row in trained])
        width = max(1, len(loss) // 100)
        smooth = np.convolve(loss, np.ones(width) / width, mode="valid")
        (line,) = loss_ax.plot(iterations[width - 1:], smooth, label=label, linewidth=1.5)
        validated = [row for row in rows if f"val/{metric}" in row]
        if validated:
            at = np.array([row["iteration"] for row in validated])
            score = scale * np.array([row[f"val/{metric}"] for row in validated])
            ci = scale * np.array([row.get(f"val/{metric}_ci95", 0.0) for row in validated])
            val_ax.plot(at, score, "-o", color=line.get_color(), label=label, markersize=3)
            val_ax.fill_between(at, score - ci, score + ci, color=line.get_color(), alpha=0.2)
    if not plotted:
        plt.close(fig)
        return
    loss_ax.set_yscale("log")
    loss_ax.set_ylabel("training loss (moving average)")
    val_ax.set_ylabel("validation accuracy %" if metric == "accuracy" else "validation MSE")
    if not val_ax.lines:  # every run had val_interval 0
        val_ax.text(0.5, 0.5, "no validation (val_interval: 0)", ha="center", va="center",
                    transform=val_ax.transAxes)
    for ax in (loss_ax, val_ax):
        ax.set_xlabel("meta-iteration")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_search(path: Path, records: Sequence[Mapping[str, float]]) -> None:
    """An architecture search at a glance: every candidate's validation accuracy with its 95%
    CI, in training order and coloured by round, and the best score so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        return
    fig, ax = plt.subplots(figsize=(8, 4))
    order = np.arange(1, len(records) + 1)
    score = 100 * np.array([r["score"] for r in records])
    ci = 100 * np.array([r["ci95"] for r in records])
    rounds = np.array([r["round"] for r in records])
    for round_ in sorted(set(rounds.tolist())):
        mine = rounds == round_
        ax.errorbar(order[mine], score[mine], yerr=ci[mine], fmt="o", markersize=4,
                    capsize=2, label=f"round {round_} ({round_} block{'s' * (round_ > 1)})")
    ax.plot(order, np.maximum.accumulate(score), color="black", linewidth=1, label="best so far")
    ax.set_xlabel("candidate (training order)")
    ax.set_ylabel("validation accuracy %")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
