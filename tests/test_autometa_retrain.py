"""A cell found by `metarl search` retrains and evaluates through `metarl train` (`cell:`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metarl.autometa.config import SearchConfig, load_search_config
from metarl.autometa.retrain import conv4_parameters, matching_conv4_filters, retrain_configs
from metarl.cli import main
from metarl.config import ConfigError
from metarl.fewshot.cell_network import Layout, initial_params
from metarl.fewshot.cell_space import parse_cell
from metarl.fewshot.config import FewShotConfig, load_fewshot_config
from metarl.fewshot.omniglot import write_synthetic_omniglot
from metarl.run.checkpoint import load_checkpoint

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


def test_conv4_parameter_count_by_hand() -> None:
    # block 1: 9f weights + f bias + 2f norm; blocks 2-4: 9f^2 + 3f each; head f * ways + ways
    for filters in (1, 12, 64):
        expected = 12 * filters + 3 * (9 * filters**2 + 3 * filters) + 5 * filters + 5
        assert conv4_parameters(5, filters) == expected
    assert conv4_parameters(5, 12) == 4205
    assert matching_conv4_filters(5, 4205) == 12
    assert matching_conv4_filters(5, 4205 + 300) == 12  # 13 filters: 4872
    assert matching_conv4_filters(5, 4700) == 13


def test_search_writes_presets_that_metarl_train_runs(tmp_path: Path) -> None:
    # the smoke search with the layout `metarl train` builds cell networks with (3 stages)
    preset = tmp_path / "smoke.yaml"
    preset.write_text(Path("experiments/autometa_smoke.yaml").read_text()
                      .replace("stages: 2", "stages: 3"))
    out = tmp_path / "search"
    assert main(["search", str(preset), "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["retrain_presets"] == [str(out / "retrain_cell.yaml"),
                                          str(out / "retrain_conv4.yaml")]
    search = load_search_config(out / "config.yaml")
    cell = load_fewshot_config(out / "retrain_cell.yaml")
    conv4 = load_fewshot_config(out / "retrain_conv4.yaml")
    assert cell.cell == summary["best_cell"] and conv4.cell == ""
    for config in (cell, conv4):
        assert config.learner == "reptile" and config.iterations == search.retrain_iterations
        assert config.inner_steps == search.inner_steps and config.outer_lr == search.outer_lr
        assert config.eval_tasks == 600
    assert conv4.filters == matching_conv4_filters(search.ways, summary["best_parameters"])
    # The cell preset builds the very network the search scored.
    write_synthetic_omniglot(tmp_path / "data" / "omniglot", characters=80)
    run = tmp_path / "run"
    assert main(["train", str(out / "retrain_cell.yaml"), "--data-path", str(tmp_path / "data"),
                 "--run-dir", str(run), "--iterations", "1", "--val-interval", "1",
                 "--val-tasks", "3", "--torch-threads", "1", "--no-progress"]) == 0
    params = load_checkpoint(run / "checkpoints" / "last.pt")["params"]
    assert sum(v.numel() for v in params.values()) == summary["best_parameters"]


def test_no_cell_preset_for_a_layout_metarl_train_cannot_build() -> None:
    config = SearchConfig(stages=2)
    configs = retrain_configs(config, CELL, 5000)
    assert sorted(configs) == ["conv4"]
    assert sorted(retrain_configs(SearchConfig(), CELL, 5000)) == ["cell", "conv4"]
