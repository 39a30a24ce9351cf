"""The local executor: a sweep's units in worker processes, one unit handed out whenever a worker is free."""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

import torch

from emabench.runs import observe
from emabench.runs.lock import RunLock
from emabench.runs.plan import Unit
from emabench.runs.unit import RunOutcome
from emabench.runs.work import SweepWork, init_worker, stack_worker


def _start_method() -> str:
    """``fork`` on Linux while CUDA is untouched: workers inherit the imported modules instead of spending ~2 s
    importing torch each. CUDA cannot survive a fork, and other platforms default to spawn for good reasons."""
    if sys.platform.startswith("linux") and not torch.cuda.is_initialized():
        return "fork"
    return "spawn"


def run_in_pool(
    units: list[Unit], work: SweepWork, jobs: int, on_stack_done: Callable[[list[RunOutcome]], None] | None
) -> list[RunOutcome]:
    """Train units in ``jobs`` worker processes, handing one out (locked by this process) whenever a worker is
    free. A stop request starts nothing more and reaches running workers through a shared event; they stop after
    their current epoch.

    Every worker trains with this process's torch thread count (``--threads``): a result depends on the thread
    count (oneDNN's convolutions and BatchNorm split work by it), so a run gives the same bytes whether it trains
    here, in a worker, or in a sweep of another ``--jobs``.

    Each worker gets this process's run observer (:mod:`emabench.runs.observe`) and reports the runs it writes; a
    failure of a worker's copy comes back with its unit's outcomes and is noted here."""
    threads = torch.get_num_threads()
    context = multiprocessing.get_context(_start_method())
    shared, observer = context.Event(), observe.current()
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=init_worker, initargs=(shared, threads, observer)
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
                    running[pool.submit(stack_worker, *work.arguments(unit))] = locks
            finished, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED) if running else ((), ())
            for future in finished:
                for lock in running.pop(future):
                    lock.release()
                done, failure = future.result()
                if failure is not None:
                    observer.note_failure(failure)
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
