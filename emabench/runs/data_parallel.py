"""``emabench run --nproc N``: one run of a custom model trained by N processes, data parallel.

The launcher is torch's own elastic agent (``torch.distributed.launcher.api.elastic_launch``, what ``torchrun
--standalone`` runs): a rendezvous store on a free port, ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``/``MASTER_*`` set for
every worker, a failed rank ending the others, each rank's return value handed back. It runs in this process, with
the workers as this process's children (forked from it on a CPU, so they skip importing torch again: an elastic
launch of 2 trivial workers took 0.9 s forked against 5.2-5.9 s spawned here; spawned for CUDA, which does not
survive a fork). Each worker trains with
:func:`~emabench.runs.unit.train_stack` and a :class:`~emabench.train.data_parallel.DataParallel`; rank 0 writes the
run folder through the usual :class:`~emabench.runs.folder.RunFolder` lifecycle, the other ranks write nothing.

This process holds the run's lock, as :mod:`emabench.runs.single` does, and handles Ctrl-C and SIGTERM itself:
each one it receives is passed on to every worker, once (they run in their own session, as ``torchrun``'s do, so the
terminal's Ctrl-C does not reach them twice). A worker treats the first as a request to stop after the current
epoch, the ranks agree on it (one all-reduce per epoch: a request that reached any rank stops all), rank 0 saves
the checkpoint; a second aborts at once. Torch's agent would forward the signal too, but then waits on workers that
finished normally until it kills them, so it is left SIGHUP and SIGQUIT only.

The ranks report to no run observer (:mod:`emabench.runs.observe`); this process copies the run folder to its
observer once they end (``--track`` copies a ``--nproc`` run when it ends, not epoch by epoch).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from emabench.config import Config
from emabench.errors import EXIT_INTERRUPTED, ConfigError, EmabenchError, InputError, RunError
from emabench.runs import observe
from emabench.runs.folder import RunFolder
from emabench.runs.interrupts import StopRequest
from emabench.runs.single import load_run_config
from emabench.runs.unit import EpochCallback, RunOutcome, train_stack
from emabench.train.build import check_step_warmups, check_task_functions
from emabench.train.classes import check_classes
from emabench.train.data_parallel import DataParallel, parallel_device

# rank 0's progress display: a context manager factory yielding an epoch callback (a progress bar) or None
Progress = Callable[[], contextlib.AbstractContextManager[EpochCallback | None]]
USER_ERRORS = {kind.__name__: kind for kind in (InputError, ConfigError, RunError)}
_ERROR_FILE = "rank{}.json"


@dataclass(frozen=True)
class Job:
    """What every worker is given (picklable: a spawned worker receives it pickled)."""

    config: dict[str, Any]
    folder: str
    resume: bool
    checkpoint_every: int
    device: str
    threads: int
    errors: str  # a folder where a rank leaves the user error it stopped on, for the launcher to raise
    progress: Progress | None


def run(
    config: Config,
    runs_dir: str | Path,
    nproc: int,
    *,
    force: bool = False,
    checkpoint_every: int | None = None,
    threads: int = 1,
    progress: Progress | None = None,
    notice: Callable[[], None] | None = None,
) -> RunOutcome:
    """Train ``config`` (``model: {name: custom}``) on ``nproc`` processes into ``<runs_dir>/<run id>/``, the folder
    a single process would use (``--nproc`` is how a run is trained, not what it is). As :func:`.single.run`: a DONE
    run is skipped unless ``force``, an incomplete one with a checkpoint continues. ``notice`` is called on the
    first Ctrl-C/SIGTERM; a run stopped by one comes back ``interrupted``, a second raises ``KeyboardInterrupt``."""
    folder = RunFolder.for_config(config, Path(runs_dir))
    return _run_in(folder, config, force, False, nproc, checkpoint_every, threads, progress, notice)


def resume(
    path: str | Path,
    nproc: int,
    *,
    checkpoint_every: int | None = None,
    threads: int = 1,
    progress: Progress | None = None,
    notice: Callable[[], None] | None = None,
) -> RunOutcome:
    """Continue the run in folder ``path`` from its checkpoint on ``nproc`` processes (saved by any number)."""
    folder = RunFolder(path)
    return _run_in(folder, load_run_config(folder), False, True, nproc, checkpoint_every, threads, progress, notice)


def _run_in(
    folder: RunFolder,
    config: Config,
    force: bool,
    resuming: bool,
    nproc: int,
    checkpoint_every: int | None,
    threads: int,
    progress: Progress | None,
    notice: Callable[[], None] | None,
) -> RunOutcome:
    gpus = torch.cuda.device_count() if config.device != "cpu" else 0
    device = parallel_device(config, nproc, cpus=_cpus(), gpus=gpus)  # refuse before anything is written
    check_step_warmups([config])
    check_task_functions([config])
    check_classes([config])
    if resuming and not folder.is_done:
        folder.checkpoint_for(config)  # a clear error now if there is nothing to resume from
    if folder.is_done and not force:
        return _skipped(folder)
    lock = folder.try_lock()
    if lock is None:
        raise RunError(f"{folder.path}: another emabench process is training this run")
    with lock, tempfile.TemporaryDirectory(prefix="emabench-ranks-") as errors:
        if folder.is_done and not force:  # finished by another process since the check above
            return _skipped(folder)
        state = None if force else folder.resume_point(config)
        every = checkpoint_every if checkpoint_every is not None else int(state["checkpoint_every"]) if state else 0
        job = Job(config.to_dict(), str(folder.path), state is not None, every, device, threads, errors, progress)
        try:
            return launch(job, nproc, notice)
        finally:
            observe.current().existing(folder)  # the ranks report to no one: the run is copied once they end


def _skipped(folder: RunFolder) -> RunOutcome:
    observe.current().existing(folder)
    return RunOutcome.skipped(folder)


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def launch(job: Job, nproc: int, notice: Callable[[], None] | None = None) -> RunOutcome:
    """Run ``job`` on ``nproc`` workers under torch's elastic agent; rank 0's outcome."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    fork = job.device == "cpu" and sys.platform.startswith("linux") and not torch.cuda.is_initialized()
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"emabench-{uuid.uuid4().hex}",
        rdzv_backend="c10d",  # with rdzv_endpoint: torchrun --standalone, a store on a port the system picks
        rdzv_endpoint="127.0.0.1:0",
        max_restarts=0,  # a failed rank fails the run (a restart would only repeat the failure)
        start_method="fork" if fork else "spawn",
        signals_to_handle="SIGHUP,SIGQUIT",  # SIGINT and SIGTERM: Forwarder
    )
    forwarder = Forwarder(notice)
    with forwarder.installed(), _quiet_torch_elastic():
        try:
            return elastic_launch(config, _worker)(job)[0]
        except ChildFailedError as failed:
            error = _user_error(Path(job.errors), nproc)
            if error is not None:
                raise error from None
            exits = [f.exitcode for f in failed.failures.values()]
            if forwarder.received > 1 or EXIT_INTERRUPTED in exits:  # aborted by a second Ctrl-C/SIGTERM
                raise KeyboardInterrupt from None
            raise
        except SignalException:  # SIGHUP/SIGQUIT: torch's agent killed the workers
            raise KeyboardInterrupt from None


class Forwarder:
    """The launcher's SIGINT/SIGTERM handler: pass every signal on to the workers (this process's children), call
    ``notice`` on the first. The workers decide what a signal means (:class:`~emabench.runs.interrupts.StopRequest`)."""

    def __init__(self, notice: Callable[[], None] | None = None) -> None:
        self.notice = notice
        self.received = 0
        self._first = signal.SIGINT

    def handle(self, signum: int, frame: Any) -> None:
        self.received += 1
        if self.received == 1:
            self._first = signum
        else:  # passed on as the other signal: two of one kind arriving while a worker is inside a C call (an
            # all-reduce) reach its Python handler once, and the abort would be lost (seen in the tests)
            signum = signal.SIGTERM if self._first == signal.SIGINT else signal.SIGINT
        for child in multiprocessing.active_children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)
        if self.received == 1 and self.notice is not None:
            self.notice()

    @contextlib.contextmanager
    def installed(self) -> Iterator[Forwarder]:
        """Handle SIGINT and SIGTERM inside the block (in the main thread; elsewhere signals are not ours)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        # torch's agent takes SIGHUP and SIGQUIT for the launch (and sets an environment variable saying so)
        previous = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGQUIT)}
        previous |= {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        variable = os.environ.get("TORCHELASTIC_SIGNALS_TO_HANDLE")
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                if handler is not None:  # None: set outside Python, cannot be put back from here
                    signal.signal(signum, handler)
            if variable is None:
                os.environ.pop("TORCHELASTIC_SIGNALS_TO_HANDLE", None)
            else:
                os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = variable


@contextlib.contextmanager
def _quiet_torch_elastic() -> Iterator[None]:
    """Torch's agent logs every worker failure with its traceback: a user error must stay one line (a bug keeps
    its traceback: ``ChildFailedError`` carries it)."""
    prefixes = ("torch.distributed.elastic", "torch.distributed.launcher")
    names = [name for name in logging.root.manager.loggerDict if name.startswith(prefixes)] + list(prefixes)
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _user_error(errors: Path, nproc: int) -> EmabenchError | None:
    """The user error of the lowest rank that stopped on one (the others then fail on the broken connection)."""
    for rank in range(nproc):
        path = errors / _ERROR_FILE.format(rank)
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            return USER_ERRORS.get(saved["kind"], RunError)(saved["message"])
    return None


class ReadOnlyRunFolder(RunFolder):
    """The run folder as ranks other than 0 see it: they read its checkpoint to resume, and write nothing."""

    def start(self, config: Config) -> None:
        pass

    def record_epoch(self, row: dict[str, Any]) -> None:
        pass

    def finish(self, *args: Any, **kwargs: Any) -> None:
        pass

    def interrupt(self, info: dict[str, Any]) -> None:
        pass

    def fail(self, config: Config, info: dict[str, Any]) -> None:
        pass

    def resume(self, history: Any) -> None:
        pass

    def save_checkpoint(self, config: Config, state: dict[str, Any]) -> None:
        pass


def _worker(job: Job) -> RunOutcome | None:
    """One rank, started by torch's agent: train the run, rank 0 writing its folder; rank 0's outcome."""
    with contextlib.suppress(OSError):  # as torchrun's workers: a session of their own, signals from the launcher
        os.setsid()
    request = StopRequest()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request.handle)
    torch.set_num_threads(job.threads)
    observe.install(None)  # a forked rank would inherit the launcher's observer; the launcher copies the run itself
    rank = int(os.environ["RANK"])
    try:
        parallel = DataParallel.from_environment(job.device)
        try:
            outcome = _train(job, parallel, request)
        finally:
            parallel.close()
    except EmabenchError as err:
        path = Path(job.errors) / _ERROR_FILE.format(rank)
        path.write_text(json.dumps({"kind": type(err).__name__, "message": str(err)}), encoding="utf-8")
        raise
    except KeyboardInterrupt:  # a second signal; torch's process wrapper would take KeyboardInterrupt for success
        raise SystemExit(EXIT_INTERRUPTED) from None
    return outcome if rank == 0 else None


def _train(job: Job, parallel: DataParallel, request: StopRequest) -> RunOutcome:
    config = Config.model_validate(job.config)
    lead = parallel.rank == 0
    folder = RunFolder(job.folder) if lead else ReadOnlyRunFolder(job.folder)
    display = job.progress() if lead and job.progress is not None else contextlib.nullcontext()
    with display as on_epoch:
        (outcome,) = train_stack(
            [config],
            [folder],
            on_epoch,
            stop=lambda: parallel.any(request.is_set()),  # the same answer on every rank
            checkpoint_every=job.checkpoint_every,
            resume=job.resume,
            plots=False,  # the launcher draws them after its table
            parallel=parallel,
        )
    return outcome
