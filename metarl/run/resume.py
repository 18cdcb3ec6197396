"""What resuming a run checks and trims, for every kind of run: the config may differ from the
saved one only in fields that change neither the maths nor the random streams, and the metrics
logged after the checkpoint are dropped (the resumed run logs them again, identically)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from metarl.run.atomic_write import write_text


def check_same_run(current: Mapping[str, Any], saved: Mapping[str, Any],
                   defaults: Mapping[str, Any], may_change: Iterable[str]) -> None:
    """A one-line ``ValueError`` if ``current`` differs from the run's ``saved`` config in a
    field outside ``may_change``. A field ``saved`` lacks (written before the field existed)
    ran with its default."""
    allowed = set(may_change)
    changed = sorted(k for k, v in current.items()
                     if k not in allowed and saved.get(k, defaults.get(k)) != v)
    if changed:
        raise ValueError(f"cannot resume with a different {', '.join(changed)} "
                         f"(only {', '.join(sorted(allowed))} may change)")


def check_iteration(iteration: int, iterations: int) -> None:
    if iteration > iterations:
        raise ValueError(f"the run is at iteration {iteration}, beyond --iterations "
                         f"{iterations}")


def truncate_metrics(path: Path, iteration: int) -> None:
    """Drop the metrics logged after ``iteration`` (the run resumes from there), atomically."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines(keepends=True):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a crash
            break
        if row["iteration"] <= iteration:
            kept.append(line if line.endswith("\n") else line + "\n")
    write_text(path, "".join(kept))
