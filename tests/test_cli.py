"""The `metarl` command line: argument handling and one-line errors.

The trainer, evaluation and benchmark are replaced by recording fakes: these tests check only
what the command passes to them and how it reports bad input.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from metarl.cli import main, resolve_config_path, split_overrides
from metarl.config import TrainConfig, load_config

PRESET = Path(__file__).resolve().parent.parent / "experiments" / "navigation2d.yaml"


def _fake_module(
    monkeypatch: pytest.MonkeyPatch, name: str, function: str, result: object
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Install a module `name` whose `function` records its calls and returns `result`."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def record(*args: Any, **kwargs: Any) -> object:
        calls.append((args, kwargs))
        return result

    module = types.ModuleType(name)
    setattr(module, function, record)
    monkeypatch.setitem(sys.modules, name, module)
    return calls


@pytest.fixture
def fakes(
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]]:
    return {
        "train": _fake_module(monkeypatch, "metarl.rl.trainer", "train", {"iterations": 1}),
        "eval": _fake_module(monkeypatch, "metarl.rl.evaluation", "evaluate_run", {}),
        "bench": _fake_module(monkeypatch, "metarl.rl.bench", "run_bench", {"iteration_s": 0.5}),
    }


def _assert_one_error_line(capsys: pytest.CaptureFixture[str], needle: str) -> None:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("metarl: error: "), lines[0]
    assert needle in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_unknown_flag(capsys: pytest.CaptureFixture[str], fakes: dict[str, Any]) -> None:
    assert main(["train", "navigation2d", "--learning-rate", "0.1"]) == 2
    _assert_one_error_line(capsys, "--learning-rate")
    assert not fakes["train"]


def test_unknown_config_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fakes: dict[str, Any]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("iterations: 3\nfoo: 1\n")
    assert main(["train", str(config), "--run-dir", str(tmp_path / "run")]) == 1
    _assert_one_error_line(capsys, "unknown config field 'foo'")
    assert not fakes["train"]


def test_wrong_type(capsys: pytest.CaptureFixture[str], fakes: dict[str, Any]) -> None:
    assert main(["train", "navigation2d", "--meta-batch-size", "abc"]) == 1
    _assert_one_error_line(capsys, "meta_batch_size")


def test_negative_learning_rate(capsys: pytest.CaptureFixture[str], fakes: dict[str, Any]) -> None:
    assert main(["train", "navigation2d", "--inner-lr", "-0.1"]) == 1
    _assert_one_error_line(capsys, "inner_lr must be > 0")


def test_missing_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fakes: dict[str, Any]
) -> None:
    assert main(["train", str(tmp_path / "missing.yaml")]) == 1
    _assert_one_error_line(capsys, "missing.yaml")


def test_unknown_preset(capsys: pytest.CaptureFixture[str], fakes: dict[str, Any]) -> None:
    assert main(["bench", "no-such-preset"]) == 1
    _assert_one_error_line(capsys, "the presets are the YAML files in")


def test_corrupt_yaml_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fakes: dict[str, Any]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("iterations: [1, 2\nhorizon: : :\n")
    assert main(["train", str(config)]) == 1
    _assert_one_error_line(capsys, "invalid YAML")


def test_eval_of_missing_run_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fakes: dict[str, Any]
) -> None:
    assert main(["eval", str(tmp_path / "nope")]) == 1
    _assert_one_error_line(capsys, "does not exist")
    assert not fakes["eval"]


def test_train_leaves_non_empty_run_dir_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fakes: dict[str, Any]
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    kept = run_dir / "notes.txt"
    kept.write_text("precious\n")
    assert main(["train", "navigation2d", "--run-dir", str(run_dir)]) == 1
    _assert_one_error_line(capsys, "already exists and is not empty; choose another --run-dir")
    assert kept.read_text() == "precious\n"
    assert list(run_dir.iterdir()) == [kept]
    assert not fakes["train"]


@pytest.mark.parametrize(
    "argv",
    [
        ["fly"],
        ["train"],
        ["train", "navigation2d", "--iterations"],
        ["train", "navigation2d", "--seed", "1", "--seed", "2"],
        ["train", "navigation2d", "surplus"],
        ["eval", "runs/x", "--tasks", "0"],
        ["eval", "runs/x", "--checkpoint", "first"],
        ["eval", "runs/x", "--inner-lr", "0.1"],
        ["bench", "--repeats", "many"],
    ],
)
def test_usage_errors_are_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str], fakes: dict[str, Any]
) -> None:
    assert main(argv) == 2
    _assert_one_error_line(capsys, "")
    assert not any(fakes.values())


def test_help_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help"]) == 0
    assert "--run-dir" in capsys.readouterr().out


def test_train_passes_overrides_and_run_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fakes: dict[str, Any]
) -> None:
    run_dir = tmp_path / "run"
    argv = ["train", "--meta-batch-size", "10", "navigation2d_peers.yaml", "--run-dir",
            str(run_dir)]
    argv += ["--hidden-sizes", "[32,32]", "--first-order=true", "--outer_lr", "1e-4"]
    assert main([*argv, "--no-progress"]) == 0
    [(args, kwargs)] = fakes["train"]
    assert args == (
        TrainConfig(meta_batch_size=10, hidden_sizes=(32, 32), first_order=True, outer_lr=1e-4),
        run_dir,
    )
    assert kwargs == {"progress": False}
    out = capsys.readouterr().out
    assert f"tensorboard --logdir {run_dir}" in out


def test_train_default_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fakes: dict[str, Any]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    assert main(["train", str(PRESET)]) == 0
    [(args, kwargs)] = fakes["train"]
    run_dir = args[1]
    assert run_dir.parent == Path("runs")
    assert run_dir.name.startswith("navigation2d-")
    assert kwargs == {"progress": True}


def test_train_accepts_an_empty_existing_run_dir(tmp_path: Path, fakes: dict[str, Any]) -> None:
    assert main(["train", "navigation2d", "--run-dir", str(tmp_path)]) == 0
    assert fakes["train"][0][0][1] == tmp_path


def test_eval_passes_its_options(tmp_path: Path, fakes: dict[str, Any]) -> None:
    assert main(["eval", str(tmp_path), "--steps", "0", "--checkpoint", "last"]) == 0
    [(args, kwargs)] = fakes["eval"]
    assert args == (tmp_path,)
    assert kwargs == {
        "tasks": None,  # None: the run's eval_tasks
        "steps": 0,
        "episodes": None,
        "seed": 1000,
        "checkpoint": "last",
        "progress": True,
        "device": None,  # None: the run's device
        "batch_unit": None,  # None: the run's batch_unit
        "task_set": None,  # None: the run's eval_task_set
        "torch_threads": None,  # None: the run's torch_threads
    }
    assert main(["eval", str(tmp_path), "--device", "cpu", "--batch-unit", "steps",
                 "--task-set", "maml_paper", "--torch-threads", "1"]) == 0
    assert fakes["eval"][1][1]["torch_threads"] == 1
    assert fakes["eval"][1][1]["device"] == "cpu"
    assert fakes["eval"][1][1]["batch_unit"] == "steps"
    assert fakes["eval"][1][1]["task_set"] == "maml_paper"
    assert fakes["eval"][1][1]["checkpoint"] is None  # None: the run's eval_checkpoint


def test_a_misspelt_preset_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "navigaton2d", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "did you mean navigation2d or navigation2d_peers?" in err


def test_bench_prints_json(capsys: pytest.CaptureFixture[str], fakes: dict[str, Any]) -> None:
    assert main(["bench", "--iterations", "2", "--horizon", "20"]) == 0
    [(args, kwargs)] = fakes["bench"]
    assert args == (load_config(PRESET, {"horizon": "20"}),)  # the default preset's config
    assert kwargs == {"iterations": 2, "repeats": 3}
    assert json.loads(capsys.readouterr().out) == {"iteration_s": 0.5}


def test_interrupt_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    module = types.ModuleType("metarl.rl.bench")
    setattr(module, "run_bench", interrupted)  # noqa: B010 - a fake module has no declared attrs
    monkeypatch.setitem(sys.modules, "metarl.rl.bench", module)
    assert main(["bench"]) == 130
    _assert_one_error_line(capsys, "interrupted")


def test_resolve_config_path() -> None:
    assert resolve_config_path("navigation2d") == PRESET
    assert resolve_config_path("navigation2d.yaml") == PRESET
    assert resolve_config_path(str(PRESET)) == PRESET


def test_split_overrides() -> None:
    kept, overrides = split_overrides(
        ["--seed", "3", "cfg", "--run-dir", "out", "--init-log-std", "-0.5", "--gamma=0.9"],
        {"--run-dir", "--no-progress"},
    )
    assert kept == ["cfg", "--run-dir", "out"]
    assert overrides == {"seed": "3", "init_log_std": "-0.5", "gamma": "0.9"}


def test_bare_metarl_prints_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    for command in ("train", "eval", "compare", "search", "presets"):
        assert f"    {command} " in out


def test_presets_lists_every_preset_with_its_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets"]) == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()
            if line and not line.startswith("metarl ")}
    presets = Path(__file__).resolve().parents[1] / "experiments"
    assert set(rows) == {path.stem for path in presets.glob("*.yaml")}
    assert rows["navigation2d"] == "rl" and rows["sinusoid_maml"] == "few-shot"
    assert rows["autometa_smoke"] == "search"


def test_a_search_config_given_to_train_names_the_right_command(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "autometa_smoke"]) == 1
    assert capsys.readouterr().err.strip() == (
        "metarl: error: autometa_smoke.yaml is an architecture search config: run it with "
        "metarl search autometa_smoke")


def test_search_takes_field_overrides_and_run_dir(tmp_path: Path) -> None:
    out = tmp_path / "search"
    assert main(["search", "autometa_smoke", "--run-dir", str(out), "--max-blocks", "1",
                 "--no-progress"]) == 0
    assert "max_blocks: 1\n" in (out / "config.yaml").read_text()
    assert {json.loads(line)["round"] for line in (out / "results.jsonl").read_text().splitlines()
            } == {1}
    assert main(["search", "autometa_smoke", "--run-dir", str(out), "--max-blocks", "2",
                 "--no-progress"]) == 1  # another config in that folder: refused


def test_presets_prints_a_resolved_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets", "navigation2d", "--iterations", "7"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = load_config(resolve_config_path("navigation2d"), {"iterations": "7"}).to_dict()
    assert printed == expected and printed["iterations"] == 7
    assert main(["presets", "autometa_smoke", "--max-blocks", "1"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["max_blocks"] == 1


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    """`metarl presets | head -1`: the pipe closes before metarl writes; it exits quietly with
    the shell's code for a command cut off by a closed pipe (128 + SIGPIPE)."""
    process = subprocess.Popen([sys.executable, "-m", "metarl", "presets"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # long before the interpreter has imported metarl
    assert process.wait(timeout=120) == 141
    assert process.stderr.read() == b""


def test_compare_passes_the_task_set_and_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metarl.rl import compare

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(compare, "compare_run", lambda *args, **kwargs: calls.append(kwargs))
    assert main(["compare", str(tmp_path), "--baselines", "random", "--task-set",
                 "maml_paper", "--no-progress"]) == 0
    assert main(["compare", str(tmp_path), "--baselines", "random", "--checkpoint", "last",
                 "--torch-threads", "1", "--no-progress"]) == 0
    assert [call["task_set"] for call in calls] == ["maml_paper", None]
    assert [call["checkpoint"] for call in calls] == [None, "last"]
    assert [call["torch_threads"] for call in calls] == [None, 1]


def test_video_passes_the_thread_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from metarl.rl import video

    calls: list[dict[str, Any]] = []

    def record(*args: Any, **kwargs: Any) -> Path:
        calls.append(kwargs)
        return tmp_path / "video.mp4"

    monkeypatch.setattr(video, "record_video", record)
    assert main(["video", str(tmp_path), "--no-progress"]) == 0
    assert main(["video", str(tmp_path), "--torch-threads", "1", "--no-progress"]) == 0
    assert [call["torch_threads"] for call in calls] == [None, 1]

