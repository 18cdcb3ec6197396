import json

import pytest

from metarl.autometa.config import SearchConfig, load_search_config
from metarl.autometa.search import Scored, planned_candidates, run_search
from metarl.config import ConfigError
from metarl.fewshot.cell_space import OPERATORS, Cell

WEIGHT = {"sep3": 0.05, "sep5": 0.04, "max3": 0.01, "avg3": 0.02, "id": 0.0}


def fake_score(cell: Cell) -> float:
    """A deterministic score: separable convolutions help, reading block outputs helps more."""
    return 0.2 + sum(WEIGHT[b.op1] + WEIGHT[b.op2] + 0.01 * (b.input1 + b.input2) for b in cell)


class FakeTrainer:
    def __init__(self, fail_after: int | None = None):
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, cell: Cell) -> Scored:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # the search is killed before this candidate finishes
        self.calls += 1
        return Scored(fake_score(cell), 0.01, 100 * len(cell), 1.0, 1.0)


CONFIG = SearchConfig(max_blocks=3, first_round=12, beam=3, top_k=6, surrogate_members=2,
                      surrogate_epochs=100, synthetic_characters=60)


def strip_time(records):
    return [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in records]


def test_search_rounds_and_outputs(tmp_path):
    trainer = FakeTrainer()
    summary = run_search(CONFIG, tmp_path, trainer, progress=False)
    records = json.loads((tmp_path / "results.json").read_text())
    assert trainer.calls == len(records) == planned_candidates(CONFIG) == 12 + 2 * 6
    assert [r["round"] for r in records] == [1] * 12 + [2] * 6 + [3] * 6
    assert all(r["prediction"] is None for r in records[:12])
    assert all(isinstance(r["prediction"], float) for r in records[12:])
    assert [r["blocks"] for r in records[12:]] == [2] * 6 + [3] * 6
    rounds = json.loads((tmp_path / "rounds.json").read_text())
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert all(-1 <= r["spearman"] <= 1 for r in rounds[1:])
    # expansions of the 3 best round-1 cells: 3 x 120 children, all distinct
    assert rounds[1]["expansions"] == 360
    best = max(records, key=lambda r: r["score"])
    assert summary["best_cell"] == best["cell"] == (tmp_path / "best_cell.txt").read_text().strip()
    csv_lines = (tmp_path / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("round,cell,blocks,parameters,score") and len(csv_lines) == 25
    # the surrogate beats chance on this learnable score
    assert rounds[1]["spearman"] > 0 or rounds[2]["spearman"] > 0


def test_killed_search_resumes_to_the_same_results(tmp_path):
    reference = tmp_path / "whole"
    run_search(CONFIG, reference, FakeTrainer(), progress=False)
    expected = strip_time(json.loads((reference / "results.json").read_text()))
    broken = tmp_path / "broken"
    for fail_after in (5, 9):  # killed in round 1, then again in round 2
        with pytest.raises(KeyboardInterrupt):
            run_search(CONFIG, broken, FakeTrainer(fail_after), progress=False)
    kept = [json.loads(line) for line in (broken / "results.jsonl").read_text().splitlines()]
    assert len(kept) == 14  # 5 + 9 candidates finished, each kept once
    (broken / "results.jsonl.tmp").write_text('{"round": 1, "cel')  # a write cut by kill -9
    resumed = FakeTrainer()
    run_search(CONFIG, broken, resumed, progress=False)
    assert resumed.calls == len(expected) - 14  # nothing finished is trained again
    assert strip_time(json.loads((broken / "results.json").read_text())) == expected
    # a different config refuses the folder
    with pytest.raises(ConfigError, match="another config"):
        run_search(SearchConfig(max_blocks=2, synthetic_characters=60), broken, FakeTrainer(),
                   progress=False)


@pytest.mark.parametrize("field, value, message", [
    ("operators", ["sep3", "conv7"], "operators must be distinct names"),
    ("operators", [], "operators must be distinct names"),
    ("operators", "sep3", "operators must be a list"),
    ("max_blocks", 0, "max_blocks must be >= 1"),
    ("first_round", 1, "first_round must be 0"),
    ("top_k", 1.5, "top_k must be an integer"),
    ("synthetic_characters", 10, "synthetic_characters must be 0"),
    ("inner_optimizer", "rmsprop", "inner_optimizer"),
    ("colour", "red", "unknown config field 'colour'"),
])
def test_bad_configs_fail_with_one_line(field, value, message):
    with pytest.raises(ConfigError, match=message) as error:
        SearchConfig.from_dict({field: value})
    assert "\n" not in str(error.value)


def test_config_round_trips_through_yaml(tmp_path):
    from metarl.autometa.config import save_search_config

    config = SearchConfig(operators=("sep3", "id"), top_k=3)
    save_search_config(config, tmp_path / "c.yaml")
    assert load_search_config(tmp_path / "c.yaml") == config
    assert config.operators == ("sep3", "id") and OPERATORS[0] == "sep3"


def test_cli_smoke_search_end_to_end(tmp_path, capsys):
    from metarl.cli import main

    out = tmp_path / "search"
    assert main(["search", "experiments/autometa_smoke.yaml", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    records = json.loads((out / "results.json").read_text())
    assert len(records) == 6 and "best cell:" in printed and "round 2: surrogate" in printed
    for name in ("results.csv", "rounds.json", "best_cell.txt", "summary.json", "config.yaml"):
        assert (out / name).is_file()
    # a second call resumes: nothing left to train, same table
    assert main(["search", "experiments/autometa_smoke.yaml", "--out", str(out),
                 "--no-progress"]) == 0
    assert json.loads((out / "results.json").read_text()) == records
    bad = tmp_path / "bad.yaml"
    bad.write_text("top_k: 0\n")
    assert main(["search", str(bad), "--out", str(tmp_path / "x"), "--no-progress"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("metarl: error: top_k must be >= 1") and error.count("\n") == 1


def test_real_reptile_trainer_on_synthetic_characters():
    from metarl.autometa.config import load_search_config
    from metarl.autometa.search import load_data, reptile_trainer
    from metarl.fewshot.cell_space import parse_cell

    config = load_search_config("experiments/autometa_smoke.yaml")
    cell = parse_cell("0:sep3+1:id")
    scored = reptile_trainer(config, load_data(config))(cell)
    # stem 9*4 + 2*4, two cells of one sep3 (9*4 + 4*4 + 2*4), head 4*5 + 5
    assert scored.parameters == 44 + 2 * 60 + 25
    assert 0 <= scored.score <= 1 and scored.score * 40 == pytest.approx(round(scored.score * 40))


def test_presets_load():
    cpu = load_search_config("experiments/autometa_cpu.yaml")
    assert planned_candidates(cpu) == 16 + 2 * 8 and cpu.synthetic_characters == 0
    smoke = load_search_config("experiments/autometa_smoke.yaml")
    assert planned_candidates(smoke) == 4 + 2 and smoke.synthetic_characters > 0
