"""Ctrl-C and SIGTERM stop training at an iteration boundary, so no finished work is lost.

Stopping in the middle of an iteration would throw that iteration's sampling away and, worse,
leave the random streams part-way through it. ``GracefulStop`` turns the first SIGINT or SIGTERM
into a request that the training loop honours before starting the next iteration (it then raises
``KeyboardInterrupt``, which checkpoints and exits with status 130). A second signal means the
user will not wait: it raises ``KeyboardInterrupt`` at once, and the trainer checkpoints the last
completed iteration with the random streams it had then.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["GracefulStop"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """Context manager that defers SIGINT/SIGTERM to ``raise_if_requested`` (main thread only;
    elsewhere signals cannot be handled from Python and it does nothing)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for signum in _SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"metarl: {signal.Signals(signum).name} received, stopping after this iteration "
              "(send it again to stop at once)", file=sys.stderr, flush=True)

    def raise_if_requested(self) -> None:
        """Raise ``KeyboardInterrupt`` if a stop was requested; call between iterations."""
        if self.requested:
            raise KeyboardInterrupt
