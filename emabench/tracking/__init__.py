"""Copies of runs where practitioners already look: MLflow (:mod:`.mlflow_tracker`) and TensorBoard
(:mod:`.tensorboard`), kept as the run folders are written. The run folder stays the source of truth.

A tracker is a run observer (:mod:`emabench.runs.observe`): :func:`open_trackers` checks and opens the trackers
named by ``--track`` (or ``track:`` in the config) before anything trains, and the caller installs them around the
work with :func:`emabench.runs.observe.observing`; every run folder written inside — by this process, a ``--jobs``
worker or the Ray driver — is then copied. What a tracker names things is :mod:`.names`'; ``emabench report --track
mlflow`` adds the report to the sweep's MLflow run (:mod:`.mlflow_report`). MLflow is written by a sender process
of its own (:mod:`.mlflow_tracker`, applying :mod:`.mlflow_copier`), TensorBoard's event files by the process that
writes the run folder.

From Python, with your own loop writing run folders::

    from emabench.tracking import copy_run_folder, tracked

    with tracked(["mlflow", "tensorboard"], "runs") as trackers:
        ...  # RunFolder's lifecycle (start, record_epoch, finish) is copied as it is written
        copy_run_folder("runs/my-run", trackers)  # or copy a folder as it is, finished or not
    trackers.failure  # None, or why the copy stopped (the run folders are whole either way)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from emabench.config import TRACKERS
from emabench.errors import ConfigError
from emabench.runs.observe import Rows, RunObserver, observing


class Trackers(RunObserver):
    """Several trackers as one observer: each event goes to each; the first failure of any is :attr:`failure`."""

    def __init__(self, trackers: Sequence[RunObserver]) -> None:
        self.trackers = list(trackers)
        self._noted: str | None = None

    @property
    def failure(self) -> str | None:
        return self._noted or next((t.failure for t in self.trackers if t.failure), None)

    def note_failure(self, message: str) -> None:
        self._noted = self._noted or message

    def sweep_started(self, folder: Path, spec: dict[str, Any]) -> None:
        for tracker in self.trackers:
            tracker.sweep_started(folder, spec)

    def started(self, run: Any, config: Any) -> None:
        for tracker in self.trackers:
            tracker.started(run, config)

    def resumed(self, run: Any, rows: Rows) -> None:
        for tracker in self.trackers:
            tracker.resumed(run, rows)

    def flushed(self, run: Any, rows: Rows) -> None:
        for tracker in self.trackers:
            tracker.flushed(run, rows)

    def ended(self, run: Any, status: str) -> None:
        for tracker in self.trackers:
            tracker.ended(run, status)

    def figure_saved(self, run: Any, name: str) -> None:
        for tracker in self.trackers:
            tracker.figure_saved(run, name)

    def existing(self, run: Any) -> None:
        for tracker in self.trackers:
            tracker.existing(run)

    def sweep_ended(self, folder: Path, statuses: Sequence[str]) -> None:
        for tracker in self.trackers:
            tracker.sweep_ended(folder, statuses)

    def flush(self) -> None:
        for tracker in self.trackers:
            tracker.flush()

    def close(self) -> None:
        """End what the trackers started (MLflow's sender process), once everything is sent."""
        for tracker in self.trackers:
            close = getattr(tracker, "close", None)
            if close is not None:
                close()


def open_trackers(names: Sequence[str], runs_dir: str | Path) -> Trackers:
    """The trackers ``names`` (each of :data:`~emabench.config.TRACKERS`), checked before anything trains: an
    :class:`~emabench.errors.InputError` names a missing extra or a tracking store that cannot be reached or
    written (see :mod:`.mlflow_store`)."""
    trackers: list[RunObserver] = []
    for name in dict.fromkeys(names):
        if name == "mlflow":
            from emabench.tracking.mlflow_store import MlflowStore
            from emabench.tracking.mlflow_tracker import MlflowTracker

            store = MlflowStore(runs_dir)
            store.check()
            trackers.append(MlflowTracker(store))
        elif name == "tensorboard":
            from emabench.tracking.tensorboard import TensorBoardTracker

            trackers.append(TensorBoardTracker())
        else:
            raise ConfigError(f"--track: {name!r} is not one of {', '.join(TRACKERS)}")
    return Trackers(trackers)


@contextlib.contextmanager
def tracked(names: Sequence[str], runs_dir: str | Path) -> Iterator[Trackers]:
    """:func:`open_trackers`, copying every run folder written inside the block (:func:`observing`); at its end,
    everything is sent and the trackers are closed."""
    trackers = open_trackers(names, runs_dir)
    try:
        with observing(trackers):
            yield trackers
    finally:
        trackers.close()


def copy_run_folder(path: str | Path, trackers: RunObserver) -> None:
    """Copy the run folder at ``path`` as it is on disk (finished, interrupted or failed) to ``trackers``, unless
    their copy is whole already: what ``emabench sweep --track`` does for runs finished before, and what a loop of
    your own can call once its run folder is written."""
    from emabench.runs.folder import RunFolder

    trackers.existing(RunFolder(path))
