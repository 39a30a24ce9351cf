"""Training one unit of work: one stacked model of runs, each written into its own run folder.

:func:`train_stack` builds the trainer (fresh, or from the folders' checkpoints) and calls each
:class:`~emabench.runs.folder.RunFolder`'s lifecycle as the epochs come: a row per epoch (so a killed run keeps every
finished epoch), ``finish`` on a replica's last epoch, a checkpoint every ``checkpoint_every`` epochs, ``interrupt``
when asked to stop. :class:`SweepWork` is what every unit of one sweep shares (and how a unit is claimed, i.e.
locked, just before it trains); :func:`stack_worker` is the picklable entry point of worker processes (Ray tasks
have their own, :mod:`emabench.runs.ray_task`).
"""

from __future__ import annotations

import contextlib
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from emabench import __version__
from emabench.config import Config
from emabench.errors import EmabenchError, RunError, one_line
from emabench.runs import observe
from emabench.runs.folder import RunFolder
from emabench.runs.interrupts import StopRequest
from emabench.runs.lock import RunLock
from emabench.runs.plan import Engine, Unit, plan_units
from emabench.tasks.data import make_dataset
from emabench.tasks.registry import get_task
from emabench.train.loop import EpochRecord, Trainer

if TYPE_CHECKING:
    from emabench.train.data_parallel import DataParallel

EpochCallback = Callable[[Trainer, list[EpochRecord]], None]
StopCheck = Callable[[], bool]


@dataclass(frozen=True)
class RunOutcome:
    """What one run ended as. ``status``: ``completed`` or ``diverged`` (DONE), ``skipped`` (already DONE),
    ``interrupted`` (stopped after an epoch, checkpointed), ``not_started`` (the sweep was stopped first),
    ``locked`` (another process is training it) or ``failed`` (FAILED: its Ray task raised or was lost for good;
    ``error`` says why). ``resumed_from``: the checkpoint epoch it continued from."""

    folder: RunFolder
    status: str
    epochs: int
    stop_reason: str
    wall_time_s: float
    resumed_from: int = 0
    error: str = ""

    @classmethod
    def skipped(cls, folder: RunFolder) -> RunOutcome:
        """A run already DONE, left as it is."""
        info = folder.done_info()
        return cls(folder, "skipped", int(info.get("epochs", 0)), str(info.get("stop_reason", "")), 0.0)


# --- one stack ----------------------------------------------------------------------------------------------------


@dataclass
class _Stack:
    """A stack in training: its trainer, run folders, histories so far and clock."""

    configs: Sequence[Config]
    folders: Sequence[RunFolder]
    trainer: Trainer
    histories: list[list[dict[str, float]]]
    earlier: list[float]  # wall time spent before this process (a resumed run's)
    plots: bool
    started: float = field(default_factory=time.perf_counter)
    outcomes: dict[int, RunOutcome] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.resumed_from = self.trainer.epoch  # 0 for a fresh start

    def elapsed(self, replica: int) -> float:
        return self.earlier[replica] + time.perf_counter() - self.started

    def record(self, records: list[EpochRecord]) -> None:
        """One epoch's rows into the run folders; the runs that stopped in it are finished."""
        for record in records:
            r = record.replica
            self.histories[r].append(record.row)
            self.folders[r].record_epoch(record.row)
            if record.stop_reason is not None:
                self.outcomes[r] = self._finish(r, record)

    def _finish(self, replica: int, record: EpochRecord) -> RunOutcome:
        reason = record.stop_reason or ""
        history, elapsed = self.histories[replica], self.elapsed(replica)
        status = "diverged" if reason == "diverged" else "completed"
        info = {
            "status": status,
            "stop_reason": reason,
            "stop_epoch": int(record.row["epoch"]),
            "resumed_from_epoch": self.resumed_from,
            "epochs": len(history),
            "wall_time_s": round(elapsed, 3),
            "device": str(self.trainer.device),
            "threads": torch.get_num_threads(),  # a result depends on it (see emabench.runs.pool)
            "replicas_in_stack": self.trainer.replicas,
            "processes": self.trainer.parallel.world if self.trainer.parallel is not None else 1,
            "emabench": __version__,
            "torch": torch.__version__,
        }
        config = self.configs[replica]
        task = get_task(getattr(config, "task", "regression"))  # configs before the engine's `task` are regression
        self.folders[replica].finish(history, record.final_extra, info, task=task, seed=config.seed, plots=self.plots)
        return RunOutcome(self.folders[replica], status, len(history), reason, elapsed, self.resumed_from)

    def checkpoint(self, checkpoint_every: int) -> None:
        """Each still-training replica's own state, with its history so far: enough to continue it alone."""
        trainer = self.trainer
        for position, replica in enumerate(trainer.ids):
            if not trainer.active[replica]:
                continue
            state = trainer.replica_state(position) | {
                "history": self.histories[replica],
                "wall_time_s": self.elapsed(replica),
                "checkpoint_every": checkpoint_every,
                "emabench": __version__,
                "torch": str(torch.__version__),  # TorchVersion is a str subclass weights_only refuses
            }
            self.folders[replica].save_checkpoint(self.configs[replica], state)

    def interrupt(self) -> list[RunOutcome]:
        """Mark the unfinished runs interrupted (after a checkpoint); every run's outcome in stack order."""
        for r, folder in enumerate(self.folders):
            if r not in self.outcomes:
                epochs = len(self.histories[r])
                folder.interrupt({"epochs": epochs, "checkpoint_epoch": self.trainer.epoch})
                self.outcomes[r] = RunOutcome(
                    folder, "interrupted", epochs, "interrupted", self.elapsed(r), self.resumed_from
                )
        return [self.outcomes[r] for r in range(len(self.configs))]

    def abandon(self) -> None:
        """A second Ctrl-C or a crash mid-epoch: keep what ran (an earlier checkpoint stays)."""
        for r, folder in enumerate(self.folders):
            if r not in self.outcomes:
                with contextlib.suppress(Exception):
                    folder.interrupt({"epochs": len(self.histories[r]), "emabench": __version__})

    def fail(self, err: BaseException) -> list[RunOutcome]:
        """Training raised (the user's model or data code, or a bug): every unfinished run is marked FAILED with the
        error and its traceback (an earlier checkpoint stays, so re-running retries from it); every run's outcome."""
        error = f"{type(err).__name__}: {one_line(str(err), 300)}"
        trace = "".join(traceback.format_exception(err))
        for r, folder in enumerate(self.folders):
            if r not in self.outcomes:
                epochs = len(self.histories[r])
                info = {
                    "status": "failed",
                    "error": error,
                    "traceback": trace,
                    "epochs": epochs,
                    "emabench": __version__,
                }
                folder.fail(self.configs[r], info)
                self.outcomes[r] = RunOutcome(
                    folder, "failed", epochs, "failed", self.elapsed(r), self.resumed_from, error
                )
        return [self.outcomes[r] for r in range(len(self.configs))]


def train_stack(
    configs: Sequence[Config],
    folders: Sequence[RunFolder],
    on_epoch: EpochCallback | None = None,
    *,
    stop: StopCheck | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    plots: bool = True,
    flush: Callable[[], None] | None = None,
    parallel: DataParallel | None = None,
) -> list[RunOutcome]:
    """Train ``configs`` as one stacked model, writing replica r into ``folders[r]`` (which the caller has locked).

    ``folders`` are :class:`RunFolder` s, or anything with the same lifecycle methods (a Ray task's proxies that
    send each call to the driver, :mod:`emabench.runs.ray_task`); ``flush`` is called after every epoch's calls
    (rows, finished runs, checkpoints), so such a proxy can send them as one message.

    ``plots``: draw each run's loss.png and r2.png (~0.25 s a run; sweeps leave them to ``report``'s figures).
    ``parallel``: this process's part of a data-parallel run (one config; every process calls this, ``stop`` must
    answer alike on all, and the folders of ranks other than 0 write nothing: :mod:`.data_parallel`).

    ``resume``: continue every run from its folder's checkpoint (all saved after the same epoch). ``stop`` is asked
    after each epoch; when it says so, unfinished runs are checkpointed, marked interrupted and returned as such.
    An exception other than emabench's own (a user's module or data function raising, even ``SystemExit``) marks the
    unfinished runs FAILED, their traceback inside, and returns them as ``failed``.
    """
    if stop is not None and stop():
        return [RunOutcome(folder, "not_started", 0, "", 0.0) for folder in folders]
    stack = _start(configs, folders, resume, plots, parallel)
    trainer = stack.trainer
    try:
        while not trainer.done:
            records = _run_epoch(trainer)
            stack.record(records)
            if on_epoch is not None:
                on_epoch(trainer, records)
            stopping = stop is not None and stop()
            if not trainer.done and (stopping or (checkpoint_every and trainer.epoch % checkpoint_every == 0)):
                stack.checkpoint(checkpoint_every)
            if flush is not None:
                flush()
            if stopping:
                break
    except _TrainingRaised as raised:
        outcomes = stack.fail(raised.error)
        if flush is not None:
            flush()
        return outcomes
    except BaseException:
        stack.abandon()
        raise
    return stack.interrupt()


class _TrainingRaised(Exception):
    """Training itself raised (not the run folders, the callbacks or emabench's own checks): the runs fail."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _run_epoch(trainer: Trainer) -> list[EpochRecord]:
    """One epoch; anything but emabench's own errors and Ctrl-C, raised by a user's module or data code (even
    ``SystemExit``) or a bug, becomes :class:`_TrainingRaised`."""
    try:
        return trainer.run_epoch()
    except EmabenchError:
        raise
    except (Exception, SystemExit) as err:
        raise _TrainingRaised(err) from err


def _start(
    configs: Sequence[Config], folders: Sequence[RunFolder], resume: bool, plots: bool, parallel: DataParallel | None
) -> _Stack:
    """A stack fresh (folders started: cleared, configs written) or from each folder's checkpoint (its history cut
    back to the checkpoint's epoch), with the histories and wall time so far."""
    dataset = make_dataset(configs[0].data, configs[0].task)
    if not resume:
        trainer = Trainer(configs, dataset, parallel=parallel)  # validates the device before anything is written
        for folder, config in zip(folders, configs):
            folder.start(config)
        return _Stack(configs, folders, trainer, [[] for _ in configs], [0.0] * len(configs), plots)
    states = [folder.checkpoint_for(config) for folder, config in zip(folders, configs)]
    try:
        trainer = Trainer.resume(configs, dataset, states, parallel=parallel)
    except ValueError as err:
        names = ", ".join(str(f.path) for f in folders)
        raise RunError(f"{names}: cannot resume from the checkpoint ({err})") from None
    histories = [[dict(row) for row in state["history"]] for state in states]
    for folder, history in zip(folders, histories):
        folder.resume(history)
    return _Stack(configs, folders, trainer, histories, [float(s["wall_time_s"]) for s in states], plots)


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
