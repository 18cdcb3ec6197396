"""Watchdog: a stalled rollout ends the run with a one-line error instead of hanging it.

A sampler can stall for good: a simulator stuck in a C loop, a worker that deadlocked, a remote
call that never answers. Users of meta-RL libraries meet this as a progress bar frozen at 0/500.
``deadline`` bounds the time a block may take, in two layers:

1. In the main thread (POSIX), an interval timer delivers SIGALRM when the time is up, and the
   handler raises ``StallError`` where the code is waiting: a sleep, a blocking read, a Python
   loop. The exception travels the ordinary exit path, so the trainer checkpoints the last
   completed iteration and the CLI prints one line and exits non-zero. The timer re-fires every
   second in case a broad ``except`` swallows the first exception.
2. A Python signal handler runs only when the interpreter regains control; code stuck inside C
   (or a block whose signals are masked) never gives it back. A daemon thread therefore waits a
   grace period beyond the deadline and, if the block still has not finished, writes the
   one-line message to stderr and ends the process with ``os._exit(1)``. Checkpoints are written
   atomically (temp file + rename), so the run directory then holds its last checkpoint intact,
   ready for ``metarl train --resume``.

Both layers are disarmed, and the thread joined, whenever the block ends, however it ends.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import FrameType
from typing import Any, TypeAlias

# What signal.signal accepts and returns (typeshed's private alias).
_Handler: TypeAlias = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

__all__ = ["StallError", "deadline", "rollout_deadline"]

# Exit status of a process the backstop thread ends: the CLI's status for a failed run.
STALL_EXIT_CODE = 1


class StallError(TimeoutError):
    """A guarded block ran past its deadline; the message says what stalled and what to do.

    A ``TimeoutError`` is an ``OSError``, which the CLI reports as one line with exit status 1.
    """


@contextmanager
def deadline(seconds: float, message: str, grace_s: float = 30.0) -> Iterator[None]:
    """Raise ``StallError(message)`` in the block if it runs longer than ``seconds``; end the
    process with ``message`` on stderr if it is still running ``grace_s`` later.

    ``seconds <= 0`` disables both. The signal layer arms only in the main thread and only when
    no other interval timer is running; the backstop thread always arms.
    """
    if seconds <= 0:
        yield
        return
    finished = threading.Event()
    backstop = threading.Thread(target=_end_process_unless, args=(finished, seconds + grace_s,
                                                                  message),
                                name="metarl-watchdog", daemon=True)
    armed, previous_handler = _arm_timer(seconds, message)
    backstop.start()
    try:
        yield
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous_handler)
        finished.set()
        backstop.join()


def rollout_deadline(seconds: float, iteration: int) -> AbstractContextManager[None]:
    """``deadline`` for the sampling of meta-iteration ``iteration`` (``rollout_timeout_s``)."""
    message = (f"sampling of iteration {iteration} stalled: no result after {seconds:g} s "
               "(rollout_timeout_s; raise it for slow environments, 0 disables it); the last "
               "checkpoint is kept, continue with metarl train --resume RUN_DIR")
    return deadline(seconds, message, grace_s=min(30.0, max(1.0, seconds)))


def _arm_timer(seconds: float, message: str) -> tuple[bool, _Handler]:
    """Install the SIGALRM handler and start the timer: whether it could arm here, and the
    handler it replaced."""
    if (not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()
            or signal.getitimer(signal.ITIMER_REAL)[0] > 0):  # someone else's timer: leave it
        return False, None

    def stalled(signum: int, frame: FrameType | None) -> None:
        raise StallError(message)

    previous = signal.signal(signal.SIGALRM, stalled)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    # None means a handler not installed from Python; the default is the closest restorable one
    return True, signal.SIG_DFL if previous is None else previous


def _end_process_unless(finished: threading.Event, after_s: float, message: str) -> None:
    if finished.wait(after_s):
        return
    # The guarded block is stuck where no exception can reach it: nothing left but to exit.
    # Flush what the main thread may have buffered, then leave without running its cleanup
    # (it is blocked); atomic checkpoint writes keep the run directory resumable.
    try:
        sys.stdout.flush()
        print(f"metarl: error: {message}", file=sys.stderr, flush=True)
    finally:
        os._exit(STALL_EXIT_CODE)
