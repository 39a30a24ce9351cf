"""``--track mlflow``: run folders copied to MLflow by a process of its own (:class:`MlflowTracker`).

The observer (:class:`MlflowTracker`) lives in every process that writes run folders — this one, each ``--jobs``
worker, the Ray driver — and turns each event into a small message (a history row is a few numbers) put on a queue
that never blocks. One sender process, started when the tracker is opened, takes the messages in order and applies
them with :class:`~emabench.tracking.mlflow_copier.MlflowCopier`: one MLflow client and one writer to the store for
the whole sweep, whichever engine trains it, and rows that came meanwhile are sent in one ``log_batch`` per run. So
training never waits for MLflow — a slow server, a busy database, or MLflow's own cost of ~0.2 ms of CPU per value
written into a SQLite store (measured here; a 40-run sweep writes ~55,000) — and on a machine with a core to spare
the copy costs the training almost nothing.

The process that opened the tracker owns the sender: :meth:`MlflowTracker.flush` (at the end of the work, see
:func:`emabench.runs.observe.observing`) waits until the sender has applied every message and says whether the copy
failed (:attr:`MlflowTracker.failure`). The sender ignores Ctrl-C (it finishes the copy of what was trained) and
ends when its owner does.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emabench.config import Config
from emabench.runs.observe import Rows, RunObserver
from emabench.tracking.mlflow_copier import MlflowCopier
from emabench.tracking.mlflow_store import MlflowStore, why
from emabench.tracking.names import epoch_of, rows_after

POLL_S = 0.5  # how often the sender looks for messages (and whether its owner is still there) when idle
SENDER_GONE = "the MLflow sender process ended unexpectedly (exit code {})"


class MlflowTracker(RunObserver):
    """The observer side: events to the sender (see the module docstring). Picklable for a spawned worker."""

    def __init__(self, store: MlflowStore) -> None:
        context = multiprocessing.get_context(_start_method())
        self.store = store
        self._inbox: Any = context.Queue()
        self._replies: Any = context.Queue()
        self._owner = os.getpid()
        self._sent: dict[str, int] = {}  # run folder → the last epoch put on the queue by this process
        self._failure: str | None = None
        self._sender: Any = context.Process(
            target=serve, args=(store, self._inbox, self._replies, self._owner), daemon=True, name="emabench-mlflow"
        )
        self._sender.start()

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_sender": None, "_sent": {}}

    @property
    def failure(self) -> str | None:
        return self._failure

    def note_failure(self, message: str) -> None:
        self._failure = self._failure or message

    def sweep_started(self, folder: Path, spec: dict[str, Any]) -> None:
        self._call("sweep_started", str(folder), spec)  # before any of its runs, whichever process writes them

    def started(self, run: Any, config: Config) -> None:
        self._sent[str(run.path)] = 0
        self._put("started", str(run.path), config.to_dict())

    def resumed(self, run: Any, rows: Rows) -> None:
        self._sent[str(run.path)] = epoch_of(rows[-1]) if rows else 0
        self._put("resumed", str(run.path), [dict(r) for r in rows])

    def flushed(self, run: Any, rows: Rows) -> None:
        new = rows_after(rows, self._sent.get(str(run.path), 0))
        if new:
            self._sent[str(run.path)] = epoch_of(new[-1])
            self._put("add_rows", str(run.path), [dict(r) for r in new])

    def ended(self, run: Any, status: str) -> None:
        self._put("ended", str(run.path), status)

    def figure_saved(self, run: Any, name: str) -> None:
        self._put("figure_saved", str(run.path), name)

    def existing(self, run: Any) -> None:
        self._put("existing", str(run.path))

    def sweep_ended(self, folder: Path, statuses: Sequence[str]) -> None:
        self._put("sweep_ended", str(folder), list(statuses))

    def flush(self) -> None:
        """In the owner: wait until the sender has applied every message (elsewhere: nothing to wait for)."""
        self._call("flush")

    def close(self) -> None:
        """In the owner: end the sender once it has applied every message (it also ends with its owner)."""
        if os.getpid() == self._owner and self._sender is not None:
            if self._sender.is_alive():
                self._put("close")
                self._sender.join(timeout=60)
            self._sender = None

    def _put(self, *message: Any) -> None:
        self._inbox.put(message)

    def _call(self, *message: Any) -> None:
        """Put ``message`` and, in the owner, wait until the sender has applied it (and keep its failure, if any)."""
        owner = os.getpid() == self._owner and self._sender is not None
        self._put(*message, owner)
        while owner:
            try:
                failure = self._replies.get(timeout=POLL_S)
            except queue.Empty:
                if self._sender.is_alive():
                    continue
                failure = SENDER_GONE.format(self._sender.exitcode)
            if failure:
                self.note_failure(failure)
            return


def serve(store: MlflowStore, inbox: Any, replies: Any, owner: int) -> None:
    """The sender: apply the messages in order, then send the runs' rows that are due; reply to calls. The store is
    opened on the first message (a sweep's start is acknowledged first: the sweep goes on while MLflow opens)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops training; the copy of what was trained goes on
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the CLI's handler, inherited through the fork
    copier = MlflowCopier(store)
    opened = False
    while True:
        try:
            messages = [inbox.get(timeout=POLL_S)]
        except queue.Empty:
            if os.getppid() != owner:  # the owner is gone without saying goodbye
                return
            continue
        with contextlib.suppress(queue.Empty):
            while len(messages) < 10_000:
                messages.append(inbox.get_nowait())
        if not opened and any(m[0] not in ("flush", "close") for m in messages):  # something to copy: open
            if messages[0][0] == "sweep_started" and messages[0][-1]:
                replies.put(None)  # received: what the sweep's processes send comes after it
                messages[0] = (*messages[0][:-1], False)
            opened = True
            _open(store, copier)
        for kind, *args in messages:
            if kind == "close":
                copier.flush()
                return
            try:
                _apply(copier, kind, args, replies)
            except Exception as err:  # a message it cannot apply stops the copy, not the sender (calls are answered)
                copier.failure = copier.failure or f"MLflow ({store.uri}): {why(err)}"
        copier.send_due()


def _open(store: MlflowStore, copier: MlflowCopier) -> None:
    """Open the store (import MLflow, create the database and experiment if need be); a failure stops the copy."""
    try:
        if not store.experiment_id:
            store.open()
    except Exception as err:  # the InputError of the check, made while runs train: the copy's failure
        copier.failure = f"MLflow ({store.uri}): {err}"


def _apply(copier: MlflowCopier, kind: str, args: list[Any], replies: Any) -> None:
    if kind in ("sweep_started", "flush"):
        *args, reply = args
        try:
            if kind == "flush":
                copier.flush()
            else:
                copier.sweep_started(Path(args[0]), args[1])
        finally:
            if reply:  # the owner waits for it, whatever happened
                replies.put(copier.failure)
        return
    path = Path(args[0])
    if kind == "started":
        copier.started(path, Config.model_validate(args[1]))
    elif kind in ("resumed", "add_rows", "ended", "figure_saved"):
        getattr(copier, kind)(path, *args[1:])
    elif kind == "existing":
        copier.existing(path)
    elif kind == "sweep_ended":
        copier.sweep_ended(path, args[1])


def _start_method() -> str:
    """Fork where it is safe (Linux, CUDA untouched): the sender starts at once, with MLflow imported."""
    torch = sys.modules.get("torch")
    cuda = torch is not None and torch.cuda.is_initialized()
    return "fork" if sys.platform.startswith("linux") and not cuda else "spawn"
