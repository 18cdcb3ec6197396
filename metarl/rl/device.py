"""The torch device a run's learning maths live on, from the config's ``device`` field.

``cpu`` and ``cuda`` name a device; ``auto`` takes CUDA when torch finds it, else the CPU. A run
that asks for ``cuda`` on a machine without it stops before it starts, with one line saying what
to ask for instead. The commands that read a finished run (``eval``, ``compare``, ``video``)
are gentler: a run trained on a GPU is evaluated on the CPU of a machine without one, after a
one-line note. Sampling is never moved: the simulators run on the CPU whatever the device.
"""

from __future__ import annotations

import sys

import torch

from metarl.config import DEVICES, ConfigError


def cuda_available() -> bool:
    """Whether torch finds a CUDA device here (the tests replace this to pretend either way)."""
    return torch.cuda.is_available()


def cpu_has_bfloat16_arithmetic() -> bool:
    """Whether this CPU has bfloat16 dot-product instructions (AVX512-BF16 or AMX), as torch
    reports them (the tests replace this to pretend either way)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def note_slow_bfloat16(curvature_dtype: str, device: torch.device) -> None:
    """One line on stderr when ``curvature_dtype: bfloat16`` runs on a CPU that emulates
    bfloat16: there the curvature's products were slower than in float32 (1.2 times with
    AVX-512 alone, 11 times with AVX2 alone, docs/results/speed.md)."""
    if curvature_dtype == "bfloat16" and device.type == "cpu" and not cpu_has_bfloat16_arithmetic():
        print("note: curvature_dtype bfloat16 on a CPU without bfloat16 instructions (AVX512-BF16 "
              "or AMX) is slower than float32; --curvature-dtype float32 is faster here",
              file=sys.stderr)


def resolve_device(requested: str) -> torch.device:
    """The device ``requested`` names: ``cpu``, ``cuda``, or ``auto`` (CUDA when available).

    ``cuda`` without CUDA raises a one-line ``ConfigError`` with the settings that work here.
    """
    if requested not in DEVICES:
        choices = ", ".join(repr(device) for device in DEVICES)
        raise ConfigError(f"device must be one of {choices}, got {requested!r}")
    if requested == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    if requested == "cuda" and not cuda_available():
        raise ConfigError(f"device 'cuda' asked for, but torch {torch.__version__} finds no CUDA "
                          "device on this machine; use --device cpu, or --device auto to take "
                          "CUDA only where there is one")
    return torch.device(requested)


def evaluation_device(run_device: str, asked: str | None = None) -> torch.device:
    """Where a command that reads a run (eval, compare, video) computes: the device ``asked``
    on its command line (checked as for training), else the run's own ``run_device``, or the
    CPU with a one-line note on stderr when the run trained on CUDA and this machine has none."""
    if asked is not None:
        return resolve_device(asked)
    if run_device == "cuda" and not cuda_available():
        print("note: the run trained on cuda; this machine has no CUDA device, so it is "
              "evaluated on the cpu (--device cpu says so and silences this note)",
              file=sys.stderr)
        return torch.device("cpu")
    return resolve_device(run_device)
