"""Runs copied to MLflow as their folders are written (:class:`MlflowTracker`, a run observer).

One MLflow run per run folder, named by its run id, and one parent run per sweep, named by its sweep folder; a sweep's
runs are its children. A run's params are its config flattened (:func:`emabench.tracking.names.params`); every
history column is a metric logged against its epoch (``raw/val_loss``, ``ema/r2``, ``train_loss``); its tags say
its status (``emabench.status``: running, completed, diverged, interrupted, failed) and stop reason; when it ends,
``config.yaml``, ``metrics.csv`` and its figures are its artifacts.

Which MLflow run is a folder's: the one tagged ``emabench.key``, a hash of the folder's absolute path (the path
itself is the tag ``emabench.folder``). A sweep looks its runs up once, as the parent's children; a single run with
one search. So re-running a sweep continues the same MLflow runs: a run that continues from its checkpoint continues
its MLflow run (epochs MLflow already holds, ``emabench.epochs``, are not sent again), a run that starts over
(``--force``, or no checkpoint) gets a new MLflow run and the old one is deleted (MLflow keeps deleted runs, they can
be restored), and a finished run whose copy is missing or behind (tracked for the first time, or a copy that failed)
is copied whole.

Rows are sent in one ``log_batch`` per run when :class:`~emabench.tracking.pacing.Pacer` allows (at most every few
seconds a run, and sending at most a tenth of the wall time); a run's end sends the rest. A failure of MLflow's never
stops training: the copy stops there and :attr:`MlflowTracker.failure` says why.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from emabench.config import Config
from emabench.runs.layout import HISTORY
from emabench.runs.observe import Rows, RunObserver
from emabench.tracking.mlflow_store import MlflowStore, why
from emabench.tracking.names import Column, Naming, epoch_of, params, rows_after
from emabench.tracking.pacing import Pacer

STATUS = {"completed": "FINISHED", "diverged": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}
MAX_PARAMS, MAX_TAGS, MAX_ENTITIES = 100, 100, 1000  # MLflow's limits on one log_batch
KEY, FOLDER, EPOCHS, STATE = "emabench.key", "emabench.folder", "emabench.epochs", "emabench.status"
STOP, HISTORY_SHA, KIND, PARENT = (
    "emabench.stop_reason",
    "emabench.history_sha256",
    "emabench.kind",
    "mlflow.parentRunId",
)

F = TypeVar("F", bound=Callable[..., Any])


def folder_key(path: str | Path) -> str:
    """The tag that finds a folder's MLflow run: a hash of its absolute path (safe in a search filter)."""
    return hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Found:
    """A folder's MLflow run as the store holds it."""

    run_id: str
    status: str
    epochs: int
    history_sha256: str

    @classmethod
    def of(cls, run: Any) -> Found:
        tags = run.data.tags
        epochs = tags.get(EPOCHS, "0")
        return cls(run.info.run_id, run.info.status, int(epochs) if epochs.isdigit() else 0, tags.get(HISTORY_SHA, ""))


@dataclass
class _Copy:
    """One run folder's copy in MLflow, as this process sends it."""

    path: Path
    naming: Naming
    params: dict[str, str] | None  # still to send (with the first batch this process sends)
    run_id: str | None = None
    logged: int = 0  # the epochs MLflow holds
    rows: Rows = ()
    replace: str | None = None  # an MLflow run of an earlier attempt, deleted when this one is created
    reopen: bool = False  # a run continued: its MLflow run is RUNNING again
    ended: bool = False
    sent_at: float = -math.inf
    columns: dict[str, Column] = field(default_factory=dict)


def _guarded(method: F) -> F:
    """Run an event unless the copy has stopped; an error of MLflow's (any) stops it, never the training."""

    @functools.wraps(method)
    def guarded(self: MlflowTracker, *args: Any, **kwargs: Any) -> Any:
        if self._failure is not None:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as err:  # the copy's failure, whatever raised it: the run folders go on being written
            self._failure = f"MLflow ({self.store.uri}): {why(err)}"
            return None

    return guarded  # type: ignore[return-value]


class MlflowTracker(RunObserver):
    """Copies run folders to :attr:`store` as they are written (see the module docstring)."""

    def __init__(self, store: MlflowStore, pacer: Pacer | None = None) -> None:
        self.store = store
        self.pacer = pacer or Pacer()
        self._copies: dict[str, _Copy] = {}
        self._parent: str | None = None  # the current sweep's MLflow run
        self._known: dict[str, Found] | None = None  # its children by key when it started (None: search each)
        self._failure: str | None = None

    @property
    def failure(self) -> str | None:
        return self._failure

    def note_failure(self, message: str) -> None:
        self._failure = self._failure or message

    # --- sweeps -------------------------------------------------------------------------------------------------
    @_guarded
    def sweep_started(self, folder: Path, spec: dict[str, Any]) -> None:
        parent = self.attach_sweep(folder, spec)
        self.store.client.update_run(parent, status="RUNNING")
        tags = {"emabench.engine": str(spec.get("engine", "")), "emabench.jobs": str(spec.get("jobs", ""))}
        self.log(parent, tags=tags)

    def attach_sweep(self, folder: Path, spec: dict[str, Any]) -> str:
        """The sweep's parent run (found, or created with the grid as params); its runs become its children."""
        key = folder_key(folder)
        found = self.search(f"tags.`{KEY}` = '{key}'")
        if found:
            self._parent = found[0].info.run_id
            self._known = {r.data.tags[KEY]: Found.of(r) for r in self.search(f"tags.`{PARENT}` = '{self._parent}'")}
            return self._parent
        tags = {KEY: key, FOLDER: os.path.abspath(folder), KIND: "sweep"}
        run = self.store.client.create_run(self.store.experiment_id, run_name=Path(folder).name, tags=tags)
        grid = {f"grid.{k}": _json(v) for k, v in dict(spec.get("grid", {})).items()}
        self.log(run.info.run_id, params=grid | {"mode": str(spec.get("mode", "runs"))})
        self._parent, self._known = run.info.run_id, {}
        return self._parent

    def detach_sweep(self) -> None:
        """Runs copied from now on are in no sweep (the report's runs outside one)."""
        self._parent, self._known = None, None

    def mlflow_run(self, path: str | Path) -> str | None:
        """The MLflow run of the run folder at ``path``: this process's copy, else one from before."""
        copy = self._copies.get(folder_key(path))
        if copy is not None and copy.run_id is not None:
            return copy.run_id
        found = self._earlier(folder_key(path))
        return found.run_id if found is not None else None

    @_guarded
    def sweep_ended(self, folder: Path, statuses: Sequence[str]) -> None:
        if self._parent is None:
            return
        counts = {s: sum(1 for x in statuses if x == s) for s in set(statuses)}
        tags = {f"emabench.runs.{status}": str(n) for status, n in counts.items()}
        self.log(self._parent, tags=tags)
        failed, stopped = "failed" in counts, bool(set(counts) - {"completed", "diverged", "skipped", "failed"})
        self.store.client.set_terminated(self._parent, "FAILED" if failed else "KILLED" if stopped else "FINISHED")

    # --- a run's lifecycle --------------------------------------------------------------------------------------
    @_guarded
    def started(self, run: Any, config: Config) -> None:
        key = folder_key(run.path)
        before = self._copies.get(key)
        if before is not None and before.run_id is not None:  # started again in this process (a Ray retry)
            earlier: str | None = before.run_id
        else:
            found = self._earlier(key)
            earlier = found.run_id if found is not None else None
        self._copies[key] = _Copy(Path(run.path), Naming.of(config), params(config), replace=earlier)

    @_guarded
    def resumed(self, run: Any, rows: Rows) -> None:
        copy = self._copy(run)
        copy.rows, copy.ended, copy.reopen = rows, False, copy.run_id is not None

    @_guarded
    def flushed(self, run: Any, rows: Rows) -> None:
        copy = self._copy(run)
        copy.rows = rows
        if not copy.ended and self.pacer.allows(copy.sent_at):
            self._send(copy)

    @_guarded
    def ended(self, run: Any, status: str) -> None:
        self._end(self._copy(run), run, status)

    @_guarded
    def figure_saved(self, run: Any, name: str) -> None:
        copy = self._copies.get(folder_key(run.path))
        if copy is not None and copy.ended and copy.run_id is not None:  # drawn after the run ended (emabench run)
            self.store.client.log_artifact(copy.run_id, str(Path(run.path) / name))

    @_guarded
    def existing(self, run: Any) -> None:
        status = run.status
        if status not in STATUS:  # incomplete or damaged: nothing whole to copy
            return
        found = self._earlier(folder_key(run.path))
        sha = _history_sha(run)
        if found is not None and found.status == STATUS[status] and found.history_sha256 == sha and sha:
            return  # the copy is whole
        rows = run.read_history().to_dict("records") if (Path(run.path) / HISTORY).is_file() else []
        config = run.read_config()
        copy = _Copy(Path(run.path), Naming.of(config), params(config), rows=rows)
        if found is not None and found.status != "FINISHED" and found.epochs <= len(rows):
            copy.run_id, copy.logged, copy.reopen = found.run_id, found.epochs, True  # continue a partial copy
        elif found is not None:
            copy.replace = found.run_id  # a copy of another history: made again
        self._copies[folder_key(run.path)] = copy
        self._end(copy, run, status)

    @_guarded
    def flush(self) -> None:
        for copy in self._copies.values():
            if not copy.ended and copy.rows and rows_after(copy.rows[-1:], copy.logged):
                self._send(copy)

    # --- sending ------------------------------------------------------------------------------------------------
    def _copy(self, run: Any) -> _Copy:
        """This process's copy of ``run``; a run it has not seen start continues its MLflow run, if any."""
        key = folder_key(run.path)
        copy = self._copies.get(key)
        if copy is None:
            config = run.read_config()
            copy = _Copy(Path(run.path), Naming.of(config), params(config))
            found = self._earlier(key)
            if found is not None:
                copy.run_id, copy.logged, copy.reopen = found.run_id, found.epochs, True
            self._copies[key] = copy
        return copy

    def _end(self, copy: _Copy, run: Any, status: str) -> None:
        tags = {STATE: status, STOP: status}
        if status in ("completed", "diverged"):
            tags |= {STOP: str(run.done_info().get("stop_reason", "")), HISTORY_SHA: _history_sha(run)}
        self._send(copy, tags)
        started, client = time.perf_counter(), self.store.client
        for path in run.copied_files():
            client.log_artifact(copy.run_id, str(path))
        client.set_terminated(copy.run_id, STATUS[status])
        copy.ended = True
        self.pacer.add(time.perf_counter() - started)

    def _send(self, copy: _Copy, tags: dict[str, str] | None = None) -> None:
        """The rows MLflow lacks, the params if this process has not sent them, and ``tags``: one call (more only
        past MLflow's limits on a batch)."""
        started, client = time.perf_counter(), self.store.client
        if copy.run_id is None:
            self._create(copy)
        elif copy.reopen:
            client.update_run(copy.run_id, status="RUNNING")
        copy.reopen = False
        rows = rows_after(copy.rows, copy.logged)
        tags = dict(tags or {})
        if rows:
            tags[EPOCHS] = str(epoch_of(rows[-1]))
        self.log(copy.run_id, self._metrics(copy, rows), copy.params or {}, tags)  # type: ignore[arg-type]
        copy.params, copy.sent_at = None, time.monotonic()
        copy.logged = epoch_of(rows[-1]) if rows else copy.logged
        self.pacer.add(time.perf_counter() - started)

    def _create(self, copy: _Copy) -> None:
        client = self.store.client
        if copy.replace is not None:
            with contextlib.suppress(Exception):  # deleted already (by hand, or another attempt): nothing to replace
                client.delete_run(copy.replace)
        tags = {KEY: folder_key(copy.path), FOLDER: os.path.abspath(copy.path), KIND: "run", STATE: "running"}
        if self._parent is not None and _in_sweep(copy.path):
            tags[PARENT] = self._parent
        run = client.create_run(self.store.experiment_id, run_name=copy.path.name, tags=tags)
        copy.run_id, copy.logged, copy.replace = run.info.run_id, 0, None

    def _metrics(self, copy: _Copy, rows: Rows) -> list[Any]:
        from mlflow.entities import Metric

        if rows and not copy.columns:
            copy.columns = copy.naming.columns(rows[0])
        stamp = now_ms()
        return [
            Metric(column.key, float(row[name]), stamp, epoch_of(row))
            for row in rows
            for name, column in copy.columns.items()
            if isinstance(row.get(name), (int, float))
        ]

    def log(
        self,
        run_id: str,
        metrics: list[Any] | None = None,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Params, metrics and tags of one MLflow run, in as few ``log_batch`` calls as MLflow's limits allow."""
        from mlflow.entities import Param, RunTag

        entries = [Param(k, v) for k, v in (params or {}).items()]
        labels = [RunTag(k, v) for k, v in (tags or {}).items()]
        for batch in batches(metrics or [], entries, labels):
            self.store.client.log_batch(run_id, metrics=batch[0], params=batch[1], tags=batch[2])

    def _earlier(self, key: str) -> Found | None:
        """The folder's MLflow run from before this process: in the sweep's children, else by a search."""
        if self._known is not None:
            return self._known.get(key)
        found = self.search(f"tags.`{KEY}` = '{key}'")
        return Found.of(found[0]) if found else None

    def search(self, where: str) -> list[Any]:
        """Every active run of the experiment matching ``where`` (MLflow's search syntax), page after page."""
        client, runs, token = self.store.client, [], None
        while True:
            page = client.search_runs([self.store.experiment_id], where, max_results=1000, page_token=token)
            runs += list(page)
            token = page.token
            if not token:
                return runs


def batches(metrics: list[Any], params: list[Any], tags: list[Any]) -> list[tuple[list[Any], list[Any], list[Any]]]:
    """``log_batch`` calls within MLflow's limits (100 params, 100 tags, 1000 entries a call); the tags go last, so
    a tag such as the epochs held is written with (or after) what it describes."""
    out: list[tuple[list[Any], list[Any], list[Any]]] = []
    while True:
        chunk, params = params[:MAX_PARAMS], params[MAX_PARAMS:]
        room = MAX_ENTITIES - len(chunk)
        values, metrics = metrics[:room], metrics[room:]
        out.append((values, chunk, []))
        if not params and not metrics:
            break
    last = out[-1]
    if len(last[0]) + len(last[1]) + len(tags) <= MAX_ENTITIES and len(tags) <= MAX_TAGS:
        out[-1] = (last[0], last[1], tags)
    else:
        out += [([], [], tags[i : i + MAX_TAGS]) for i in range(0, len(tags), MAX_TAGS)]
    return [b for b in out if any(b)]


def _history_sha(run: Any) -> str:
    record = run.done_record() if run.is_done else None
    return str((record or {}).get("sha256", {}).get(HISTORY, ""))


def _in_sweep(path: Path) -> bool:
    from emabench.runs.sweep_folder import is_sweep_folder

    return is_sweep_folder(Path(path).parent)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str)


def now_ms() -> int:
    """A metric's timestamp: milliseconds since the epoch."""
    return int(time.time() * 1000)
