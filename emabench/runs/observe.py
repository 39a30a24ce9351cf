"""Observers of run folders: what a tracker (MLflow, TensorBoard: :mod:`emabench.tracking`) sees as runs are written.

The run folder is the source of truth; an observer keeps a copy. :class:`~emabench.runs.folder.RunFolder` tells the
current observer (:func:`current`) about each step of its lifecycle as it writes it — a fresh start, a resume from a
checkpoint, history rows once they are in ``history.csv``, the end (finished, interrupted or failed), a figure — and
a sweep tells it when it starts and ends and which of its runs were already finished. So whichever engine trains a
run, the process that writes its folder is the one that reports it: this process, a ``--jobs`` worker (which gets the
observer from :func:`~emabench.runs.work.init_worker`) or the Ray driver, which applies its tasks' calls to the
folders.

The caller installs an observer around the work with :func:`observing`; without one, :func:`current` is a
:class:`RunObserver` that does nothing. An observer never raises into training: it keeps its first failure
(:attr:`RunObserver.failure`) for the caller to report once the run folders are written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

Rows = Sequence[dict[str, Any]]


class RunObserver:
    """The events a run folder's lifecycle gives, each a no-op here. ``run`` is the
    :class:`~emabench.runs.folder.RunFolder` being written (not imported here: the folder imports this module)."""

    @property
    def failure(self) -> str | None:
        """The first error that stopped the copy (one line naming the tracker and where it writes), or ``None``."""
        return None

    def sweep_started(self, folder: Path, spec: dict[str, Any]) -> None:
        """A sweep is about to train into ``folder`` (``spec``: what ``sweep.json`` holds)."""

    def started(self, run: Any, config: Any) -> None:
        """``run`` was cleared and starts from epoch 1 with ``config`` (its ``config.yaml`` is written)."""

    def resumed(self, run: Any, rows: Rows) -> None:
        """``run`` continues from its checkpoint; ``rows`` is its history up to it (later epochs are trained again)."""

    def flushed(self, run: Any, rows: Rows) -> None:
        """``history.csv`` now holds ``rows`` (every row so far, the new ones last)."""

    def ended(self, run: Any, status: str) -> None:
        """``run`` stopped: ``completed``/``diverged`` (its DONE is written), ``interrupted`` or ``failed``."""

    def figure_saved(self, run: Any, name: str) -> None:
        """A figure was written into ``run`` (during ``finish``, or after it for ``emabench run``)."""

    def existing(self, run: Any) -> None:
        """``run`` is as it is on disk and will not be trained now (finished before, or trained elsewhere): copy it
        if the copy is missing or behind."""

    def sweep_ended(self, folder: Path, statuses: Sequence[str]) -> None:
        """The sweep into ``folder`` ended; ``statuses``: every run's outcome status."""

    def note_failure(self, message: str) -> None:
        """A failure of this observer's copy in another process (a ``--jobs`` worker's)."""

    def flush(self) -> None:
        """Send whatever is still held back (the end of a unit of work, or of the process)."""


_NONE = RunObserver()
_current: RunObserver = _NONE
Observer = TypeVar("Observer", bound=RunObserver)


def current() -> RunObserver:
    """The observer run folders report to in this process (one that does nothing unless :func:`observing`)."""
    return _current


@contextlib.contextmanager
def observing(observer: Observer | None) -> Iterator[Observer | None]:
    """Report run folders to ``observer`` inside the block (``None``: to nobody), then :meth:`~RunObserver.flush`."""
    global _current
    previous, _current = _current, observer or _NONE
    try:
        yield observer
    finally:
        try:
            _current.flush()
        finally:
            _current = previous


def install(observer: RunObserver | None) -> None:
    """Make ``observer`` this process's for good (a worker process, for the units it will train)."""
    global _current
    _current = observer or _NONE
