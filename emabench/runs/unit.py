"""Training one unit of work: one stacked model of runs, each written into its own run folder.

:func:`train_stack` builds the trainer (fresh, or from the folders' checkpoints) and calls each
:class:`~emabench.runs.folder.RunFolder`'s lifecycle as the epochs come: a row per epoch (so a killed run keeps every
finished epoch), ``finish`` on a replica's last epoch, a checkpoint every ``checkpoint_every`` epochs, ``interrupt``
when asked to stop, ``fail`` (with the traceback) when training raises. What a sweep's units share and the worker
processes' entry point are in :mod:`emabench.runs.work`.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from emabench import __version__
from emabench.config import Config
from emabench.errors import EmabenchError, RunError, one_line
from emabench.runs.folder import RunFolder
from emabench.runs.interrupts import setting_up
from emabench.tasks.data import make_dataset
from emabench.tasks.user import task_of
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
        task = task_of(config)  # the task's metrics, and the user's own
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

    def abandon(self, error: BaseException) -> None:
        """A second Ctrl-C or a failure mid-epoch: every unfinished run keeps what ran (an earlier checkpoint
        stays) and is marked (:func:`mark_stopped`)."""
        unfinished = [r for r in range(len(self.folders)) if r not in self.outcomes]
        mark_stopped(
            [self.folders[r] for r in unfinished],
            [self.configs[r] for r in unfinished],
            [len(self.histories[r]) for r in unfinished],
            error,
        )


def mark_stopped(
    folders: Sequence[RunFolder], configs: Sequence[Config], epochs: Sequence[int], error: BaseException
) -> None:
    """Mark runs that stopped on ``error`` before their end: ``INTERRUPTED`` after a second Ctrl-C, ``FAILED`` with
    the error otherwise (a full disk, a bug), so that no started run is left without a word of why (re-running
    continues or restarts them). Each run is marked apart, and every marker before any history is flushed: when
    the disk is full, as many runs as can take a few bytes more get their marker."""
    reason = {} if isinstance(error, KeyboardInterrupt) else {"error": one_line(f"{type(error).__name__}: {error}")}
    flush = []
    for folder, config, count in zip(folders, configs, epochs):
        info = {"epochs": count, "emabench": __version__} | reason
        fail = getattr(folder, "fail", None) if reason else None  # a Ray task's proxies report failures otherwise
        with contextlib.suppress(Exception):
            if fail is None:
                folder.interrupt(info)  # flushes its history, then marks
            else:
                fail(config, info)
                flush.append(folder)
    for folder in flush:
        with contextlib.suppress(Exception):
            folder.flush_history()


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
    stack = _set_up(configs, folders, resume, plots, parallel, stop)
    if stack is None:
        return [RunOutcome(folder, "not_started", 0, "", 0.0) for folder in folders]
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
    except BaseException as error:
        stack.abandon(error)
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


def _set_up(
    configs: Sequence[Config],
    folders: Sequence[RunFolder],
    resume: bool,
    plots: bool,
    parallel: DataParallel | None,
    stop: StopCheck | None,
) -> _Stack | None:
    """:func:`_start`, or ``None`` when Ctrl-C cut it short (the stop request set): no run was started."""
    try:
        return _start(configs, folders, resume, plots, parallel)
    except KeyboardInterrupt:
        if stop is None or not stop():
            raise
        return None


def _start(
    configs: Sequence[Config], folders: Sequence[RunFolder], resume: bool, plots: bool, parallel: DataParallel | None
) -> _Stack:
    """A stack fresh (folders started: cleared, configs written) or from each folder's checkpoint (its history cut
    back to the checkpoint's epoch), with the histories and wall time so far."""
    states = [folder.checkpoint_for(config) for folder, config in zip(folders, configs)] if resume else None
    # Loading the data and building the model may run a user's code for long: Ctrl-C stops it at once (with a
    # data-parallel run every process must agree on stopping, so there it waits for the first epoch's end).
    with setting_up() if parallel is None else contextlib.nullcontext():
        dataset = make_dataset(configs[0].data, configs[0].task, seeds=[c.seed for c in configs])
        if states is None:
            trainer = Trainer(configs, dataset, parallel=parallel)  # validates the device before anything is written
        else:
            try:
                trainer = Trainer.resume(configs, dataset, states, parallel=parallel)
            except ValueError as err:
                names = ", ".join(str(f.path) for f in folders)
                raise RunError(f"{names}: cannot resume from the checkpoint ({err})") from None
    if states is None:
        for index, (folder, config) in enumerate(zip(folders, configs)):
            try:
                folder.start(config)
            except BaseException as error:  # a full disk, ...: the runs started so far are marked
                mark_stopped(folders[: index + 1], configs[: index + 1], [0] * (index + 1), error)
                raise
        return _Stack(configs, folders, trainer, [[] for _ in configs], [0.0] * len(configs), plots)
    histories = [[dict(row) for row in state["history"]] for state in states]
    for folder, history in zip(folders, histories):
        folder.resume(history)
    return _Stack(configs, folders, trainer, histories, [float(s["wall_time_s"]) for s in states], plots)
