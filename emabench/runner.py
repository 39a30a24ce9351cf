"""Runs and sweeps: config → data → engine → run folders. ``run(config, runs_dir)`` works from Python and the CLI.

The engine yields history rows; this module hands them to :mod:`emabench.rundir` as they come (so a killed run
keeps every finished epoch), and on each replica's last epoch derives its metrics table and plots.

Reliability, in one place:

- every run is trained under a lock on its folder (:meth:`RunFolder.try_lock`): a second sweep into the same
  folder skips runs another process holds, so no run is trained twice at once;
- ``checkpoint_every`` saves each unfinished run's own state (:meth:`Trainer.replica_state`) every N epochs;
- ``stop`` (e.g. :class:`StopRequest` after Ctrl-C) is checked after every epoch: unfinished runs are then
  checkpointed and marked interrupted, and a sweep launches nothing more;
- re-running skips DONE runs, resumes checkpointed ones (stacked again with runs saved after the same epoch) and
  restarts the rest.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from emabench import __version__
from emabench.config import Config, dump_yaml, with_overrides
from emabench.errors import ConfigError, RunError
from emabench.rundir import (
    LOSS_PLOT,
    R2_PLOT,
    RunFolder,
    RunLock,
    config_hash,
    inside,
    run_id,
    sweep_dir,
    write_sweep_spec,
)
from emabench.tasks.data import make_dataset
from emabench.train.loop import EpochRecord, Trainer, resolve_device, stack_key

EpochCallback = Callable[[Trainer, list[EpochRecord]], None]
StopCheck = Callable[[], bool]
Engine = Literal["auto", "vectorized", "process", "ray"]


@dataclass(frozen=True)
class RunOutcome:
    """What one run ended as. ``status``: ``completed`` or ``diverged`` (DONE), ``skipped`` (already DONE),
    ``interrupted`` (stopped after an epoch, checkpointed), ``not_started`` (the sweep was stopped first) or
    ``locked`` (another process is training it). ``resumed_from``: the checkpoint epoch it continued from."""

    folder: RunFolder
    status: str
    epochs: int
    stop_reason: str
    wall_time_s: float
    resumed_from: int = 0


def run_folder_for(config: Config, runs_dir: Path) -> RunFolder:
    folder = Path(runs_dir) / run_id(config.to_dict())
    inside(folder, runs_dir)  # run ids are sanitized; this keeps it so
    return RunFolder(folder)


# --- deferred interrupts ------------------------------------------------------------------------------------------


class StopRequest:
    """Ctrl-C (SIGINT) and SIGTERM as a request: the first asks to stop after the current epoch, a second raises
    ``KeyboardInterrupt`` at once. Pass :meth:`is_set` as ``stop`` to :func:`run`/:func:`sweep`.

    ``shared`` (an event of a worker pool) is a second source of the same request, set by the parent process.
    """

    def __init__(self, notice: Callable[[], None] | None = None, shared: Any = None) -> None:
        self._requested = False  # a plain bool: safe to set from a signal handler
        self._notice = notice
        self._shared = shared

    def set(self) -> None:
        self._requested = True

    def is_set(self) -> bool:
        return self._requested or (self._shared is not None and self._shared.is_set())

    def handle(self, signum: int, frame: Any) -> None:
        if self._requested:
            raise KeyboardInterrupt
        self._requested = True
        if self._notice is not None:
            self._notice()

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGINT and SIGTERM with :meth:`handle` inside the block (main thread only)."""
        previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


# --- one stack ----------------------------------------------------------------------------------------------------


def train_stack(
    configs: Sequence[Config],
    folders: Sequence[RunFolder],
    on_epoch: EpochCallback | None = None,
    *,
    stop: StopCheck | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    plots: bool = True,
) -> list[RunOutcome]:
    """Train ``configs`` as one stacked model, writing replica r into ``folders[r]`` (which the caller has locked).

    ``plots``: draw each run's loss.png and r2.png (~0.25 s a run; sweeps leave them to ``report``'s figures).

    ``resume``: continue every run from its folder's checkpoint (all saved after the same epoch). ``stop`` is asked
    after each epoch; when it says so, unfinished runs are checkpointed, marked interrupted and returned as such.
    """
    if stop is not None and stop():
        return [RunOutcome(folder, "not_started", 0, "", 0.0) for folder in folders]
    start = time.perf_counter()
    trainer, histories, earlier = _start(configs, folders, resume)
    resumed_from = trainer.epoch  # 0 for a fresh start

    def elapsed(replica: int) -> float:
        return earlier[replica] + time.perf_counter() - start

    outcomes: dict[int, RunOutcome] = {}
    try:
        while not trainer.done:
            records = trainer.run_epoch()
            for record in records:
                histories[record.replica].append(record.row)
                folders[record.replica].append_history(record.row)
                if record.stop_reason is not None:
                    r = record.replica
                    outcomes[r] = _finish(folders[r], histories[r], record, elapsed(r), trainer, resumed_from, plots)
            if on_epoch is not None:
                on_epoch(trainer, records)
            stopping = stop is not None and stop()
            if not trainer.done and (stopping or (checkpoint_every and trainer.epoch % checkpoint_every == 0)):
                _save_checkpoints(trainer, configs, folders, histories, elapsed, checkpoint_every)
            if stopping:
                break
    except BaseException:  # a second Ctrl-C or a crash mid-epoch: keep what ran (an earlier checkpoint stays)
        for r, folder in enumerate(folders):
            if r not in outcomes:
                with contextlib.suppress(Exception):
                    folder.mark_interrupted({"epochs": len(histories[r]), "emabench": __version__})
        raise
    for r, folder in enumerate(folders):
        if r not in outcomes:
            folder.mark_interrupted({"epochs": len(histories[r]), "checkpoint_epoch": trainer.epoch})
            outcomes[r] = RunOutcome(folder, "interrupted", len(histories[r]), "interrupted", elapsed(r), resumed_from)
    return [outcomes[r] for r in range(len(configs))]


def _start(
    configs: Sequence[Config], folders: Sequence[RunFolder], resume: bool
) -> tuple[Trainer, list[list[dict[str, float]]], list[float]]:
    """A trainer, the histories so far and the wall time spent so far: fresh (folders cleared, configs written) or
    from each folder's checkpoint (its history rewritten to the checkpoint's epoch)."""
    dataset = make_dataset(configs[0].data)
    if not resume:
        trainer = Trainer(configs, dataset)  # validates the device before anything is written
        for folder, config in zip(folders, configs):
            folder.clear()
            folder.create().write_config(dump_yaml(config.to_dict()))
        return trainer, [[] for _ in configs], [0.0] * len(configs)
    states = [_read_state(folder, config) for folder, config in zip(folders, configs)]
    try:
        trainer = Trainer.resume(configs, dataset, states)
    except ValueError as err:
        names = ", ".join(str(f.path) for f in folders)
        raise RunError(f"{names}: cannot resume from the checkpoint ({err})") from None
    histories = [[dict(row) for row in state["history"]] for state in states]
    for folder, history in zip(folders, histories):
        folder.remove_partial_writes()
        folder.clear_interrupted()
        folder.write_history(history)  # drops rows of epochs after the checkpoint
    return trainer, histories, [float(state["wall_time_s"]) for state in states]


def _read_state(folder: RunFolder, config: Config) -> dict[str, Any]:
    state = folder.read_checkpoint()
    if state.get("config_hash") != config_hash(config.to_dict()):
        raise RunError(f"{folder.path}: the checkpoint was saved for a different config than its config.yaml")
    return state


def _save_checkpoints(
    trainer: Trainer,
    configs: Sequence[Config],
    folders: Sequence[RunFolder],
    histories: list[list[dict[str, float]]],
    elapsed: Callable[[int], float],
    checkpoint_every: int,
) -> None:
    """Each still-training replica's own state, with its history so far: enough to continue it alone."""
    for position, replica in enumerate(trainer.ids):
        if not trainer.active[replica]:
            continue
        state = trainer.replica_state(position) | {
            "config_hash": config_hash(configs[replica].to_dict()),
            "history": histories[replica],
            "wall_time_s": elapsed(replica),
            "checkpoint_every": checkpoint_every,
            "emabench": __version__,
            "torch": str(torch.__version__),  # TorchVersion is a str subclass weights_only refuses
        }
        folders[replica].write_checkpoint(state)


def resume_point(folder: RunFolder, config: Config) -> dict[str, Any] | None:
    """The checkpoint a run can continue from, or ``None`` (DONE, none, unreadable or saved for another config)."""
    if folder.is_done or not folder.has_checkpoint:
        return None
    try:
        return _read_state(folder, config)
    except RunError:
        return None


def _finish(
    folder: RunFolder,
    history: list[dict[str, float]],
    record: EpochRecord,
    elapsed: float,
    trainer: Trainer,
    resumed_from: int,
    plots: bool = True,
) -> RunOutcome:
    import pandas as pd

    from emabench.results.tables import final_metrics

    reason = record.stop_reason or ""
    frame = pd.DataFrame(history)
    folder.write_metrics(final_metrics(frame, record.final_extra))
    if plots:
        from emabench.results.figures import loss_figure, r2_figure

        folder.save_figure(loss_figure(frame), LOSS_PLOT)
        folder.save_figure(r2_figure(frame), R2_PLOT)
    status = "diverged" if reason == "diverged" else "completed"
    folder.mark_done(
        {
            "status": status,
            "stop_reason": reason,
            "stop_epoch": int(record.row["epoch"]),
            "resumed_from_epoch": resumed_from,
            "epochs": len(history),
            "wall_time_s": round(elapsed, 3),
            "device": str(trainer.device),
            "replicas_in_stack": trainer.replicas,
            "emabench": __version__,
            "torch": torch.__version__,
        }
    )
    folder.remove_checkpoint()  # after DONE: a run killed in between only leaves a spare file
    return RunOutcome(folder, status, len(history), reason, elapsed, resumed_from)


# --- one run ------------------------------------------------------------------------------------------------------


def run(
    config: Config,
    runs_dir: str | Path = "runs",
    *,
    force: bool = False,
    on_epoch: EpochCallback | None = None,
    stop: StopCheck | None = None,
    checkpoint_every: int | None = None,
) -> RunOutcome:
    """Train one run into ``<runs_dir>/<run-id>/``; a run already DONE is skipped unless ``force``.

    An incomplete run with a checkpoint continues from it (unless ``force``); ``checkpoint_every=None`` then keeps
    the checkpoint's own setting. Raises :class:`RunError` if another process is training the same run.
    """
    return _run_in(run_folder_for(config, Path(runs_dir)), config, force, on_epoch, stop, checkpoint_every)


def resume(
    path: str | Path,
    *,
    on_epoch: EpochCallback | None = None,
    stop: StopCheck | None = None,
    checkpoint_every: int | None = None,
) -> RunOutcome:
    """Continue the run in folder ``path`` from its checkpoint, with the config in its ``config.yaml``."""
    folder = RunFolder(path)
    config = load_run_config(folder)
    if not folder.is_done:
        _read_state(folder, config)  # a clear error now if there is nothing to resume from
    return _run_in(folder, config, False, on_epoch, stop, checkpoint_every)


def load_run_config(folder: RunFolder) -> Config:
    from emabench.config import parse_yaml, validate_config
    from emabench.rundir import CONFIG

    if not (folder.path / CONFIG).is_file():
        raise RunError(f"{folder.path}: not a run folder (no {CONFIG})")
    return validate_config(parse_yaml(folder.read_config_text(), str(folder.path / CONFIG)), str(folder.path / CONFIG))


def _run_in(
    folder: RunFolder,
    config: Config,
    force: bool,
    on_epoch: EpochCallback | None,
    stop: StopCheck | None,
    checkpoint_every: int | None,
) -> RunOutcome:
    if folder.is_done and not force:
        return _skipped(folder)
    resolve_device(config.device)  # refuse before the folder is created
    lock = folder.try_lock()
    if lock is None:
        raise RunError(f"{folder.path}: another emabench process is training this run")
    with lock:
        if folder.is_done and not force:  # finished by another process since the check above
            return _skipped(folder)
        state = None if force else resume_point(folder, config)
        every = checkpoint_every if checkpoint_every is not None else int(state["checkpoint_every"]) if state else 0
        return train_stack([config], [folder], on_epoch, stop=stop, checkpoint_every=every, resume=state is not None)[0]


def _skipped(folder: RunFolder) -> RunOutcome:
    info = folder.done_info()
    return RunOutcome(folder, "skipped", int(info.get("epochs", 0)), str(info.get("stop_reason", "")), 0.0)


# --- sweeps -----------------------------------------------------------------------------------------------------


def expand_grid(base: Config, grid: dict[str, Sequence[Any]]) -> list[Config]:
    """Every combination of the grid's dotted keys (e.g. ``{"ema.beta": [...], "seed": [...]}``), validated."""
    keys = list(grid)
    return [with_overrides(base, dict(zip(keys, values))) for values in itertools.product(*grid.values())]


def with_beta_shadows(base: Config, betas: Sequence[float]) -> Config:
    """Add one shadow EMA ``ema_<beta>`` per beta, with the seed EMA's warm-up settings (shadow-mode sweeps)."""
    from emabench.config import validate_config

    raw = base.to_dict()
    warmup = {k: v for k, v in raw["ema"].items() if k != "beta"}
    for beta in betas:
        raw["averagers"][f"ema_{beta:g}"] = {"kind": "ema", "beta": beta, **warmup}
    return validate_config(raw, "--shadows")


def plan_stacks(configs: Sequence[Config], engine: Engine, jobs: int) -> list[list[Config]]:
    """Split the runs into units of work: singletons for ``process``; groups that can share one stacked model,
    cut into at most ``jobs`` pieces each, for ``auto``, ``vectorized`` (one group only) and ``ray``."""
    if engine == "process":
        return [[c] for c in configs]
    groups: dict[Any, list[Config]] = {}
    for config in configs:
        groups.setdefault(stack_key(config), []).append(config)
    if engine == "vectorized" and len(groups) > 1:
        raise ConfigError("--engine vectorized: the swept settings change the data or the architecture")
    pieces = max(1, jobs // max(1, len(groups)))
    return [group[i::pieces] for group in groups.values() for i in range(pieces) if group[i::pieces]]


@dataclass(frozen=True)
class Unit:
    """One stacked model to train: fresh runs, or runs that all resume from checkpoints of the same epoch."""

    configs: list[Config]
    resume: bool


def plan_units(configs: Sequence[Config], folder: Path, engine: Engine, jobs: int, force: bool) -> list[Unit]:
    """Resumable runs grouped by (what a stack shares, checkpoint epoch), then fresh runs as :func:`plan_stacks`."""
    fresh: list[Config] = []
    resumable: dict[Any, list[Config]] = {}
    for config in configs:
        state = None if force else resume_point(run_folder_for(config, folder), config)
        if state is None:
            fresh.append(config)
        else:
            resumable.setdefault((stack_key(config), int(state["epoch"])), []).append(config)
    units = []
    pieces = 1 if engine == "process" else max(1, jobs // max(1, len(resumable)))
    for group in resumable.values():
        stacks = [[c] for c in group] if engine == "process" else [group[i::pieces] for i in range(pieces)]
        units += [Unit(stack, True) for stack in stacks if stack]
    return units + [Unit(stack, False) for stack in plan_stacks(fresh, engine, jobs)]


Claimed = tuple[Unit, list[RunLock]]


@dataclass(frozen=True)
class _Sweep:
    """What every unit of one sweep shares."""

    folder: Path
    engine: Engine
    force: bool
    stop: StopCheck | None
    checkpoint_every: int
    plots: bool = False

    def folders(self, unit: Unit) -> list[RunFolder]:
        return [run_folder_for(c, self.folder) for c in unit.configs]

    def stopping(self) -> bool:
        return self.stop is not None and self.stop()

    def not_started(self, unit: Unit) -> list[RunOutcome]:
        return [RunOutcome(f, "not_started", 0, "", 0.0) for f in self.folders(unit)]

    def claim(self, unit: Unit, outcomes: list[RunOutcome]) -> list[Claimed]:
        """Lock the unit's runs just before training them; runs another process holds or has finished meanwhile
        are recorded in ``outcomes`` and left out, and the rest re-planned from what is on disk now."""
        locks: dict[str, RunLock] = {}
        for run_folder in self.folders(unit):
            lock = run_folder.try_lock()
            if lock is None:
                outcomes.append(RunOutcome(run_folder, "locked", 0, "", 0.0))
            elif run_folder.is_done and not self.force:
                lock.release()
                outcomes.append(_skipped(run_folder))
            else:
                locks[run_folder.name] = lock
        mine = [c for c, f in zip(unit.configs, self.folders(unit)) if f.name in locks]
        units = plan_units(mine, self.folder, self.engine, 1, self.force)
        return [(u, [locks[f.name] for f in self.folders(u)]) for u in units]


def sweep(
    base: Config,
    grid: dict[str, Sequence[Any]],
    runs_dir: str | Path = "runs",
    *,
    jobs: int = 1,
    engine: Engine = "auto",
    force: bool = False,
    mode: str = "runs",
    on_epoch: EpochCallback | None = None,
    on_stack_done: Callable[[list[RunOutcome]], None] | None = None,
    stop: StopCheck | None = None,
    checkpoint_every: int = 0,
    plots: bool = False,
) -> tuple[Path, list[RunOutcome]]:
    """Run every grid combination into ``<runs_dir>/sweep-<name>-<hash>/<run-id>/``; DONE runs are skipped,
    checkpointed ones resumed, runs another process is training left to it (``locked``).

    ``mode`` is recorded in ``sweep.json``: ``runs`` (one run per setting) or ``shadows`` (settings tracked as
    shadow averagers of one trajectory, see :func:`with_beta_shadows`).

    ``engine="ray"``: the units are Ray tasks, ``jobs`` at a time (:mod:`emabench.distributed`)."""
    if engine == "ray":
        from emabench import distributed

        distributed.require_ray()  # refuse before anything is written
    configs = expand_grid(base, grid)
    spec = {"base": base.to_dict(), "grid": {k: list(v) for k, v in grid.items()}, "mode": mode}
    folder = sweep_dir(Path(runs_dir), base.name, spec)
    inside(folder, runs_dir)
    pending, outcomes = [], []
    for config in configs:
        run_folder = run_folder_for(config, folder)
        if run_folder.is_done and not force:
            outcomes.append(_skipped(run_folder))
        else:
            pending.append(config)
    for device in {c.device for c in pending}:
        resolve_device(device)  # refuse before any folder is created
    write_sweep_spec(folder, spec | {"engine": engine, "jobs": jobs})
    units = plan_units(pending, folder, engine, jobs, force)
    work = _Sweep(folder, engine, force, stop, checkpoint_every, plots)
    if engine == "ray":
        outcomes += distributed.run_units(units, work, jobs, on_stack_done)
        return folder, outcomes
    if jobs > 1 and len(units) > 1:
        outcomes += _run_in_pool(units, work, jobs, on_stack_done)
        return folder, outcomes
    for unit in units:
        if work.stopping():
            outcomes += work.not_started(unit)
            continue
        for claimed, locks in work.claim(unit, outcomes):
            try:
                done = train_stack(
                    claimed.configs,
                    work.folders(claimed),
                    on_epoch,
                    stop=stop,
                    checkpoint_every=checkpoint_every,
                    resume=claimed.resume,
                    plots=plots,
                )
            finally:
                for lock in locks:
                    lock.release()
            outcomes += done
            if on_stack_done is not None:
                on_stack_done(done)
    return folder, outcomes


# --- worker processes ---------------------------------------------------------------------------------------------

_WORKER_STOP: StopRequest | None = None


def _init_worker(shared: Any, threads: int) -> None:
    """In each worker: its own deferred Ctrl-C/SIGTERM, plus the parent's request through ``shared``."""
    global _WORKER_STOP
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
) -> list[RunOutcome]:
    """One unit in a worker process or a Ray task: picklable arguments in, outcomes out. ``stop`` defaults to the
    worker process's own request (:func:`_init_worker`)."""
    stack = [Config.model_validate(c) for c in configs]
    if stop is None and _WORKER_STOP is not None:
        stop = _WORKER_STOP.is_set
    folders = [run_folder_for(c, Path(folder)) for c in stack]
    return train_stack(stack, folders, stop=stop, checkpoint_every=checkpoint_every, resume=resume, plots=plots)


def _start_method() -> str:
    """``fork`` on Linux while CUDA is untouched: workers inherit the imported modules instead of spending ~2 s
    importing torch each. CUDA cannot survive a fork, and other platforms default to spawn for good reasons."""
    if sys.platform.startswith("linux") and not torch.cuda.is_initialized():
        return "fork"
    return "spawn"


def _run_in_pool(
    units: list[Unit], work: _Sweep, jobs: int, on_stack_done: Callable[[list[RunOutcome]], None] | None
) -> list[RunOutcome]:
    """Train units in ``jobs`` worker processes, handing one out (locked by this process) whenever a worker is
    free. A stop request starts nothing more and reaches running workers through a shared event; they stop after
    their current epoch."""
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context(_start_method())
    shared = context.Event()
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_init_worker, initargs=(shared, threads)
    )
    queue, outcomes = list(reversed(units)), []
    running: dict[Future[list[RunOutcome]], list[RunLock]] = {}
    try:
        while queue or running:
            if work.stopping():
                shared.set()
                while queue:
                    outcomes += work.not_started(queue.pop())
            while queue and len(running) < jobs:
                for unit, locks in work.claim(queue.pop(), outcomes):
                    args = (
                        [c.to_dict() for c in unit.configs],
                        str(work.folder),
                        unit.resume,
                        work.checkpoint_every,
                        work.plots,
                    )
                    running[pool.submit(stack_worker, *args)] = locks
            finished, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED) if running else ((), ())
            for future in finished:
                for lock in running.pop(future):
                    lock.release()
                done = future.result()
                outcomes += done
                if on_stack_done is not None:
                    on_stack_done(done)
    finally:
        shared.set()  # a no-op when all went well; after a second Ctrl-C or a crash: workers stop after an epoch
        pool.shutdown(wait=True, cancel_futures=True)  # their runs stay locked until they have stopped writing
        for locks in running.values():
            for lock in locks:
                lock.release()
    return outcomes
