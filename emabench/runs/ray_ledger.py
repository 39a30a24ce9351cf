"""The driver's mailbox in a Ray sweep: what every task has sent, and where a retried task starts again.

A :class:`Ledger` lives in one small Ray actor (no CPU) pinned to the driver's node, so it is lost only with the
driver. Tasks talk to it; the driver drains it:

- :meth:`Ledger.begin` — a task (first attempt or a retry after its node was lost) asks where to start: which of its
  runs are still to train and, for those, the latest checkpoint the driver received (``checkpoint.pt`` 's bytes);
- :meth:`Ledger.post` — a task sends its runs' lifecycle calls, compact (:data:`WireEvent`: new history rows only,
  checkpoints as the bytes of ``checkpoint.pt``, made by the task); the answer says whether the sweep is stopping;
- :meth:`Ledger.drain` — the driver collects the same calls expanded to the arguments of
  :class:`~emabench.runs.folder.RunFolder`'s methods (full history rows, checkpoint bytes to write as they are), and
  applies them to the run folders it alone writes.

Each task attempt is numbered; calls from an attempt that a retry has replaced are dropped, so a run's folder only
ever follows one attempt. Nothing here imports Ray or torch: the actor process stays light, and the class is tested
as plain Python.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

# A task's calls, as sent: (run index in the unit, kind, payload), kind one of start (payload None), resume (the
# checkpoint's epoch), row (one history row), checkpoint (checkpoint.pt's bytes), finish ((extra, info)),
# interrupt (info).
WireEvent = tuple[int, str, Any]
# What a drain returns, in order: ("call", unit key, run index, RunFolder method, its arguments) for the runs' folders
# (methods: start, resume, write_history, write_checkpoint_bytes, finish, interrupt; the driver adds the config to
# start), and ("begin", unit key, attempt, node id) each time an attempt of a unit starts.
Drained = tuple[Any, ...]
Resumed = tuple[bytes, list[dict[str, Any]]]  # a checkpoint.pt read by the driver, and the history inside it


@dataclass
class _Run:
    """The driver's view of one run of a unit: its history so far, its latest checkpoint, whether it finished."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: bytes | None = None  # the latest checkpoint.pt (its history inside)
    finished: bool = False


@dataclass
class _Unit:
    runs: list[_Run]
    attempt: int = 0


class Ledger:
    """One sweep's mailbox between its Ray tasks and its driver (see the module's docstring)."""

    def __init__(self) -> None:
        self._units: dict[int, _Unit] = {}
        self._outbox: list[Drained] = []
        self._stopping = False
        self.traffic = {"to_tasks": 0, "from_tasks": 0, "posts": 0, "begins": 0}

    # --- the driver's side ------------------------------------------------------------------------------------------
    def register(
        self, key: int, runs: int, checkpoints: list[tuple[bytes, list[dict[str, Any]]]] | None = None
    ) -> None:
        """A unit of ``runs`` runs about to be submitted; ``checkpoints``: what it resumes from, one per run as read
        from its folder (``checkpoint.pt`` 's bytes, and the history inside)."""
        unit = _Unit([_Run() for _ in range(runs)])
        for run, (data, history) in zip(unit.runs, checkpoints or []):
            run.checkpoint, run.rows = data, [dict(row) for row in history]
        self._units[key] = unit

    def drain(self) -> list[Drained]:
        """Everything received since the last drain, in order."""
        drained, self._outbox = self._outbox, []
        return drained

    def forget(self, key: int) -> None:
        """The unit's task has ended for good: drop what was kept for a retry."""
        self._units.pop(key, None)

    def stop(self) -> None:
        """Ask every task to stop after its current epoch."""
        self._stopping = True

    def stopping(self) -> bool:
        return self._stopping

    def counters(self) -> dict[str, int]:
        """Pickled bytes received from tasks (their calls) and sent to them (where to start), and call counts."""
        return dict(self.traffic)

    # --- the tasks' side --------------------------------------------------------------------------------------------
    def begin(self, key: int, node: str) -> dict[str, Any]:
        """A new attempt of unit ``key`` starts on ``node``: its number, whether the sweep is stopping, the runs still
        to train (indices) and their latest checkpoints (bytes; none for a fresh start)."""
        unit = self._units[key]
        unit.attempt += 1
        self._outbox.append(("begin", key, unit.attempt, node))
        todo = [i for i, run in enumerate(unit.runs) if not run.finished]
        checkpoints = {i: unit.runs[i].checkpoint for i in todo if unit.runs[i].checkpoint is not None}
        reply = {"attempt": unit.attempt, "stop": self._stopping, "runs": todo, "checkpoints": checkpoints}
        self.traffic["begins"] += 1
        self.traffic["to_tasks"] += len(pickle.dumps(reply, protocol=5))
        return reply

    def post(self, key: int, attempt: int, events: list[WireEvent]) -> bool:
        """The calls of one flush of attempt ``attempt``; returns whether the task should stop (the sweep is
        stopping, or a retry has replaced this attempt: its calls are dropped)."""
        self.traffic["posts"] += 1
        self.traffic["from_tasks"] += len(pickle.dumps(events, protocol=5))
        unit = self._units.get(key)
        if unit is None or attempt != unit.attempt:
            return True
        pending: dict[int, bool] = {}  # runs with rows not yet handed on, in order
        for index, kind, payload in events:
            run = unit.runs[index]
            if kind == "row":
                run.rows.append(payload)
                pending[index] = True
                continue
            if pending.pop(index, False):
                self._call(key, index, "write_history", list(run.rows))
            self._apply(key, index, run, kind, payload)
        for index in pending:
            self._call(key, index, "write_history", list(unit.runs[index].rows))
        return self._stopping

    def _apply(self, key: int, index: int, run: _Run, kind: str, payload: Any) -> None:
        if kind == "start":
            run.rows, run.checkpoint = [], None
            self._call(key, index, "start")
        elif kind == "resume":  # payload: the checkpoint's epoch; later rows of a lost attempt are dropped
            run.rows = run.rows[:payload]
            self._call(key, index, "resume", list(run.rows))
        elif kind == "checkpoint":
            run.checkpoint = payload
            self._call(key, index, "write_checkpoint_bytes", run.checkpoint)
        elif kind == "finish":
            extra, info = payload
            run.finished = True
            self._call(key, index, "finish", list(run.rows), extra, info)
        elif kind == "interrupt":
            self._call(key, index, "interrupt", payload)
        else:
            raise ValueError(f"unknown event {kind!r} from a task of unit {key}")

    def _call(self, key: int, index: int, method: str, *args: Any) -> None:
        self._outbox.append(("call", key, index, method, args))
