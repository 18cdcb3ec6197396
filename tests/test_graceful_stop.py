"""GracefulStop: the first SIGINT/SIGTERM is a request honoured between iterations, the second
interrupts at once, and the previous handlers come back afterwards."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from metarl.run.graceful_stop import GracefulStop


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_first_signal_is_deferred_and_the_second_interrupts(
    signum: signal.Signals, capsys: pytest.CaptureFixture[str]
) -> None:
    with GracefulStop() as stop:
        stop.raise_if_requested()  # nothing requested yet
        os.kill(os.getpid(), signum)
        assert stop.requested
        assert f"{signum.name} received, stopping after this iteration" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            stop.raise_if_requested()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_previous_handlers_are_restored() -> None:
    def mine(signum: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        interrupt = signal.getsignal(signal.SIGINT)
        with GracefulStop():
            assert signal.getsignal(signal.SIGTERM) is not mine
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is interrupt
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_outside_the_main_thread_it_changes_nothing() -> None:
    seen: list[object] = []

    def worker() -> None:
        with GracefulStop() as stop:
            seen.append(signal.getsignal(signal.SIGINT))
            stop.raise_if_requested()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [signal.getsignal(signal.SIGINT)]
