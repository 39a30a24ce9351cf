"""Scale-out on Ray: a sweep's units of work (stacks of runs) as Ray tasks, with the run folders on the driver only.

``emabench sweep --engine ray`` plans the same units as the local engines (same stacks, same seeds, so the same
results) and hands them to :func:`run_units`. Ray is optional (``pip install 'emabench[ray]'``) and imported only
here and in the tasks, only when asked for.

Where the tasks run:

- ``RAY_ADDRESS`` set: the existing cluster at that address (``ray.init(address=...)``, with whatever Ray itself
  needs to connect, e.g. the cluster's auth token); the driver disconnects afterwards, the cluster keeps running;
- Ray already initialised in this process (from Python, e.g. with your own ``runtime_env``): used as it is;
- otherwise a local Ray instance with ``jobs`` × ``cpus_per_task`` CPUs, shut down when the sweep ends.

The driver alone writes run folders. A task gets its runs' configs and a handle to the sweep's ledger, a small actor
pinned to the driver's node (:mod:`emabench.runs.ray_ledger`); it sends its runs' lifecycle calls there
(:mod:`emabench.runs.ray_task`: history rows, a checkpoint every ``--checkpoint-every`` epochs, finished runs), and
the driver drains the ledger and applies the calls to the run folders: the same files, atomic writes, checkpoints and
DONE markers as the local engines, on the driver's disk. No node needs a shared filesystem or the driver's paths,
and the per-run ``flock`` locks are taken by the driver on its own disk.

Faults: a task whose worker or node dies is retried by Ray (``max_retries``, :attr:`RayOptions.retries`); the retry
asks the ledger where to start and continues its unfinished runs from the last checkpoint the driver received (runs
that finished meanwhile are not trained again), so a lost node costs at most ``--checkpoint-every`` epochs of its
runs. A task that raises is not retried; its unfinished runs, like those of a task lost more often than Ray retries,
are marked failed (``FAILED`` in the run folder, with the error; status ``failed``) and the sweep goes on.
Re-running the sweep continues them from their last checkpoint.

Each task asks Ray for ``cpus_per_task`` CPUs (and sets torch to as many threads) and ``gpus_per_task`` GPUs;
``device: auto`` trains on the GPU Ray assigned, or on the CPU when none was asked for. ``--jobs`` is the number of
tasks in flight (each holds its runs' locks while it runs).

Stopping (Ctrl-C, SIGTERM, or any ``stop`` callback): the driver starts nothing new and tells the ledger; each task
asks it after every epoch without waiting for the answer, so a running task checkpoints its unfinished runs and ends
them ``interrupted`` within an epoch or two, as a local worker does. A second Ctrl-C also cancels the tasks. Either
way the driver applies what the tasks sent and waits for them to end before it releases their runs' locks.
"""

from __future__ import annotations

import contextlib
import itertools
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from emabench import __version__
from emabench.runs.ray_cluster import (
    CONNECT_TIMEOUT_S,
    RayOptions,
    check_fits,
    connect,
    first_line,
    require_ray,
)
from emabench.runs.ray_ledger import Ledger
from emabench.runs.ray_task import TaskSpec, train_unit
from emabench.tasks.registry import get_task

if TYPE_CHECKING:
    from emabench.config import Config
    from emabench.runs.folder import RunFolder
    from emabench.runs.lock import RunLock
    from emabench.runs.plan import Unit
    from emabench.runs.unit import RunOutcome
    from emabench.runs.work import SweepWork

POLL_S = 0.2  # how often the driver drains the ledger and checks for a stop request while tasks run
ERROR_CHARS = 500  # of a failed run's error, in FAILED and in the sweep's summary


@dataclass
class RayProgress:
    """Counts for the driver's progress display, in runs (``retried``: task attempts after a lost worker/node)."""

    total: int = 0
    finished: int = 0
    failed: int = 0
    running: int = 0
    retried: int = 0
    tasks: int = 0
    bytes_to_tasks: int = 0  # pickled: each task's arguments, and the ledger's answers to where to start
    bytes_from_tasks: int = 0  # pickled: the runs' calls the tasks sent (rows, checkpoints, finished runs)


ProgressCallback = Callable[[RayProgress], None]


def run_units(
    units: list[Unit],
    work: SweepWork,
    jobs: int,
    on_stack_done: Callable[[list[RunOutcome]], None] | None,
    options: RayOptions | None = None,
    on_progress: ProgressCallback | None = None,
) -> list[RunOutcome]:
    """Train ``units`` as Ray tasks, at most ``jobs`` at a time, each claimed (locked) by this process just before
    it is submitted and released when its task has ended. Returns every run's outcome, as the local pool does."""
    ray = require_ray()
    if not units:  # all DONE, or left to another sweep: no cluster to start or reach
        return []
    options = options or RayOptions()
    initialised = connect(ray, jobs, options)
    try:
        check_fits(ray, options)
        return _Driver(ray, work, jobs, options, on_stack_done, on_progress).run(units)
    finally:
        if initialised:  # stops the local instance; from a cluster, only disconnects (the cluster keeps running)
            ray.shutdown()


def _task_error(ray: ModuleType, err: BaseException) -> str:
    """One line for a failed task: the exception it raised, or what Ray says about a lost worker or node."""
    cause = getattr(err, "cause", None) if isinstance(err, ray.exceptions.RayTaskError) else None
    text = f"{type(cause).__name__}: {first_line(cause)}" if cause is not None else first_line(err)
    return text[:ERROR_CHARS]


# --- the driver -----------------------------------------------------------------------------------------------------


@dataclass
class UnitInFlight:
    """One submitted unit on the driver: its runs' folders and locks, and what the driver has applied of its task's
    calls so far (:meth:`apply`: the same RunFolder lifecycle a local engine runs, in the same order)."""

    key: int
    unit: Unit
    folders: list[RunFolder]
    locks: list[RunLock]
    plots: bool = False
    ended: dict[int, RunOutcome] = field(default_factory=dict)  # run index → finished or interrupted
    epochs: dict[int, int] = field(default_factory=dict)  # run index → history rows written
    resumed: dict[int, int] = field(default_factory=dict)  # run index → checkpoint epoch it continued from
    attempts: int = 0

    def apply(self, index: int, method: str, args: tuple[Any, ...]) -> None:
        """One call a task made on run ``index``'s folder (see :data:`emabench.runs.ray_ledger.Drained`)."""
        folder, config = self.folders[index], self.unit.configs[index]
        if method == "start":  # a fresh start (again, after a lost attempt that never checkpointed)
            folder.start(config)
            self.epochs[index] = self.resumed[index] = 0
        elif method == "write_checkpoint_bytes":
            folder.write_checkpoint_bytes(*args)
        elif method == "finish":
            rows, extra, info = args
            task = get_task(config.task)
            folder.finish(rows, extra, info, task=task, seed=config.seed, plots=self.plots)
            self.ended[index] = _finished(folder, info)
        elif method == "interrupt":
            folder.interrupt(*args)
            self.ended[index] = self._ended(index, "interrupted")
        elif method == "fail":  # training raised in the task: the run failed, with its traceback
            (info,) = args
            folder.fail(config, info)
            self.ended[index] = self._ended(index, "failed", info["error"])
        elif method in ("resume", "write_history"):
            getattr(folder, method)(*args)
            self.epochs[index] = len(args[0])
            if method == "resume":
                self.resumed[index] = len(args[0])
        else:
            raise ValueError(f"unknown run folder call {method!r}")

    def outcome(self, index: int, error: str, cancelled: bool) -> RunOutcome:
        """Run ``index``'s outcome once its task has ended: as applied, or marked failed (``error``: the task
        raised or was lost for good), interrupted (cancelled, or stopped after it began) or not started (the sweep
        stopped first)."""
        ended = self.ended.get(index)
        if ended is not None and (ended.status != "interrupted" or not error):
            return ended
        folder = self.folders[index]
        if error:
            info = {
                "status": "failed",
                "error": error,
                "epochs": self.epochs.get(index, 0),
                "checkpoint": folder.has_checkpoint,
                "attempts": self.attempts,
                "emabench": __version__,
            }
            folder.fail(self.unit.configs[index], info)
            return self._ended(index, "failed", error)
        if cancelled or index in self.epochs:  # stopped (a retry that began after the stop trains nothing)
            if index not in self.ended:
                folder.interrupt({"epochs": self.epochs.get(index, 0), "emabench": __version__})
            return self._ended(index, "interrupted")
        return self._ended(index, "not_started")

    def _ended(self, index: int, status: str, error: str = "") -> RunOutcome:
        from emabench.runs.unit import RunOutcome

        epochs, resumed = self.epochs.get(index, 0), self.resumed.get(index, 0)
        reason = status if status in ("interrupted", "failed") else ""
        return RunOutcome(self.folders[index], status, epochs, reason, 0.0, resumed, error)


class _Driver:
    """The local pool's loop (:func:`emabench.runs.pool.run_in_pool`) with Ray tasks in place of futures, and the
    ledger's calls applied to the run folders as they come."""

    def __init__(
        self,
        ray: ModuleType,
        work: SweepWork,
        jobs: int,
        options: RayOptions,
        on_stack_done: Callable[[list[RunOutcome]], None] | None,
        on_progress: ProgressCallback | None,
    ) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray, self.work, self.jobs = ray, work, jobs
        self.on_stack_done, self.on_progress = on_stack_done, on_progress
        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        self.ledger = ray.remote(num_cpus=0, max_restarts=0)(Ledger).options(scheduling_strategy=here).remote()
        self.train = ray.remote(train_unit).options(
            num_cpus=options.cpus_per_task,
            num_gpus=options.gpus_per_task,
            max_retries=options.retries,
            retry_exceptions=False,  # a task that raises would raise again: its runs are marked failed
        )
        self.spec = TaskSpec(work.checkpoint_every, options.cpus_per_task, options.gpus_per_task)
        self.tasks: dict[Any, UnitInFlight] = {}  # ObjectRef → task
        self.by_key: dict[int, UnitInFlight] = {}
        self.keys = itertools.count()
        self.outcomes: list[RunOutcome] = []
        self.progress = RayProgress()

    def run(self, units: list[Unit]) -> list[RunOutcome]:
        ray, queue = self.ray, list(reversed(units))
        self.progress.total = sum(len(u.configs) for u in units)
        aborting, stopping = True, False  # aborting until the loop ends normally: a crash or a second Ctrl-C
        try:
            while queue or self.tasks:
                if not stopping and self.work.stopping():
                    stopping = True
                    self.ledger.stop.remote()
                while stopping and queue:
                    self.outcomes += self.work.not_started(queue.pop())
                while queue and len(self.tasks) < self.jobs:
                    for unit, locks in self.work.claim(queue.pop(), self.outcomes):
                        self._submit(unit, locks)
                ready, _ = ray.wait(list(self.tasks), num_returns=1, timeout=POLL_S) if self.tasks else ([], [])
                self._apply_drained()
                for ref in ready:
                    self._settle(ref)
                self._report()
            aborting = False
        except KeyboardInterrupt:
            for ref in self.tasks:
                ray.cancel(ref, force=False)  # KeyboardInterrupt inside the task: it marks its runs interrupted
            raise
        finally:
            if aborting:
                self._abort()
            self._report(final=True)
            ray.kill(self.ledger)
        return self.outcomes

    def _submit(self, unit: Unit, locks: list[RunLock]) -> None:
        """Register the unit with the ledger (with the checkpoints it resumes from) and start its task."""
        try:
            key = next(self.keys)
            folders = self.work.folders(unit)
            checkpoints = [_resumed(f, c) for f, c in zip(folders, unit.configs)] if unit.resume else None
            self.ray.get(self.ledger.register.remote(key, len(folders), checkpoints))
            configs = [c.to_dict() for c in unit.configs]
            ref = self.train.remote(key, configs, self.spec, self.ledger)
        except BaseException:
            for lock in locks:
                lock.release()
            raise
        task = UnitInFlight(key, unit, folders, locks, self.work.plots)
        self.tasks[ref] = self.by_key[key] = task
        self.progress.tasks += 1
        self.progress.bytes_to_tasks += len(pickle.dumps((key, configs, self.spec), protocol=5))

    def _apply_drained(self) -> None:
        for entry in self.ray.get(self.ledger.drain.remote()):
            self._apply(entry)

    def _apply(self, entry: tuple[Any, ...]) -> None:
        """One drained entry: an attempt that started, or a call on a run folder (see :data:`ray_ledger.Drained`)."""
        task = self.by_key.get(entry[1])
        if task is None:  # a late call of a task already settled: nothing to write it into
            return
        if entry[0] == "begin":
            task.attempts = entry[2]
            self.progress.retried += entry[2] > 1
        else:
            task.apply(*entry[2:])

    def _settle(self, ref: Any) -> None:
        """A task has ended: apply its last calls, mark its unfinished runs, release their locks."""
        ray, task = self.ray, self.tasks.pop(ref)
        self._apply_drained()  # its final post is in the ledger before it returns
        error, cancelled = "", False
        try:
            ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            cancelled = True
        except ray.exceptions.RayError as err:
            error = _task_error(ray, err)
        done = [task.outcome(i, error, cancelled) for i in range(len(task.folders))]
        for lock in task.locks:
            lock.release()
        self.ledger.forget.remote(task.key)
        del self.by_key[task.key]
        self.outcomes += done
        if self.on_stack_done is not None:
            self.on_stack_done(done)

    def _abort(self) -> None:
        """A crash or a second Ctrl-C: stop every task, keep applying what they send until they have ended (best
        effort: the crash may be the disk's), then release their locks."""
        ray = self.ray
        with contextlib.suppress(Exception):
            self.ledger.stop.remote()
        pending = list(self.tasks)
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
            with contextlib.suppress(Exception):
                self._apply_drained()
        for task in self.tasks.values():
            for lock in task.locks:
                lock.release()

    def _report(self, final: bool = False) -> None:
        """Update the counts and hand them to ``on_progress``."""
        progress = self.progress
        progress.finished = sum(o.status in ("completed", "diverged") for o in self.outcomes)
        progress.failed = sum(o.status == "failed" for o in self.outcomes)
        progress.running = sum(len(t.folders) - len(t.ended) for t in self.tasks.values())
        progress.finished += sum(o.status != "interrupted" for t in self.tasks.values() for o in t.ended.values())
        if final:
            with contextlib.suppress(Exception):
                traffic = self.ray.get(self.ledger.counters.remote(), timeout=CONNECT_TIMEOUT_S)
                progress.bytes_to_tasks += traffic["to_tasks"]
                progress.bytes_from_tasks = traffic["from_tasks"]
        if self.on_progress is not None:
            self.on_progress(progress)


def _resumed(folder: RunFolder, config: Config) -> tuple[bytes, list[dict[str, Any]]]:
    """What a unit resumes from, for the ledger: ``checkpoint.pt`` as it is, and the history inside it."""
    data, state = folder.checkpoint_file_for(config)
    return data, [dict(row) for row in state["history"]]


def _finished(folder: RunFolder, info: dict[str, Any]) -> RunOutcome:
    from emabench.runs.unit import RunOutcome

    return RunOutcome(
        folder,
        str(info["status"]),
        int(info["epochs"]),
        str(info["stop_reason"]),
        float(info["wall_time_s"]),
        int(info["resumed_from_epoch"]),
    )
