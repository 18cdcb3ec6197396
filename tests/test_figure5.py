"""experiments/figure5.py end to end at a tiny size: train, compare, resume, figure and table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--iterations", "2", "--meta-batch-size", "2", "--episodes-per-task", "2",
        "--horizon", "10", "--torch-threads", "1"]


def figure5() -> ModuleType:
    spec = importlib.util.spec_from_file_location("figure5", ROOT / "experiments" / "figure5.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_figure5_trains_compares_and_draws(tmp_path: Path) -> None:
    script = figure5()
    out = tmp_path / "fig"
    script.main(["--out", str(out), "--benchmarks", "navigation2d", "--baselines", "random",
                 "--tasks", "3", "--episodes", "2", *TINY])
    result = json.loads((out / "figure5.json").read_text())
    entry = result["navigation2d"]
    assert set(entry["methods"]) == {"MAML-TRPO", "random"}
    assert entry["iterations"] == entry["iterations_asked"] == 2
    assert len(entry["methods"]["MAML-TRPO"]["mean"]) == 4
    table = (out / "figure5.md").read_text()
    assert "| MAML-TRPO |" in table and "-40.4 / -11.7 / -3.33 / -3.23" in table
    assert "| MAML-TRPO - random |" in table  # the paired differences, from compare.json
    assert "MAML-TRPO minus the paper's MAML on the same 3 tasks" in table  # its test tasks
    assert "MAML-TRPO: the run's last checkpoint, after 2 iterations." in table  # the preset's
    assert (out / "figure5.png").stat().st_size > 5000
    # a second call reuses the finished run: --report-only needs no training either
    before = (out / "navigation2d" / "checkpoints" / "last.pt").stat().st_mtime_ns
    script.main(["--out", str(out), "--benchmarks", "navigation2d", "--report-only"])
    assert (out / "navigation2d" / "checkpoints" / "last.pt").stat().st_mtime_ns == before


def test_figure5_resumes_a_run_stopped_by_its_budget(tmp_path: Path) -> None:
    script = figure5()
    out = tmp_path / "fig"
    args = ["--out", str(out), "--benchmarks", "navigation2d", "--baselines", "random",
            "--tasks", "2", "--episodes", "2", *TINY]
    script.main([*args, "--max-minutes", "1e-9"])  # stops after its first iteration
    assert "stopped at 1 of 2 iterations" in (out / "figure5.md").read_text()
    script.main(args)
    assert json.loads((out / "figure5.json").read_text())["navigation2d"]["iterations"] == 2


def test_figure5_rejects_an_unknown_benchmark(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stop:
        figure5().main(["--out", str(tmp_path), "--benchmarks", "navigation3d"])
    assert "navigation3d" in str(stop.value)


def test_the_paired_comparison_with_the_paper_subtracts_task_by_task() -> None:
    script = figure5()
    paper = json.loads(script.PAPER_PER_TASK.read_text())["MAML"]["navigation2d"]
    shifted = [[paper[step][task] + 1.0 + 0.5 * step for step in range(4)] for task in range(40)]
    row = {"per_task": shifted, "task_set": "maml_paper"}
    line = script.paired_with_the_paper("navigation2d", {"MAML-TRPO": row})[-1]
    assert line.endswith("1.00 (0.00) / 1.50 (0.00) / 2.00 (0.00) / 2.50 (0.00).")
    assert "the same 40 tasks" in line
    # other tasks than the paper's have nothing to pair with
    assert script.paired_with_the_paper("navigation2d",
                                        {"MAML-TRPO": {**row, "task_set": "sampled"}}) == []
