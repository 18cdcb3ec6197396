"""TrainConfig validation, YAML loading with overrides, and the round trips."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from metarl.config import (
    ConfigError,
    TrainConfig,
    load_config,
    parse_value,
    resolve_threads,
    save_config,
)

PRESET = Path(__file__).resolve().parent.parent / "experiments" / "navigation2d_peers.yaml"


def test_defaults_are_the_maml_navigation_settings() -> None:
    config = TrainConfig()
    assert config.meta_batch_size == 20
    assert config.episodes_per_task == 20
    assert config.horizon == 100
    assert config.hidden_sizes == (64, 64)
    assert config.inner_lr == 0.1
    assert config.max_kl == 0.01
    assert config.iterations == 500


def test_preset_spells_out_the_defaults() -> None:
    assert load_config(PRESET) == TrainConfig()
    # Every field is written out explicitly, none left to the defaults.
    text = PRESET.read_text()
    for field in dataclasses.fields(TrainConfig):
        assert f"\n{field.name}:" in text, field.name


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("env_id", ""),
        ("iterations", 0),
        ("meta_batch_size", 0),
        ("episodes_per_task", -1),
        ("horizon", 0),
        ("hidden_sizes", (64, 0)),
        ("activation", "sigmoid"),
        ("init_log_std", float("nan")),
        ("inner_lr", 0.0),
        ("inner_lr", float("nan")),
        ("inner_steps", 0),
        ("outer_lr", -1e-3),
        ("max_kl", 0.0),
        ("cg_iters", 0),
        ("imaml_cg_iters", 0),
        ("cg_damping", -1e-5),
        ("ls_backtrack", 0.0),
        ("ls_backtrack", 1.0),
        ("ls_max_steps", 0),
        ("fvp_fraction", 0.0),
        ("fvp_fraction", 1.5),
        ("gamma", 1.01),
        ("gamma", -0.1),
        ("gae_lambda", 2.0),
        ("baseline_ridge", 0.0),
        ("max_minutes", -1.0),
        ("max_minutes", float("inf")),
        ("seed", -1),
        ("torch_threads", -1),
        ("log_interval", 0),
        ("checkpoint_interval", 0),
        ("eval_tasks", 0),
        ("eval_steps", -1),
        ("eval_episodes", 0),
    ],
)
def test_out_of_range_values_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{field} must be ") as info:
        TrainConfig.from_dict({field: value})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("iterations", 10.0),
        ("iterations", "10"),
        ("iterations", True),
        ("seed", None),
        ("inner_lr", True),
        ("inner_lr", "0.1"),
        ("first_order", 1),
        ("first_order", "true"),
        ("normalize_advantages", None),
        ("activation", 1),
        ("env_id", None),
        ("hidden_sizes", 64),
        ("hidden_sizes", "64,64"),
        ("hidden_sizes", [64.0, 64]),
        ("hidden_sizes", [True]),
    ],
)
def test_wrong_types_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{field} must be "):
        TrainConfig.from_dict({field: value})


def test_numbers_and_lists_are_normalised() -> None:
    config = TrainConfig.from_dict({"inner_lr": 1, "gamma": 1, "hidden_sizes": [32, 16, 8]})
    assert config.inner_lr == 1.0 and isinstance(config.inner_lr, float)
    assert isinstance(config.gamma, float)
    assert config.hidden_sizes == (32, 16, 8)
    assert TrainConfig(hidden_sizes=()).hidden_sizes == ()


def test_unknown_field_is_rejected_on_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^unknown config field 'foo'; known: env_id, ") as info:
        TrainConfig.from_dict({"foo": 1})
    assert "\n" not in str(info.value)


def test_a_misspelt_field_gets_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"^unknown config field 'hiden_sizes'; did you mean "
                                          r"'hidden_sizes'\?$"):
        TrainConfig.from_dict({"hiden_sizes": [8]})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10", 10),
        ("-3", -3),
        ("0.5", 0.5),
        ("1e-3", 1e-3),
        ("1E3", 1e3),
        ("-2.5e-4", -2.5e-4),
        ("true", True),
        ("false", False),
        ("[32, 32]", [32, 32]),
        ("[]", []),
        ("relu", "relu"),
    ],
)
def test_parse_value(text: str, expected: object) -> None:
    value = parse_value(text)
    assert value == expected
    assert type(value) is type(expected)


def test_parse_value_reports_bad_yaml_on_one_line() -> None:
    with pytest.raises(ConfigError, match="cannot read value") as info:
        parse_value("[32,")
    assert "\n" not in str(info.value)


def test_overrides_are_applied(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("iterations: 7\nouter_lr: 1e-2\n")
    config = load_config(
        path,
        {
            "meta_batch_size": "4",
            "outer-lr": "1e-3",
            "first_order": "true",
            "hidden_sizes": "[32, 32]",
            "gamma": "0.9",
        },
    )
    assert config.iterations == 7
    assert config.meta_batch_size == 4
    assert config.outer_lr == pytest.approx(1e-3)
    assert config.first_order is True
    assert config.hidden_sizes == (32, 32)
    assert config.gamma == pytest.approx(0.9)


def test_exponent_floats_in_files_are_numbers(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("cg_damping: 1e-4\nbaseline_ridge: 2E-6\n")
    config = load_config(path)
    assert config.cg_damping == pytest.approx(1e-4)
    assert config.baseline_ridge == pytest.approx(2e-6)


def test_bad_override_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("")
    with pytest.raises(ConfigError, match="^meta_batch_size must be an integer, got 'abc'"):
        load_config(path, {"meta_batch_size": "abc"})
    with pytest.raises(ConfigError, match="^unknown config field 'bogus'"):
        load_config(path, {"bogus": "1"})


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("# nothing set\n")
    assert load_config(path) == TrainConfig()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("iterations: [1, 2\n", "invalid YAML in"),
        ("- 1\n- 2\n", "must hold a mapping"),
        ("just text\n", "must hold a mapping"),
        ("1: 2\n", "field names must be strings"),
        ("iterations: 1.5\n", "iterations must be an integer"),
    ],
)
def test_bad_files_are_rejected_on_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert "\n" not in str(info.value)


def test_missing_file_and_folder_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is not a file"):
        load_config(tmp_path)


def test_dict_round_trip() -> None:
    config = TrainConfig(hidden_sizes=(8,), first_order=True, outer="adam", outer_lr=3e-4)
    data = config.to_dict()
    assert data["hidden_sizes"] == [8]
    assert list(data) == [field.name for field in dataclasses.fields(TrainConfig)]
    assert TrainConfig.from_dict(data) == config


def test_yaml_round_trip(tmp_path: Path) -> None:
    config = TrainConfig(hidden_sizes=(32, 16), cg_damping=1e-7, gamma=0.95, seed=12)
    path = tmp_path / "run" / "config.yaml"
    save_config(config, path)
    assert load_config(path) == config


def test_resolve_threads() -> None:
    assert resolve_threads(3) == 3
    assert resolve_threads(0) >= 1
    with pytest.raises(ValueError, match="torch_threads"):
        resolve_threads(-1)


def test_busy_cores_from_cpu_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    import metarl.config as config_module

    snapshots = iter([
        ([100, 0, 0, 900, 0, 0, 0], 2),  # user, nice, system, idle, iowait, ...
        ([150, 0, 20, 930, 0, 0, 0], 2),  # 70 busy ticks out of 100 on 2 CPUs
    ])
    monkeypatch.setattr(config_module, "_cpu_times", lambda: next(snapshots))
    monkeypatch.setattr("metarl.config.time.sleep", lambda _: None)
    assert config_module._busy_cores() == pytest.approx(1.4)
    snapshots = iter([([0, 0, 0, 0, 0], 2), ([10, 0, 0, 90, 0], 2)])
    monkeypatch.setattr(config_module, "_cpu_times", lambda: next(snapshots))
    monkeypatch.setattr("metarl.config.os.sched_getaffinity", lambda _: {0, 1}, raising=False)
    monkeypatch.setattr(config_module, "_cgroup_cpu_quota", lambda: None)
    assert resolve_threads(0) == 2  # 0.2 busy cores round to 0: both cores are free


def test_first_order_meta_gradient_follows_the_flag_and_the_learner() -> None:
    assert TrainConfig(learner="fomaml").first_order_meta_gradient
    assert TrainConfig(first_order=True).first_order_meta_gradient
    assert not TrainConfig().first_order_meta_gradient
