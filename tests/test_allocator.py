"""The allocator setting that keeps freed memory in the process (metarl.run.allocator)."""

import ctypes
import os
import sys

import pytest

from metarl import cli
from metarl.run import allocator

glibc = pytest.mark.skipif(not sys.platform.startswith("linux")
                           or not hasattr(ctypes.CDLL(None), "mallopt"), reason="needs glibc")


@glibc
def test_thresholds_are_set_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("MALLOC_")] + ["GLIBC_TUNABLES"]:
        monkeypatch.delenv(name, raising=False)
    assert allocator.keep_freed_memory()


@pytest.mark.parametrize("name, value", [("MALLOC_TRIM_THRESHOLD_", "0"),
                                         ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")])
def test_a_users_malloc_setting_wins(monkeypatch: pytest.MonkeyPatch, name: str,
                                     value: str) -> None:
    monkeypatch.setenv(name, value)
    assert not allocator.keep_freed_memory()


def test_every_command_sets_it(monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[str] = []

    def record() -> bool:
        calls.append("keep_freed_memory")
        return True

    monkeypatch.setattr(cli, "keep_freed_memory", record)
    assert cli.main(["presets"]) == 0
    assert calls == ["keep_freed_memory"]
