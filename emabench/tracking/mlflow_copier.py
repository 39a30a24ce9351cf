"""Run folders copied to MLflow (:class:`MlflowCopier`): what the MLflow sender process does with the events it gets
(:mod:`.mlflow_tracker`), and what ``report --track mlflow`` uses to find and complete the copies.

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

A run's new rows are sent in one ``log_batch`` (more only past MLflow's limits on a batch), at most every
:data:`RUN_EVERY_S` while it trains; its end sends the rest. The first error stops the copy (``failure``).
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
from emabench.runs.folder import RunFolder
from emabench.runs.layout import HISTORY
from emabench.tracking.mlflow_store import MlflowStore, why
from emabench.tracking.names import Column, Naming, epoch_of, params, rows_after

STATUS = {"completed": "FINISHED", "diverged": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}
RUN_EVERY_S = 5.0  # a training run's rows go at most this often (one call for what came meanwhile)
MAX_PARAMS, MAX_TAGS, MAX_ENTITIES = 100, 100, 1000  # MLflow's limits on one log_batch
KEY, FOLDER, EPOCHS, STATE = "emabench.key", "emabench.folder", "emabench.epochs", "emabench.status"
STOP, HISTORY_SHA, KIND, PARENT = (
    "emabench.stop_reason",
    "emabench.history_sha256",
    "emabench.kind",
    "mlflow.parentRunId",
)
Rows = list[dict[str, Any]]

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
    rows: Rows = field(default_factory=list)  # the rows known, oldest first
    replace: str | None = None  # an MLflow run of an earlier attempt, deleted when this one is created
    reopen: bool = False  # a run continued: its MLflow run is RUNNING again
    ended: bool = False
    sent_at: float = -math.inf
    columns: dict[str, Column] = field(default_factory=dict)

    @property
    def behind(self) -> bool:
        return bool(self.rows) and epoch_of(self.rows[-1]) > self.logged


def _guarded(method: F) -> F:
    """Apply an event unless the copy has stopped; an error of MLflow's (any) stops it, never the caller."""

    @functools.wraps(method)
    def guarded(self: MlflowCopier, *args: Any, **kwargs: Any) -> Any:
        if self.failure is not None:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as err:  # the copy's failure, whatever raised it: the run folders go on being written
            self.failure = f"MLflow ({self.store.uri}): {why(err)}"
            return None

    return guarded  # type: ignore[return-value]


class MlflowCopier:
    """Copies run folders to ``store`` (see the module docstring); every event is guarded."""

    def __init__(self, store: MlflowStore) -> None:
        self.store = store
        self.failure: str | None = None
        self._copies: dict[str, _Copy] = {}
        self._parent: str | None = None  # the current sweep's MLflow run
        self._known: dict[str, Found] | None = None  # its children by key when it started (None: search each)

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

    @_guarded
    def sweep_ended(self, folder: Path, statuses: Sequence[str]) -> None:
        if self._parent is None:
            return
        counts = {s: sum(1 for x in statuses if x == s) for s in set(statuses)}
        self.log(self._parent, tags={f"emabench.runs.{status}": str(n) for status, n in counts.items()})
        failed, stopped = "failed" in counts, bool(set(counts) - {"completed", "diverged", "skipped", "failed"})
        self.store.client.set_terminated(self._parent, "FAILED" if failed else "KILLED" if stopped else "FINISHED")

    # --- a run's lifecycle --------------------------------------------------------------------------------------
    @_guarded
    def started(self, path: Path, config: Config) -> None:
        key = folder_key(path)
        before = self._copies.get(key)
        if before is not None and before.run_id is not None:  # started again by this process (a Ray retry)
            earlier: str | None = before.run_id
        else:
            found = self._earlier(key)
            earlier = found.run_id if found is not None else None
        self._copies[key] = _Copy(Path(path), Naming.of(config), params(config), replace=earlier)

    @_guarded
    def resumed(self, path: Path, rows: Rows) -> None:
        copy = self._copy(path)
        copy.rows, copy.ended, copy.reopen = list(rows), False, copy.run_id is not None

    @_guarded
    def add_rows(self, path: Path, rows: Rows) -> None:
        """Rows written to the folder since the last ones this copy was given (sent by :meth:`send_due`)."""
        copy = self._copy(path)
        copy.rows += rows_after(rows, epoch_of(copy.rows[-1]) if copy.rows else 0)

    @_guarded
    def send_due(self) -> None:
        """Send the rows of every training run that last sent :data:`RUN_EVERY_S` ago or more."""
        now = time.monotonic()
        for copy in self._copies.values():
            if not copy.ended and copy.behind and now - copy.sent_at >= RUN_EVERY_S:
                self._send(copy)

    @_guarded
    def ended(self, path: Path, status: str) -> None:
        self._end(self._copy(path), RunFolder(path), status)

    @_guarded
    def figure_saved(self, path: Path, name: str) -> None:
        copy = self._copies.get(folder_key(path))
        if copy is not None and copy.ended and copy.run_id is not None:  # drawn after the run ended (emabench run)
            self.store.client.log_artifact(copy.run_id, str(Path(path) / name))

    @_guarded
    def existing(self, path: Path) -> None:
        """Copy the folder as it is on disk, unless MLflow's copy is whole (finished, the same history)."""
        run = RunFolder(path)
        status = run.status
        if status not in STATUS:  # incomplete or damaged: nothing whole to copy
            return
        found = self._earlier(folder_key(path))
        sha = _history_sha(run)
        if found is not None and found.status == STATUS[status] and found.history_sha256 == sha and sha:
            return
        rows = run.read_history().to_dict("records") if (Path(path) / HISTORY).is_file() else []
        config = run.read_config()
        copy = _Copy(Path(path), Naming.of(config), params(config), rows=rows)
        if found is not None and found.status != "FINISHED" and found.epochs <= len(rows):
            copy.run_id, copy.logged, copy.reopen = found.run_id, found.epochs, True  # continue a partial copy
        elif found is not None:
            copy.replace = found.run_id  # a copy of another history: made again
        self._copies[folder_key(path)] = copy
        self._end(copy, run, status)

    @_guarded
    def flush(self) -> None:
        for copy in self._copies.values():
            if not copy.ended and copy.behind:
                self._send(copy)

    def mlflow_run(self, path: str | Path) -> str | None:
        """The MLflow run of the run folder at ``path``: this process's copy, else one from before."""
        copy = self._copies.get(folder_key(path))
        if copy is not None and copy.run_id is not None:
            return copy.run_id
        found = self._earlier(folder_key(path))
        return found.run_id if found is not None else None

    # --- sending ------------------------------------------------------------------------------------------------
    def _copy(self, path: Path) -> _Copy:
        """This process's copy of the folder; one it has not seen start continues the folder's MLflow run, if any."""
        key = folder_key(path)
        copy = self._copies.get(key)
        if copy is None:
            config = RunFolder(path).read_config()
            copy = _Copy(Path(path), Naming.of(config), params(config))
            found = self._earlier(key)
            if found is not None:
                copy.run_id, copy.logged, copy.reopen = found.run_id, found.epochs, True
            self._copies[key] = copy
        return copy

    def _end(self, copy: _Copy, run: RunFolder, status: str) -> None:
        tags = {STATE: status, STOP: status}
        if status in ("completed", "diverged"):
            tags |= {STOP: str(run.done_info().get("stop_reason", "")), HISTORY_SHA: _history_sha(run)}
        self._send(copy, tags)
        client = self.store.client
        for path in run.copied_files():
            client.log_artifact(copy.run_id, str(path))
        client.set_terminated(copy.run_id, STATUS[status])
        copy.ended = True

    def _send(self, copy: _Copy, tags: dict[str, str] | None = None) -> None:
        """The rows MLflow lacks, the params if this process has not sent them, and ``tags``: one call (more only
        past MLflow's limits on a batch)."""
        client = self.store.client
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


def now_ms() -> int:
    """A metric's timestamp: milliseconds since the epoch."""
    return int(time.time() * 1000)


def _history_sha(run: RunFolder) -> str:
    record = run.done_record() if run.is_done else None
    return str((record or {}).get("sha256", {}).get(HISTORY, ""))


def _in_sweep(path: Path) -> bool:
    from emabench.runs.sweep_folder import is_sweep_folder

    return is_sweep_folder(Path(path).parent)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str)
