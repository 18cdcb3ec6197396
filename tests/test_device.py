"""The `device` field: how it resolves, its one-line errors and notes, checkpoints that move
between machines, and the tensors of a training iteration living on the run's device.

The CPU tests run everywhere. They make the GPU path's wiring testable without a GPU by running
the maths with torch's default device set to "meta" while the run's device is the CPU: a tensor
created without an explicit device then lands on "meta" and the iteration fails or leaves it
there. That is the bug that breaks a CUDA run (a tensor made on the default device, the CPU,
meeting parameters on the GPU). The tests marked ``cuda`` run the real thing and skip where
torch finds no CUDA device (tests/conftest.py).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import Tensor

from metarl.cli import main
from metarl.config import ConfigError, TrainConfig
from metarl.core.episodes import StepBatch
from metarl.core.maml import MetaBatch
from metarl.rl import device as device_module
from metarl.rl.device import evaluation_device, resolve_device
from metarl.rl.evaluation import evaluate_adaptation, evaluate_run
from metarl.rl.meta_learner import MetaLearner
from metarl.rl.trainer import train
from metarl.run.checkpoint import load_checkpoint

NAVIGATION = "metarl/Navigation2D-v0"


def tiny(**fields: Any) -> TrainConfig:
    base: dict[str, Any] = dict(env_id=NAVIGATION, meta_batch_size=3, episodes_per_task=2,
                                horizon=6, hidden_sizes=(8,), iterations=1, torch_threads=1,
                                log_interval=1, checkpoint_interval=1, eval_tasks=2,
                                eval_steps=1, eval_episodes=2)
    return TrainConfig(**{**base, **fields})


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine, as the code sees it, has no CUDA device (whatever it has)."""
    monkeypatch.setattr(device_module, "cuda_available", lambda: False)


def tensors(value: Any) -> Iterator[Tensor]:
    """Every tensor in nested tuples (batches, named tuples), lists and dicts."""
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors(item)


def devices(value: Any) -> set[str]:
    """The kinds of device the tensors in ``value`` are on ("cuda" for any GPU index)."""
    return {t.device.type for t in tensors(value)}


# --- resolving the field ---------------------------------------------------------------------


def test_the_default_is_the_cpu() -> None:
    assert TrainConfig().device == "cpu"
    assert resolve_device(TrainConfig().device) == torch.device("cpu")


def test_auto_takes_cuda_only_where_torch_finds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == torch.device(expected)  # this machine, as it is
    monkeypatch.setattr(device_module, "cuda_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(device_module, "cuda_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_an_unknown_device_is_refused_by_the_config() -> None:
    with pytest.raises(ConfigError, match="device must be one of 'cpu', 'cuda', 'auto', got 'tpu'"):
        TrainConfig(device="tpu")


def test_cuda_without_cuda_is_a_one_line_config_error(no_cuda: None) -> None:
    with pytest.raises(ConfigError) as error:
        resolve_device("cuda")
    message = str(error.value)
    assert "\n" not in message
    assert "device 'cuda' asked for" in message and "finds no CUDA device" in message
    assert "--device cpu" in message and "--device auto" in message


def test_training_on_cuda_without_cuda_stops_in_one_line_before_the_run_dir(
        tmp_path: Path, no_cuda: None, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    code = main(["train", "navigation2d", "--device", "cuda", "--torch-threads", "1",
                 "--run-dir", str(run), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("metarl: error: device 'cuda' asked for")
    assert "use --device cpu" in err
    assert not run.exists()


def test_reading_a_cuda_run_without_cuda_falls_back_to_the_cpu_with_a_note(
        no_cuda: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluation_device("cuda") == torch.device("cpu")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("note: the run trained on cuda")
    assert evaluation_device("cuda", asked="cpu") == torch.device("cpu")
    assert evaluation_device("cpu") == torch.device("cpu")
    assert capsys.readouterr().err == ""  # asked for, or nothing to fall back from: no note
    with pytest.raises(ConfigError, match="device 'cuda' asked for"):
        evaluation_device("cpu", asked="cuda")  # asked for on the command line: an error


def test_device_may_change_when_a_run_resumes() -> None:
    from metarl.config import RESUMABLE_FIELDS

    assert "device" in RESUMABLE_FIELDS


# --- the tensors of a training iteration -----------------------------------------------------

COMBINATIONS = [
    dict(),  # MAML-TRPO
    dict(estimator="dice", fvp_fraction=0.5, fvp_task_fraction=0.5),
    dict(learner="fomaml", outer="adam"),
    dict(outer="promp", estimator="lvc"),
    dict(learner="imaml", outer="adam", inner_steps=2),
    dict(learner="reptile", outer="sgd", inner_steps=2),
    dict(learner="pretrained"),
    dict(env_id="metarl/Bandit-v0", horizon=4),  # a categorical policy
]


def _combination_id(fields: dict[str, Any]) -> str:
    return "-".join(f"{k}={v}" for k, v in fields.items()) or "maml-trpo"


@pytest.mark.parametrize("fields", COMBINATIONS, ids=_combination_id)
def test_an_iteration_keeps_every_tensor_on_the_resolved_device(fields: dict[str, Any]) -> None:
    """One iteration through the device-resolving code path ("auto": the CPU here, CUDA on a
    GPU machine) while every tensor made without an explicit device would land on "meta"."""
    config = tiny(device="auto", **fields)
    with MetaLearner(config) as learner:
        device = learner.device.type
        assert learner.device == resolve_device("auto")
        state = learner.initial_state()
        assert devices(state) == {device}
        with torch.device("meta"):
            batch, _ = learner.sample(state.params)
            updated, metrics = learner.update(state, batch)
            after, _ = learner.iteration(updated)
    assert isinstance(batch, MetaBatch)
    assert devices(batch) == {device}, "a batch tensor is off the run's device"
    for support in batch.supports:
        assert isinstance(support, StepBatch)
    assert devices(updated) == {device} and devices(after) == {device}
    assert all(v.requires_grad is False for v in after.params.values())
    assert all(isinstance(v, float) for v in metrics.values())
    for name in after.params:  # real numbers, not meta tensors' shapes alone
        assert bool(torch.isfinite(after.params[name]).all())


def test_evaluation_keeps_its_tensors_on_the_parameters_device() -> None:
    """The generator-driven rollouts and test-time adaptation of `metarl eval`."""
    for fields in (dict(), dict(learner="imaml", outer="adam")):
        config = tiny(**fields)
        with MetaLearner(config) as learner:
            params = learner.initial_state().params
        with torch.device("meta"):
            outcome = evaluate_adaptation(config, params, tasks=2, steps=1, episodes=2)
        assert outcome["returns"].shape == (2, 2)
        assert devices(outcome["adapted"]) == {"cpu"}


# --- checkpoints -----------------------------------------------------------------------------


def _trained(tmp_path: Path, config: TrainConfig) -> Path:
    run = tmp_path / "run"
    train(config, run, progress=False)
    return run


def test_a_checkpoint_round_trip_keeps_cpu_tensors(tmp_path: Path) -> None:
    run = _trained(tmp_path, tiny(device="auto", outer="adam"))
    for name in ("last", "best"):
        payload = load_checkpoint(run / "checkpoints" / f"{name}.pt")
        assert devices(payload) == {"cpu"}, name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["device"] == str(resolve_device("auto"))


def test_a_run_trained_on_cuda_is_evaluated_on_a_machine_without_it(
        tmp_path: Path, no_cuda: None, capsys: pytest.CaptureFixture[str]) -> None:
    """The run's config says cuda (as if it trained on a GPU; its checkpoints hold CPU tensors
    either way): eval falls back to the CPU with one line of note, and --device cuda is an
    error."""
    run = _trained(tmp_path, tiny())
    config_path = run / "config.yaml"
    config_path.write_text(yaml.safe_dump({**yaml.safe_load(config_path.read_text()),
                                           "device": "cuda"}, sort_keys=False))
    capsys.readouterr()
    assert main(["eval", str(run), "--no-progress"]) == 0
    about_cuda = [line for line in capsys.readouterr().err.splitlines() if "cuda" in line]
    assert len(about_cuda) == 1 and about_cuda[0].startswith("note: the run trained on cuda")
    assert main(["eval", str(run), "--device", "cuda", "--no-progress"]) == 1
    assert capsys.readouterr().err.startswith("metarl: error: device 'cuda' asked for")


# --- on a GPU --------------------------------------------------------------------------------


@pytest.fixture
def exact_matmuls() -> Iterator[None]:
    """Full float32 matrix products on the GPU (no TF32), for comparisons with the CPU."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.cuda
def test_a_maml_trpo_iteration_on_cuda_matches_the_cpu(exact_matmuls: None) -> None:
    results = {}
    for device in ("cpu", "cuda"):
        config = tiny(device=device, meta_batch_size=4, episodes_per_task=4, horizon=10,
                      hidden_sizes=(16, 16), fvp_fraction=1.0)
        with MetaLearner(config) as learner:
            state = learner.initial_state()
            assert devices(state) == {device}
            after, metrics = learner.iteration(state)
            assert devices(after) == {device}
        results[device] = ({k: v.cpu() for k, v in after.params.items()}, metrics)
    (cpu_params, cpu_metrics), (gpu_params, gpu_metrics) = results["cpu"], results["cuda"]
    assert gpu_metrics["outer/accepted"] == cpu_metrics["outer/accepted"] == 1.0
    # a mapping: a failure names the parameter and its largest difference
    torch.testing.assert_close(gpu_params, cpu_params, rtol=1e-4, atol=1e-4)
    for key in ("support/return", "query/return"):
        assert gpu_metrics[key] == pytest.approx(cpu_metrics[key], rel=1e-4, abs=1e-4)


@pytest.mark.cuda
def test_a_tiny_half_cheetah_iteration_runs_on_cuda() -> None:
    pytest.importorskip("mujoco")
    config = tiny(env_id="metarl/HalfCheetahVel-v0", device="cuda", meta_batch_size=2,
                  episodes_per_task=2, horizon=8, hidden_sizes=(16,))
    with MetaLearner(config) as learner:
        after, metrics = learner.iteration(learner.initial_state())
    assert devices(after) == {"cuda"}
    assert all(bool(torch.isfinite(v).all()) for v in after.params.values())
    assert metrics["env/steps"] > 0


@pytest.mark.cuda
def test_a_cuda_run_saves_cpu_checkpoints_and_resumes_and_evaluates_on_the_cpu(
        tmp_path: Path) -> None:
    config = tiny(device="cuda", iterations=1)
    run = _trained(tmp_path, config)
    assert devices(load_checkpoint(run / "checkpoints" / "last.pt")) == {"cpu"}
    train(dataclasses.replace(config, iterations=2, device="cpu"), run, progress=False,
          resume=True)
    payload = load_checkpoint(run / "checkpoints" / "last.pt")
    assert payload["iteration"] == 2 and devices(payload) == {"cpu"}
    on_gpu = evaluate_run(run, checkpoint="last", progress=False, device="cuda")
    on_cpu = evaluate_run(run, checkpoint="last", progress=False, device="cpu")
    assert on_gpu["mean"] == pytest.approx(on_cpu["mean"], rel=1e-3, abs=1e-3)


@pytest.mark.parametrize("has_bfloat16", [True, False])
def test_bfloat16_curvature_on_a_cpu_without_it_gets_a_note(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], has_bfloat16: bool
) -> None:
    """Emulated bfloat16 products are slower than float32's: building the learner says so,
    once, only where the CPU lacks bfloat16 and only for curvature_dtype bfloat16."""
    monkeypatch.setattr(device_module, "cpu_has_bfloat16_arithmetic", lambda: has_bfloat16)
    for dtype in ("float32", "bfloat16"):
        with MetaLearner(tiny(curvature_dtype=dtype)):
            pass
    notes = capsys.readouterr().err.count("--curvature-dtype float32 is faster here")
    assert notes == (0 if has_bfloat16 else 1)
