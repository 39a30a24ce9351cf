"""Runs copied to TensorBoard event files as their folders are written (:class:`TensorBoardTracker`).

Each run folder gets ``tensorboard/``: the run's own columns (``train_loss``, ``lr``) in it, and one folder per
model (``tensorboard/raw``, ``tensorboard/ema``, ...) whose scalars carry the metric's name as their tag
(``val_loss``, ``r2``, ``decay``). TensorBoard shows each folder as a run, and the same tag of several runs in one
chart: raw and every averaged model of a metric share a chart, for one run or a whole sweep
(``tensorboard --logdir runs/``). Values are written against their epoch; TensorBoard keeps scalars as 32-bit
floats.

Every flush appends the new rows to this process's event file in each folder (opened, written, closed: no thread and
no file kept open per run, however large the stack). A run that continues from its checkpoint, or one found behind
(its ``history.csv`` newer than its events), has its event folder written again from its history, so the events
always hold exactly the folder's epochs. Needs the ``tensorboard`` package (``pip install 'emabench[tensorboard]'``)
for its event format.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from emabench.config import Config
from emabench.errors import InputError, one_line
from emabench.runs.layout import HISTORY
from emabench.runs.observe import Rows, RunObserver
from emabench.tracking.names import Column, Naming, epoch_of, rows_after

EXTRA = "pip install 'emabench[tensorboard]'"
F = TypeVar("F", bound=Callable[..., Any])


def check_installed() -> None:
    """An :class:`InputError` naming the extra when TensorBoard's event format is not installed."""
    try:
        from tensorboard.compat.proto.event_pb2 import Event  # noqa: F401
    except ImportError:
        raise InputError(f"--track tensorboard needs TensorBoard, which is not installed: {EXTRA}") from None


@dataclass
class _Events:
    """One run's event folder as this process writes it."""

    folder: Path
    naming: Naming
    written: int = 0  # the epochs the events hold
    files: dict[str | None, Path] = field(default_factory=dict)  # model (None: the run's own) → this process's file
    columns: dict[str, Column] = field(default_factory=dict)


def _guarded(method: F) -> F:
    @functools.wraps(method)
    def guarded(self: TensorBoardTracker, *args: Any, **kwargs: Any) -> Any:
        if self._failure is not None:
            return None
        try:
            return method(self, *args, **kwargs)
        except OSError as err:  # a disk that refuses the copy: the run folders go on being written
            self._failure = f"TensorBoard ({getattr(err, 'filename', '') or 'event files'}): {one_line(str(err), 300)}"
            return None

    return guarded  # type: ignore[return-value]


class TensorBoardTracker(RunObserver):
    """Writes each run's history as TensorBoard scalars inside its run folder (see the module docstring)."""

    def __init__(self) -> None:
        check_installed()
        self._runs: dict[str, _Events] = {}
        self._failure: str | None = None

    @property
    def failure(self) -> str | None:
        return self._failure

    def note_failure(self, message: str) -> None:
        self._failure = self._failure or message

    @_guarded
    def started(self, run: Any, config: Config) -> None:
        shutil.rmtree(run.tensorboard_dir, ignore_errors=True)  # the folder was cleared: no earlier events
        self._runs[_key(run)] = _Events(Path(run.tensorboard_dir), Naming.of(config))

    @_guarded
    def resumed(self, run: Any, rows: Rows) -> None:
        self._rewrite(run, rows)

    @_guarded
    def flushed(self, run: Any, rows: Rows) -> None:
        events = self._runs.get(_key(run))
        if events is None:  # a run this process did not see start: its events are written from its history
            self._rewrite(run, rows)
            return
        self._write(events, rows_after(rows, events.written))

    @_guarded
    def existing(self, run: Any) -> None:
        history = Path(run.path) / HISTORY
        if not history.is_file() or _newest(Path(run.tensorboard_dir)) >= history.stat().st_mtime:
            return
        self._rewrite(run, run.read_history().to_dict("records"))

    def _rewrite(self, run: Any, rows: Rows) -> None:
        shutil.rmtree(run.tensorboard_dir, ignore_errors=True)
        events = _Events(Path(run.tensorboard_dir), Naming.of(run.read_config()))
        self._runs[_key(run)] = events
        self._write(events, rows)

    def _write(self, events: _Events, rows: Rows) -> None:
        """Append one event per epoch and model (all its metrics in one summary) to each folder's file."""
        if not rows:
            return
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        if not events.columns:
            events.columns = events.naming.columns(rows[0])
        stamp = time.time()
        records: dict[str | None, list[bytes]] = {}
        for row in rows:
            values: dict[str | None, list[Any]] = {}
            for name, column in events.columns.items():
                value = row.get(name)
                if isinstance(value, (int, float)):
                    values.setdefault(column.model, []).append(Summary.Value(tag=column.metric, simple_value=value))
            for model, entries in values.items():
                event = Event(wall_time=stamp, step=epoch_of(row), summary=Summary(value=entries))
                records.setdefault(model, []).append(event.SerializeToString())
        for model, data in records.items():
            _append(_file(events, model, Event), data)
        events.written = epoch_of(rows[-1])


def _file(events: _Events, model: str | None, event_type: Any) -> Path:
    """This process's event file for ``model`` (created with TensorBoard's file-version record)."""
    path = events.files.get(model)
    if path is None:
        folder = events.folder if model is None else events.folder / model
        folder.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}.emabench"
        path = events.files[model] = folder / name
        _append(path, [event_type(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()])
    return path


def _append(path: Path, records: list[bytes]) -> None:
    """TFRecord framing (length, its masked CRC-32C, data, its masked CRC-32C), appended in one write."""
    from tensorboard.summary.writer.record_writer import RecordWriter

    with open(path, "ab") as handle:
        writer = RecordWriter(handle)
        for record in records:
            writer.write(record)


def _newest(folder: Path) -> float:
    """The latest modification time of an event file under ``folder`` (``-inf`` when there is none)."""
    times = [p.stat().st_mtime for p in folder.rglob("events.out.tfevents.*")] if folder.is_dir() else []
    return max(times, default=float("-inf"))


def _key(run: Any) -> str:
    return os.path.abspath(run.path)
