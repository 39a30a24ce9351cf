"""Scale-out on Ray: a sweep's units of work (stacks of runs) as Ray tasks instead of local worker processes.

``emabench sweep --engine ray`` plans the same units as the local engines (same stacks, same seeds, so the same
results) and hands them to :func:`run_units`. Ray is optional (``pip install 'emabench[ray]'``) and imported only
here, only when asked for.

Where the tasks run:

- ``RAY_ADDRESS`` set: the existing cluster at that address (``ray.init(address=...)``, with whatever Ray itself
  needs to connect, e.g. the cluster's auth token); the driver disconnects afterwards, the cluster keeps running;
- Ray already initialised in this process (from Python, e.g. with your own ``runtime_env``): used as it is;
- otherwise a local Ray instance with ``jobs`` CPUs, shut down when the sweep ends.

What a real cluster needs:

- emabench (with the same torch) installed on every node, or shipped with the job: initialise Ray yourself with
  ``ray.init(address=..., runtime_env={"working_dir": ...})`` and call :func:`emabench.runs.sweep.sweep`;
- the runs folder on storage every node can read and write at the same path (a shared filesystem such as NFS):
  tasks write their run folders where they run, the driver reads them to plan, skip and resume;
- the per-run locks are ``flock`` locks taken by the driver on that filesystem. They keep two sweeps (two drivers)
  from training the same run only where the filesystem gives ``flock`` its meaning across machines (NFS on Linux
  maps it to POSIX locks; some parallel filesystems need a mount option or keep locks per node).

Each task asks for one CPU and sets torch to one thread, so ``--jobs`` is the number of tasks in flight.
``device: cuda`` runs also ask Ray for one GPU each (the driver checks the device before anything starts, so it
must see CUDA too); ``device: auto`` runs ask for none and use their node's first GPU if it has one, unscheduled by
Ray, so prefer ``cpu`` or ``cuda`` on a mixed cluster. A task is not retried by Ray: if a node is lost, the sweep
stops the other tasks after their current epoch and fails; re-running the same command continues from what is on
disk (DONE runs are skipped, checkpointed ones resumed) like after any interruption.

Stopping (Ctrl-C, SIGTERM, or any ``stop`` callback): the driver starts nothing new and sets a flag held by a tiny
Ray actor (:class:`_StopFlag`, no CPU). Each task asks that actor after every epoch, without waiting for the answer
(:class:`_StopPoll`), so a running task checkpoints its unfinished runs and returns ``interrupted`` within an epoch
or two, exactly as a local worker process does. An actor needs no shared file name and leaves nothing behind: it
lives as long as the sweep. An error (a task's, or the driver's) sets the flag too. A second Ctrl-C also cancels
the tasks, which raises ``KeyboardInterrupt`` inside them (their runs are marked interrupted and keep their last
checkpoint). Either way the driver waits for the running tasks to end before it releases their runs' locks.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import threading
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from emabench.errors import ConfigError, EmabenchError, RunError

if TYPE_CHECKING:  # at run time imported where needed: Ray workers (the stop-flag actor too) unpickle this module,
    # and importing torch and the trainer there would delay the actor and stagger the tasks' start on a small machine
    from emabench.runs.lock import RunLock
    from emabench.runs.plan import Unit
    from emabench.runs.unit import RunOutcome, SweepWork

CPUS_PER_TASK = 1  # the seed MLP gains nothing from more threads; --jobs counts tasks (and CPUs)
POLL_S = 0.2  # how often the driver checks for a stop request while tasks run
CONNECT_TIMEOUT_S = 10.0  # for the RAY_ADDRESS check before ray.init


def require_ray() -> ModuleType:
    """The ``ray`` module, or a one-line :class:`ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'emabench[ray]'") from None
    return ray


def run_units(
    units: list[Unit], work: SweepWork, jobs: int, on_stack_done: Callable[[list[RunOutcome]], None] | None
) -> list[RunOutcome]:
    """Train ``units`` as Ray tasks, at most ``jobs`` at a time, each claimed (locked) by this process just before
    it is submitted and released when its task has ended. Returns every run's outcome, as the local pool does."""
    ray = require_ray()
    if not units:  # all DONE, or left to another sweep: no cluster to start or reach
        return []
    initialised = _connect(ray, jobs)
    try:
        return _run(ray, units, work, jobs, on_stack_done)
    finally:
        if initialised:  # stops the local instance; from a cluster, only disconnects (the cluster keeps running)
            ray.shutdown()


def _connect(ray: ModuleType, jobs: int) -> bool:
    """Connect to ``RAY_ADDRESS`` or start a local instance; ``True`` if this call did (and so must undo it)."""
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        _check_reachable(address)
        options: dict[str, Any] = {"address": address, "logging_level": logging.WARNING}
    else:  # a private instance: its start-up notices (token generated, ...) are noise here
        options = {"num_cpus": jobs, "include_dashboard": False, "logging_level": logging.ERROR}
    main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(log_to_driver=False, **options)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at RAY_ADDRESS={address}" if address else "a local Ray instance"
        raise RunError(f"--engine ray: cannot start or reach {where} ({_first_line(err)})") from None
    finally:
        if main:  # ray.init replaces SIGTERM's handler with sys.exit; keep the caller's (a deferred stop)
            signal.signal(signal.SIGTERM, sigterm)
    return True


def _check_reachable(address: str) -> None:
    """Refuse a ``host:port`` that nothing answers on at once: Ray itself retries such an address for minutes."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\[\]/]+?)\]?:(\d+)", address)
    if match is None:  # "auto", "local", anything else: left to Ray
        return
    try:
        socket.create_connection((match[1], int(match[2])), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise RunError(f"--engine ray: nothing answers at RAY_ADDRESS={address} ({err.strerror or err})") from None


def _run(
    ray: ModuleType,
    units: list[Unit],
    work: SweepWork,
    jobs: int,
    on_stack_done: Callable[[list[RunOutcome]], None] | None,
) -> list[RunOutcome]:
    """The local pool's loop (:func:`emabench.runs.pool.run_in_pool`) with Ray tasks in place of futures."""
    flag = ray.remote(num_cpus=0)(_StopFlag).remote()
    train = ray.remote(max_retries=0)(_train_unit)
    queue, outcomes = list(reversed(units)), []
    running: dict[Any, list[RunLock]] = {}  # task (an ObjectRef) → the locks of its runs
    aborting = True  # until the loop ends normally: a crash or a second Ctrl-C
    stopping = False
    try:
        while queue or running:
            if not stopping and work.stopping():
                stopping = True
                flag.set.remote()
            if stopping:
                while queue:
                    outcomes += work.not_started(queue.pop())
            while queue and len(running) < jobs:
                for unit, locks in work.claim(queue.pop(), outcomes):
                    running[_submit(train, unit, work, flag)] = locks
            finished, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S) if running else ([], [])
            for task in finished:
                for lock in running.pop(task):
                    lock.release()
                done = _result(ray, task)
                outcomes += done
                if on_stack_done is not None:
                    on_stack_done(done)
        aborting = False
    except KeyboardInterrupt:
        for task in running:
            ray.cancel(task, force=False)  # KeyboardInterrupt inside the task: it marks its runs interrupted
        raise
    finally:
        if aborting:
            flag.set.remote()  # the others stop after their current epoch
            _await(ray, list(running))
            for locks in running.values():  # their runs stay locked until their tasks have stopped writing
                for lock in locks:
                    lock.release()
        ray.kill(flag)
    return outcomes


def _submit(train: Any, unit: Unit, work: SweepWork, flag: Any) -> Any:
    """Start ``unit`` as a task of the remote function ``train`` (:func:`_train_unit`); its ObjectRef."""
    gpus = 1 if any(c.device.startswith("cuda") for c in unit.configs) else 0
    task = train.options(num_cpus=CPUS_PER_TASK, num_gpus=gpus)
    return task.remote(*work.arguments(unit), flag)


def _result(ray: ModuleType, task: Any) -> list[RunOutcome]:
    """A finished task's outcomes; its user error as the same one-line error, a lost task as a :class:`RunError`."""
    try:
        return ray.get(task)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, EmabenchError):
            raise err.cause from None
        raise
    except ray.exceptions.RayError as err:  # a worker or node died, the task was cancelled, ...
        raise RunError(f"a Ray task was lost ({_first_line(err)}); re-run the same command to continue") from None


def _await(ray: ModuleType, tasks: list[Any]) -> None:
    """Wait (interruptibly) until every task has ended, whatever its result."""
    while tasks:
        _, tasks = ray.wait(tasks, num_returns=len(tasks), timeout=POLL_S)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


# --- inside the tasks ---------------------------------------------------------------------------------------------


def _train_unit(
    configs: list[dict[str, Any]], folder: str, resume: bool, checkpoint_every: int, plots: bool, flag: Any
) -> list[RunOutcome]:
    """One Ray task: the local worker's body (:func:`emabench.runs.unit.stack_worker`), stopped by the driver's
    flag."""
    import torch

    from emabench.runs.unit import stack_worker

    torch.set_num_threads(CPUS_PER_TASK)
    return stack_worker(configs, folder, resume, checkpoint_every, plots, stop=_StopPoll(flag))


class _StopFlag:
    """The sweep's stop request, held by a Ray actor that the driver sets and every task asks."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class _StopPoll:
    """A task's view of :class:`_StopFlag`: the first call waits for the answer (a task that starts after the
    request trains nothing); later calls collect the answer to the previous question and ask again, so an epoch
    never waits for the network. A flag that cannot be reached (the driver is gone) reads as a stop."""

    def __init__(self, flag: Any) -> None:
        self._flag = flag
        self._pending: Any = None
        self._stop = False
        self._asked = False

    def __call__(self) -> bool:
        import ray

        if self._stop:
            return True
        try:
            if not self._asked:
                self._asked = True
                self._stop = ray.get(self._flag.is_set.remote())
            elif self._pending is not None and ray.wait([self._pending], timeout=0)[0]:
                self._stop = ray.get(self._pending)
                self._pending = None
        except ray.exceptions.RayError:
            self._stop = True
        if not self._stop and self._pending is None:
            self._pending = self._flag.is_set.remote()
        return self._stop
