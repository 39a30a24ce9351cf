"""A sweep's units of work: what every unit of one sweep shares (:class:`SweepWork`: its folder, engine, stop request,
and how a unit is claimed, i.e. locked, just before it trains) and the picklable entry point of worker processes
(:func:`stack_worker`; Ray tasks have their own, :mod:`emabench.runs.ray_task`). A unit trains through
:func:`emabench.runs.unit.train_stack`.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from emabench.config import Config
from emabench.runs import observe
from emabench.runs.folder import RunFolder
from emabench.runs.interrupts import StopRequest
from emabench.runs.lock import RunLock
from emabench.runs.plan import Engine, Unit, plan_units
from emabench.runs.unit import EpochCallback, RunOutcome, StopCheck, train_stack

# --- units of a sweep ---------------------------------------------------------------------------------------------

Claimed = tuple[Unit, list[RunLock]]


@dataclass(frozen=True)
class SweepWork:
    """What every unit of one sweep shares, whichever executor trains it."""

    folder: Path
    engine: Engine
    force: bool
    stop: StopCheck | None
    checkpoint_every: int
    plots: bool = False

    def folders(self, unit: Unit) -> list[RunFolder]:
        return [RunFolder.for_config(c, self.folder) for c in unit.configs]

    def stopping(self) -> bool:
        return self.stop is not None and self.stop()

    def not_started(self, unit: Unit) -> list[RunOutcome]:
        return [RunOutcome(f, "not_started", 0, "", 0.0) for f in self.folders(unit)]

    def claim(self, unit: Unit, outcomes: list[RunOutcome]) -> list[Claimed]:
        """Lock the unit's runs just before training them; runs another process holds or has finished meanwhile
        are recorded in ``outcomes`` and left out, and the rest re-planned from what is on disk now. If anything
        goes wrong on the way (no lock file can be opened, ...), the locks taken so far are released (leaving no
        folder behind) before the error goes on."""
        locks: dict[str, RunLock] = {}
        try:
            for run_folder in self.folders(unit):
                lock = run_folder.try_lock()
                if lock is None:
                    outcomes.append(RunOutcome(run_folder, "locked", 0, "", 0.0))
                elif run_folder.is_done and not self.force:
                    lock.release()
                    outcomes.append(RunOutcome.skipped(run_folder))
                else:
                    locks[run_folder.name] = lock
            mine = [c for c, f in zip(unit.configs, self.folders(unit)) if f.name in locks]
            units = plan_units(mine, self.folder, self.engine, 1, self.force)
        except BaseException:
            for lock in locks.values():
                lock.release()
            raise
        return [(u, [locks[f.name] for f in self.folders(u)]) for u in units]

    def train(self, unit: Unit, on_epoch: EpochCallback | None = None) -> list[RunOutcome]:
        """Train a claimed unit in this process."""
        return train_stack(
            unit.configs,
            self.folders(unit),
            on_epoch,
            stop=self.stop,
            checkpoint_every=self.checkpoint_every,
            resume=unit.resume,
            plots=self.plots,
        )

    def arguments(self, unit: Unit) -> tuple[list[dict[str, Any]], str, bool, int, bool]:
        """:func:`stack_worker`'s picklable arguments for ``unit`` (before ``stop``)."""
        return [c.to_dict() for c in unit.configs], str(self.folder), unit.resume, self.checkpoint_every, self.plots


# --- in a worker process -------------------------------------------------------------------------------------------

_WORKER_STOP: StopRequest | None = None


def init_worker(shared: Any, threads: int, observer: observe.RunObserver | None = None) -> None:
    """In each worker process: its own deferred Ctrl-C/SIGTERM, plus the parent's request through ``shared``; the
    parent's run observer (:mod:`emabench.runs.observe`), so the runs this worker writes are reported from here."""
    global _WORKER_STOP
    observe.install(observer)
    torch.set_num_threads(threads)
    _WORKER_STOP = StopRequest(shared=shared)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _WORKER_STOP.handle)


def stack_worker(
    configs: list[dict[str, Any]],
    folder: str,
    resume: bool,
    checkpoint_every: int,
    plots: bool,
    stop: StopCheck | None = None,
) -> tuple[list[RunOutcome], str | None]:
    """One unit in a worker process: picklable arguments in, outcomes out, with the first failure of this process's
    run observer (its copy stops there; the parent reports it). ``stop`` defaults to the worker process's own
    request (:func:`init_worker`)."""
    stack = [Config.model_validate(c) for c in configs]
    if stop is None and _WORKER_STOP is not None:
        stop = _WORKER_STOP.is_set
    folders = [RunFolder.for_config(c, Path(folder)) for c in stack]
    observer = observe.current()
    try:
        outcomes = train_stack(stack, folders, stop=stop, checkpoint_every=checkpoint_every, resume=resume, plots=plots)
    finally:
        observer.flush()  # the unit's last rows before the parent hears it ended (the pool may end this process)
    return outcomes, observer.failure
