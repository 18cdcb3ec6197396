"""Atomic writes: the target holds the old content or the new, never a partial file."""

import json
from pathlib import Path

import pytest

from metarl.run.atomic_write import write_json, write_text


def test_write_json_round_trips_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_json(path, {"iterations": 3, "minutes": 0.5})
    assert json.loads(path.read_text()) == {"iterations": 3, "minutes": 0.5}
    assert path.read_text().endswith("\n")
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_write_that_fails_before_the_rename_keeps_the_old_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "eval.json"
    write_text(path, "old\n")

    def crash(src: object, dst: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C between writing and renaming

    monkeypatch.setattr("metarl.run.atomic_write.os.replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_text(path, "new and longer\n")
    assert path.read_text() == "old\n"
