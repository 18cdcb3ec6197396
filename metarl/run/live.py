"""A run still in progress leaves ``RUNNING.json`` (its process id and host) in its folder while
the loop runs, so that commands reading the run can tell its checkpoints may still change: an
evaluation of a live run is marked interim instead of looking like the final result. A run
killed without cleanup leaves the file behind; a dead process id makes it stale, and it is
ignored."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from metarl.run.atomic_write import write_json

MARKER = "RUNNING.json"


def mark_running(run_dir: Path) -> None:
    write_json(run_dir / MARKER, {"pid": os.getpid(), "host": socket.gethostname(),
                                  "started": time.strftime("%Y-%m-%d %H:%M:%S")})


def clear_running(run_dir: Path) -> None:
    (run_dir / MARKER).unlink(missing_ok=True)


def running_pid(run_dir: Path) -> int | None:
    """The process id of the run training in ``run_dir`` now, or None (no marker, a marker
    from another host that cannot be checked, or a stale one whose process has ended)."""
    try:
        marker = json.loads((run_dir / MARKER).read_text())
        pid = int(marker["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if marker.get("host") != socket.gethostname() or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, owned by someone else
        return pid
    return pid
