"""Files written whole or not at all: the text goes to ``NAME.tmp`` beside the target, which
``os.replace`` then renames over it (atomic on POSIX), so a crash or Ctrl-C mid-write never
leaves a half-written summary or result for a user to trip over."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) in one step."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as indented JSON in one step."""
    write_text(path, json.dumps(data, indent=2) + "\n")
