"""Checkpoints: the meta-parameters and enough context to evaluate or resume, written atomically."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` via a temporary file and an atomic rename, so an
    interruption never leaves a half-written checkpoint in place of a good one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint; a missing or unreadable file raises a one-line ``ValueError``."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        reason = type(err).__name__
        raise ValueError(f"checkpoint {path} is corrupt or unreadable ({reason})") from err
    if not isinstance(payload, dict) or "params" not in payload:
        raise ValueError(f"checkpoint {path} does not hold metarl parameters")
    return payload
