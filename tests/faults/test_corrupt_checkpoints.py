"""Damaged checkpoints: truncated, emptied, overwritten, bit-flipped or holding the wrong things.
Resuming or evaluating from one fails with a one-line error and exit status 1, never a traceback
or a silently wrong number, and leaves the run directory byte-for-byte as it was."""

from __future__ import annotations

import io
import random
import shutil
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from metarl.run.checkpoint import DIGEST_KEY, load_checkpoint

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tiny: list[str]) -> Path:
    from metarl.cli import main

    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", "navigation2d", "--run-dir", str(run), *tiny, "--iterations", "2"]) == 0
    return run


def _flip_at(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def _flip_tensor_data(data: bytes) -> bytes:
    """Flip the middle byte of the largest tensor's storage (a ``data/`` entry of torch's zip,
    stored uncompressed). A fixed fraction of the file lands, as the payload's size changes,
    in a local header's alignment padding, which no reader looks at."""
    archive = zipfile.ZipFile(io.BytesIO(data))
    entry = max((info for info in archive.infolist() if "/data/" in info.filename),
                key=lambda info: info.file_size)
    assert entry.compress_type == zipfile.ZIP_STORED
    header = entry.header_offset
    name_length, extra_length = struct.unpack("<HH", data[header + 26:header + 30])
    start = header + 30 + name_length + extra_length
    return _flip_at(data, start + entry.file_size // 2)


def _flip_directory_entry(data: bytes) -> bytes:
    """Flip a byte of the size that the zip's central directory records for its first entry,
    which a reader needs to find the entry. A fixed fraction of the file used to land there,
    until the payload grew by a config field and it landed on an entry's CRC-32 instead, which
    torch never checks: a harmless flip, loaded correctly."""
    directory = data.find(b"PK\x01\x02")  # the first central directory header
    assert directory > 0
    return _flip_at(data, directory + 21)  # compressed size: bytes 20..23 of the header


DAMAGES: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda data: b"",
    "one byte": lambda data: data[:1],
    "truncated to half": lambda data: data[: len(data) // 2],
    "last byte missing": lambda data: data[:-1],
    "random bytes": lambda data: random.Random(0).randbytes(len(data)),
    "text": lambda data: b"not a checkpoint\n",
    "zeroed middle": lambda data: (data[: len(data) // 3] + bytes(len(data) // 3)
                                   + data[2 * (len(data) // 3):]),
    "byte flipped in the tensor data": _flip_tensor_data,
    "byte flipped in the archive directory": _flip_directory_entry,
}


def _wrong_content(change: Callable[[dict[str, Any]], Any]) -> Callable[[bytes], bytes]:
    """A well-formed torch file whose content ``change`` altered (saved without a digest)."""

    def damage(data: bytes) -> bytes:
        payload = torch.load(io.BytesIO(data), weights_only=True)
        del payload[DIGEST_KEY]
        out = io.BytesIO()
        torch.save(change(payload), out)
        return out.getvalue()

    return damage


WRONG_CONTENT: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "a list": (_wrong_content(lambda p: [1, 2]), "does not hold metarl parameters"),
    "no parameters": (_wrong_content(lambda p: {k: v for k, v in p.items() if k != "params"}),
                      "does not hold metarl parameters"),
    "no random streams": (_wrong_content(lambda p: {**p, "rng": None}), "no random streams"),
    "no optimiser state": (_wrong_content(lambda p: {k: v for k, v in p.items() if k != "adam"}),
                           "lacks adam"),
    "missing parameter": (_wrong_content(lambda p: {**p, "params": {}}), "holds parameters []"),
    "wrong parameter shape": (
        _wrong_content(lambda p: {**p, "params": {k: torch.zeros(3) for k in p["params"]}}),
        "this config's policy needs"),
}


def _damaged_copy(finished: Path, tmp_path: Path, name: str,
                  damage: Callable[[bytes], bytes]) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    path = run / "checkpoints" / name
    path.write_bytes(damage(path.read_bytes()))
    return run


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("command", ["resume", "eval"])
def test_a_damaged_checkpoint_is_a_one_line_error_and_the_run_is_untouched(
    cli: Any, finished_run: Path, tmp_path: Path, helpers: Any, damage: str, command: str,
) -> None:
    name = "last.pt" if command == "resume" else "best.pt"
    run = _damaged_copy(finished_run, tmp_path, name, DAMAGES[damage])
    before = helpers.snapshot(run)
    if command == "resume":
        code, err = cli("train", "--resume", str(run), "--no-progress", "--iterations", "3")
    else:
        code, err = cli("eval", str(run), "--checkpoint", "best", "--tasks", "2", "--episodes",
                        "2", "--no-progress")
    line = helpers.one_error_line(err)
    assert code == 1
    assert f"checkpoint {run / 'checkpoints' / name} is corrupt" in line
    assert helpers.snapshot(run) == before


@pytest.mark.parametrize("content", WRONG_CONTENT)
def test_a_checkpoint_with_the_wrong_content_is_not_resumed(
    cli: Any, finished_run: Path, tmp_path: Path, helpers: Any, content: str,
) -> None:
    damage, message = WRONG_CONTENT[content]
    run = _damaged_copy(finished_run, tmp_path, "last.pt", damage)
    before = helpers.snapshot(run)
    code, err = cli("train", "--resume", str(run), "--no-progress", "--iterations", "3")
    assert code == 1 and message in helpers.one_error_line(err)
    assert helpers.snapshot(run) == before


def test_a_half_written_temporary_checkpoint_is_ignored(
    cli: Any, finished_run: Path, tmp_path: Path, tiny: list[str], reference_run: Any,
    helpers: Any,
) -> None:
    """kill -9 during a save leaves last.pt.tmp beside the intact last.pt."""
    run = _damaged_copy(finished_run, tmp_path, "last.pt", lambda data: data)
    (run / "checkpoints" / "last.pt.tmp").write_bytes(b"PK\x03\x04 half a zip")
    assert cli("train", "--resume", str(run), "--no-progress", "--iterations", "3")[0] == 0
    helpers.assert_same_run(reference_run(*tiny, "--iterations", "3"), run)


def _sampled_flips(data: bytes, count: int, seed: int) -> list[int]:
    return sorted(random.Random(seed).sample(range(len(data)), count)) if count else \
        list(range(len(data)))


def _every_flip_detected_or_harmless(run: Path, tmp_path: Path, helpers: Any,
                                     count: int) -> tuple[int, int]:
    original = run / "checkpoints" / "last.pt"
    data, reference = original.read_bytes(), load_checkpoint(original)
    damaged = tmp_path / "flipped.pt"
    detected = harmless = 0
    for at in _sampled_flips(data, count, seed=1):
        damaged.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
        try:
            loaded = load_checkpoint(damaged)
        except ValueError:
            detected += 1
            continue
        helpers.assert_equal_trees(reference, loaded, f"flip at byte {at}")  # else: silent
        harmless += 1
    return detected, harmless


def test_sampled_byte_flips_are_detected_or_harmless(finished_run: Path, tmp_path: Path,
                                                     helpers: Any) -> None:
    detected, harmless = _every_flip_detected_or_harmless(finished_run, tmp_path, helpers, 150)
    assert detected > 100  # most bytes matter; those that do not are zip padding and metadata
    print(f"150 sampled byte flips: {detected} detected, {harmless} harmless, 0 silent")


@pytest.mark.slow
def test_every_byte_flip_is_detected_or_harmless(finished_run: Path, tmp_path: Path,
                                                 helpers: Any) -> None:
    detected, harmless = _every_flip_detected_or_harmless(finished_run, tmp_path, helpers, 0)
    print(f"every byte flipped in turn: {detected} detected, {harmless} harmless, 0 silent")
