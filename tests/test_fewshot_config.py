"""FewShotConfig: validation with one-line errors, YAML loading, and the presets in experiments/."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from metarl.config import ConfigError
from metarl.fewshot.config import (
    FewShotConfig,
    is_fewshot_config,
    load_fewshot_config,
    save_fewshot_config,
)

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
PRESETS = sorted([*EXPERIMENTS.glob("sinusoid_*.yaml"), *EXPERIMENTS.glob("omniglot_*.yaml")])
OMNIGLOT = {"problem": "omniglot", "ways": 5, "shots": 1, "queries": 1, "eval_queries": 15}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"problem": "mnist"}, "problem must be one of 'sinusoid', 'omniglot', got 'mnist'"),
        ({"learner": "sgd"}, "learner must be one of 'maml', 'fomaml', 'reptile'"),
        ({"iterations": 0}, "iterations must be >= 1, got 0"),
        ({"iterations": 2.5}, "iterations must be an integer, got 2.5 (float)"),
        ({"iterations": True}, "iterations must be an integer, got True (bool)"),
        ({"meta_batch_size": -3}, "meta_batch_size must be >= 1, got -3"),
        ({"shots": 0}, "shots must be >= 1, got 0"),
        ({"queries": -1}, "queries must be >= 0, got -1"),
        ({"inner_lr": 0.0}, "inner_lr must be > 0, got 0.0"),
        ({"inner_lr": "fast"}, "inner_lr must be a number, got 'fast' (str)"),
        ({"outer_lr": -1e-3}, "outer_lr must be > 0, got -0.001"),
        ({"prox_lambda": 0}, "prox_lambda must be > 0, got 0.0"),
        ({"cg_damping": -1}, "cg_damping must be >= 0, got -1.0"),
        ({"outer": "trpo"}, "outer must be one of 'adam', 'sgd', got 'trpo'"),
        ({"outer_lr_schedule": "cosine"}, "outer_lr_schedule must be one of 'constant'"),
        ({"pool": "avg"}, "pool must be one of 'max', 'stride', got 'avg'"),
        ({"train_split": "test"}, "train_split must be one of 'train', 'train+val'"),
        ({"rotate": "yes"}, "rotate must be true or false, got 'yes' (str)"),
        ({"data_path": 3}, "data_path must be a string, got 3 (int)"),
        ({"eval_tasks": 0}, "eval_tasks must be >= 1, got 0"),
        ({"eval_steps": -1}, "eval_steps must be >= 0, got -1"),
        ({"val_interval": -1}, "val_interval must be >= 0, got -1"),
        ({"torch_threads": -2}, "torch_threads must be >= 0, got -2"),
        ({"learner": "protonet"}, "learner protonet classifies, problem sinusoid regresses"),
        ({"ways": 5}, "problem sinusoid has ways 1, not 5"),
        ({"train_ways": 7}, "train_ways 7 differs from ways 1, which only learner protonet"),
        ({"inner_optimizer": "adam"}, "inner_optimizer adam is Reptile's only"),
        ({"queries": 0}, "learner maml needs queries >= 1"),
        ({**OMNIGLOT, "learner": "pretrained"}, "learner pretrained is defined for problem "
                                                "sinusoid only"),
        ({**OMNIGLOT, "learner": "protonet", "eval_steps": 3}, "eval_steps must be 0"),
        ({**OMNIGLOT, "shots": 15, "queries": 6}, "training tasks need 21 drawings per class, "
                                                  "Omniglot has 20"),
        ({**OMNIGLOT, "learner": "reptile", "inner_steps": 5, "train_shots": 5},
         "training tasks need 25 drawings per class"),
        ({**OMNIGLOT, "shots": 5, "eval_queries": 16}, "shots + eval_queries = 21 exceeds"),
    ],
)
def test_bad_fields_give_one_line_naming_them(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        FewShotConfig.from_dict(changes)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_unknown_fields_and_non_mappings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown config field 'env_id'"):
        FewShotConfig.from_dict({"env_id": "metarl/Navigation2D-v0"})
    path = tmp_path / "c.yaml"
    path.write_text("- problem\n- sinusoid\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_fewshot_config(path)
    path.write_text("problem: [sinusoid\n")
    with pytest.raises(ConfigError, match=r"invalid YAML in .*c\.yaml:\d+:\d+"):
        load_fewshot_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_fewshot_config(tmp_path / "missing.yaml")


def test_overrides_are_parsed_as_yaml_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("problem: sinusoid\nlearner: reptile\n")
    config = load_fewshot_config(path, {"inner-steps": "5", "outer_lr": "1e-4"})
    assert (config.learner, config.inner_steps, config.outer_lr) == ("reptile", 5, 1e-4)
    assert config.training_shots_per_class == 50  # 5 steps of 10 fresh points each
    save_fewshot_config(config, tmp_path / "saved.yaml")
    assert load_fewshot_config(tmp_path / "saved.yaml") == config


def test_the_config_kind_is_told_by_the_problem_field(tmp_path: Path) -> None:
    assert is_fewshot_config(EXPERIMENTS / "sinusoid_maml.yaml")
    assert not is_fewshot_config(EXPERIMENTS / "navigation2d.yaml")
    assert not is_fewshot_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("problem: [\n")
    assert not is_fewshot_config(broken)  # the RL loader then reports the YAML error


def test_presets_exist_for_every_learner_and_setting() -> None:
    names = {path.stem for path in PRESETS}
    for learner in ("maml", "fomaml", "reptile", "imaml", "pretrained", "scratch"):
        assert f"sinusoid_{learner}" in names
    for setting in ("5w1s", "5w5s", "20w1s"):
        for learner in ("maml", "fomaml", "reptile", "imaml", "protonet"):
            assert f"omniglot_{setting}_{learner}" in names
    for learner in ("maml", "protonet"):
        assert f"omniglot_5w1s_{learner}_cpu" in names


@pytest.mark.parametrize("path", PRESETS, ids=[path.stem for path in PRESETS])
def test_every_preset_loads_and_writes_every_field_out(path: Path) -> None:
    config = load_fewshot_config(path)
    text = path.read_text()
    for field in dataclasses.fields(FewShotConfig):
        assert f"\n{field.name}:" in text, field.name
    problem, _, rest = path.stem.partition("_")
    assert config.problem == problem
    assert rest.split("_")[-2 if rest.endswith("_cpu") else -1] == config.learner
    if problem == "omniglot":
        ways, shots = rest.split("_")[0].split("w")
        assert (config.ways, config.shots) == (int(ways), int(shots.rstrip("s")))
        assert config.eval_tasks == 600 and config.data_path == ""
