"""Figures: 2D-navigation paths before and after adaptation (the MAML paper's Fig. 4 view) and
training curves of the returns before and after adaptation."""

from __future__ import annotations

from collections.abc import Sequence
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
