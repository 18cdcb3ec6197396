"""The watchdog: a block past its deadline raises StallError (signal layer) or, when it cannot be
interrupted, the process ends with the message (backstop thread); both disarm afterwards."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from metarl.run.watchdog import StallError, deadline, rollout_deadline


def _watchdog_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "metarl-watchdog"]


def test_a_stalled_block_raises_within_its_deadline() -> None:
    start = time.monotonic()
    with pytest.raises(StallError, match="the test stalled"), deadline(0.2, "the test stalled"):
        time.sleep(30)
    assert 0.15 < time.monotonic() - start < 2
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL
    assert _watchdog_threads() == []


def test_a_stall_error_swallowed_by_the_block_is_raised_again() -> None:
    with pytest.raises(StallError), deadline(0.1, "stalled"):
        with contextlib.suppress(StallError):  # a broad except in someone's sampler
            time.sleep(30)
        time.sleep(30)


def test_a_block_within_its_deadline_is_left_alone_and_everything_is_disarmed() -> None:
    handler = signal.getsignal(signal.SIGALRM)
    with deadline(5.0, "never"):
        time.sleep(0.01)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is handler
    assert _watchdog_threads() == []
    time.sleep(0.05)  # nothing fires later either


def test_an_exception_in_the_block_disarms_the_watchdog() -> None:
    with pytest.raises(KeyError), deadline(0.2, "never"):
        raise KeyError("x")
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert _watchdog_threads() == []
    time.sleep(0.3)  # the timer would have fired here


def test_zero_disables_the_watchdog() -> None:
    with deadline(0, "never"):
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        assert _watchdog_threads() == []


def test_another_timer_is_not_clobbered() -> None:
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with deadline(10.0, "never"):
            time.sleep(0.01)
        time.sleep(0.5)
        assert fired == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_the_rollout_message_names_the_iteration_and_the_setting() -> None:
    with pytest.raises(StallError) as error, rollout_deadline(0.1, 7):
        time.sleep(30)
    message = str(error.value)
    assert "sampling of iteration 7 stalled" in message and "rollout_timeout_s" in message
    assert "\n" not in message
    assert isinstance(error.value, OSError)  # the CLI reports OSErrors as one line, status 1


def test_outside_the_main_thread_the_backstop_still_guards() -> None:
    outcome: list[str] = []

    def worker() -> None:
        with deadline(5.0, "never"):
            outcome.append("ran")

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert outcome == ["ran"] and _watchdog_threads() == []


def test_a_block_that_no_signal_reaches_ends_the_process_with_the_message() -> None:
    # SIGALRM blocked: what code stuck inside C looks like to a Python signal handler
    script = textwrap.dedent("""
        import signal, time
        from metarl.run.watchdog import deadline
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        with deadline(0.3, "stuck in C", grace_s=0.3):
            time.sleep(60)
        print("not reached")
    """)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert 0.5 < time.monotonic() - start < 30
    assert done.returncode == 1
    assert done.stderr == "metarl: error: stuck in C\n"
    assert "not reached" not in done.stdout
