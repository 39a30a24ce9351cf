"""Deferred interrupts: Ctrl-C and SIGTERM as a request to stop after the current epoch."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any


class StopRequest:
    """Ctrl-C (SIGINT) and SIGTERM as a request: the first asks to stop after the current epoch, a second raises
    ``KeyboardInterrupt`` at once. Pass :meth:`is_set` as ``stop`` to :func:`run`/:func:`sweep`.

    ``shared`` (an event of a worker pool) is a second source of the same request, set by the parent process.
    """

    def __init__(self, notice: Callable[[], None] | None = None, shared: Any = None) -> None:
        self._requested = False  # a plain bool: safe to set from a signal handler
        self._notice = notice
        self._shared = shared

    def set(self) -> None:
        self._requested = True

    def is_set(self) -> bool:
        return self._requested or (self._shared is not None and self._shared.is_set())

    def handle(self, signum: int, frame: Any) -> None:
        if self._requested:
            raise KeyboardInterrupt
        self._requested = True
        if self._notice is not None:
            self._notice()

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGINT and SIGTERM with :meth:`handle` inside the block (main thread only)."""
        previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
