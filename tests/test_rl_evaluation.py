"""The evaluation's statistics: per-step means and intervals, and the paired gain over step 0."""

from __future__ import annotations

import math

import numpy as np

from metarl.rl.evaluation import format_table, summarize, summarize_gain


def test_gain_is_the_paired_difference_with_its_own_interval() -> None:
    # three tasks of very different scale, each gaining 1, 2 and 3 after one step
    returns = np.array([[0.0, 100.0, -50.0], [1.0, 102.0, -47.0]], dtype=np.float64)
    gain, gain_ci = summarize_gain(returns)
    assert gain == [0.0, 2.0]
    # sample std of (1, 2, 3) is 1; half-width 1.96 / sqrt(3)
    assert math.isclose(gain_ci[1], 1.96 / math.sqrt(3), rel_tol=1e-12)
    assert gain_ci[0] == 0.0
    mean, ci = summarize(returns)
    # each step's own interval is wide (tasks differ by 150), so the steps' intervals overlap
    assert mean[1] - mean[0] == 2.0 and ci[0] > 50 and ci[1] > 50
    assert gain[1] - gain_ci[1] > 0  # while the paired interval excludes no gain


def test_table_shows_the_gain_and_reads_evaluations_without_it() -> None:
    returns = np.array([[0.0, 10.0], [4.0, 12.0]])
    mean, ci = summarize(returns)
    gain, gain_ci = summarize_gain(returns)
    result = {"env_id": "metarl/Navigation2D-v0", "tasks": 2, "episodes_per_task": 1,
              "checkpoint": "best", "checkpoint_iteration": 5, "steps": [0, 1],
              "mean": mean, "ci95": ci, "gain": gain, "gain_ci95": gain_ci}
    table = format_table(result)
    assert "paired CI" in table
    assert table.splitlines()[-1].split()[3] == "3.00"  # step 1's gain: (4 + 2) / 2
    older = {k: v for k, v in result.items() if k not in ("gain", "gain_ci95")}
    assert "paired CI" not in format_table(older)
