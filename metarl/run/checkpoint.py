"""Checkpoints: the meta-parameters and enough context to evaluate or resume, written atomically.

Each checkpoint carries a SHA-256 digest of its own content (every tensor's dtype, shape and
bytes, every other value's repr), checked on load. torch.load reads a zip archive without checking
its CRCs, and even a CRC check misses damage to the archive's directory: a flipped byte in a
checkpoint otherwise loaded silently wrong numbers.

Tensors are saved on the CPU and loaded there, whatever device a run computes on, so that a
checkpoint written on a GPU machine loads on any other, and the other way round.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import torch

DIGEST_KEY = "sha256"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` via a temporary file and an atomic rename, so an
    interruption never leaves a half-written checkpoint in place of a good one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    payload = on_cpu(payload)
    torch.save({**payload, DIGEST_KEY: content_digest(payload)}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint; a missing, unreadable, truncated or altered file raises a one-line
    ``ValueError`` (``FileNotFoundError`` when missing)."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # a damaged file's unpickler warnings are noise
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file fails anywhere in the unpickler, in any way
        reason = type(err).__name__
        raise ValueError(f"checkpoint {path} is corrupt or unreadable ({reason})") from err
    if not isinstance(payload, dict) or "params" not in payload:
        raise ValueError(f"checkpoint {path} does not hold metarl parameters")
    digest = payload.pop(DIGEST_KEY, None)  # absent from checkpoints of older versions
    if digest is not None and digest != content_digest(payload):
        raise ValueError(f"checkpoint {path} is corrupt: its content does not match the "
                         "checksum it was saved with")
    return payload


def check_params(path: Path, params: Any, expected: dict[str, torch.Tensor]) -> None:
    """A one-line ``ValueError`` unless the checkpoint's ``params`` have exactly the names,
    shapes and dtypes of ``expected`` (those of the policy the config builds)."""
    if not isinstance(params, dict) or params.keys() != expected.keys():
        names = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"checkpoint {path} holds parameters {names}, this config's policy has "
                         f"{sorted(expected)}")
    for name, want in expected.items():
        got = params[name]
        if not isinstance(got, torch.Tensor) or got.shape != want.shape or got.dtype != want.dtype:
            shown = (tuple(got.shape), got.dtype) if isinstance(got, torch.Tensor) else got
            raise ValueError(f"checkpoint {path}: parameter {name} is {shown}, this config's "
                             f"policy needs {(tuple(want.shape), want.dtype)}")


def on_cpu(value: Any) -> Any:
    """``value`` with every tensor in its dicts, lists and tuples moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: on_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [on_cpu(v) for v in value]
    if isinstance(value, tuple):
        items = [on_cpu(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    return value


def content_digest(payload: Any) -> str:
    """SHA-256 of ``payload``'s content: nested dicts, lists, tensors and plain values."""
    digest = hashlib.sha256()
    _feed(digest, payload)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}:".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}:".encode())
        for key in sorted(value, key=repr):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}:".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"V{value!r};".encode())


# The checkpoints every run writes: the best by its own measure, and the last (resumable).
CHECKPOINTS = ("best", "last")


def run_checkpoint(run_dir: Path, name: str) -> Path:
    """The path of checkpoint ``name`` of the run in ``run_dir``, after one-line errors for a
    name that is no checkpoint and a folder that is no run."""
    if name not in CHECKPOINTS:
        raise ValueError(f"--checkpoint must be one of {', '.join(CHECKPOINTS)}, got {name!r}")
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a metarl run directory (no config.yaml)")
    return run_dir / "checkpoints" / f"{name}.pt"
