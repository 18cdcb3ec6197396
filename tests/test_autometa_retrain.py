"""A cell found by `metarl search` retrains and evaluates through `metarl train` (`cell:`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metarl.autometa.network import Layout, initial_params
from metarl.autometa.space import parse_cell
from metarl.checkpoint import load_checkpoint
from metarl.cli import main
from metarl.config import ConfigError
from metarl.fewshot.config import FewShotConfig
from metarl.fewshot.omniglot import write_synthetic_omniglot

CELL = "0:sep3+1:max3"
TINY = ["--iterations", "2", "--meta-batch-size", "2", "--filters", "4", "--val-interval", "2",
        "--val-tasks", "3", "--eval-tasks", "4", "--eval-steps", "2", "--log-interval", "1",
        "--checkpoint-interval", "1", "--torch-threads", "1", "--no-progress"]


def test_a_cell_network_trains_with_reptile_and_evaluates(tmp_path: Path) -> None:
    write_synthetic_omniglot(tmp_path / "data" / "omniglot", characters=80)
    run = tmp_path / "run"
    assert main(["train", "omniglot_5w1s_reptile", "--cell", CELL, "--data-path",
                 str(tmp_path / "data"), "--run-dir", str(run), *TINY]) == 0
    params = load_checkpoint(run / "checkpoints" / "last.pt")["params"]
    expected = initial_params(parse_cell(CELL), 5, Layout(4), 0)
    assert sorted(params) == sorted(expected)  # the cell network's, not the 4-block one's
    assert all(params[k].shape == v.shape for k, v in expected.items())
    assert main(["eval", str(run), "--no-progress"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["metric"] == "accuracy" and result["steps"] == [0, 1, 2]
    assert all(0.0 <= m <= 1.0 for m in result["mean"])


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"problem": "omniglot", "learner": "reptile", "queries": 0, "cell": "0:sep3"},
         "must be 'in1:op1+in2:op2'"),
        ({"problem": "omniglot", "learner": "protonet", "eval_steps": 0, "cell": CELL},
         "a cell network needs problem omniglot and a gradient-based learner"),
        ({"problem": "sinusoid", "ways": 1, "cell": CELL}, "a cell network needs"),
    ],
)
def test_bad_cells_are_refused_on_one_line(fields: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match="invalid combination") as error:
        FewShotConfig.from_dict(fields)
    assert needle in str(error.value) and "\n" not in str(error.value)
