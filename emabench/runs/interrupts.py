"""Deferred interrupts: Ctrl-C and SIGTERM as a request to stop after the current epoch — once training has begun.

While a run is being set up (:func:`setting_up`: its data loaded, its model built, where a user's function may block
for as long as it likes) there is no epoch to finish and nothing to save, so Ctrl-C stops at once.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

_setting_up = [0]  # how many set-ups are in progress in this process (a list: changed in place, read by handlers)


@contextlib.contextmanager
def setting_up() -> Iterator[None]:
    """Inside the block a run is being set up, not trained: Ctrl-C or SIGTERM raises ``KeyboardInterrupt`` at once
    (and sets the stop request) instead of waiting for an epoch that has not begun."""
    _setting_up[0] += 1
    try:
        yield
    finally:
        _setting_up[0] -= 1


class StopRequest:
    """Ctrl-C (SIGINT) and SIGTERM as a request: the first asks to stop after the current epoch, a second raises
    ``KeyboardInterrupt`` at once (so does the first while a run is :func:`setting_up`). Pass :meth:`is_set` as
    ``stop`` to :func:`emabench.runs.single.run` or :func:`emabench.runs.sweep.sweep`.

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
        if self._requested or _setting_up[0]:
            self._requested = True  # a set-up cut short is a stop request too: nothing more starts after it
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
