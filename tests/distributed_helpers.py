"""Run a function on N CPU processes joined by a gloo process group (torch.multiprocessing spawn).

``spawn(fn, world, *args)`` starts ``world`` processes, each running ``fn(rank, world, *args)`` inside an initialised
process group. Rank 0 opens the rendezvous store on port 0, so the operating system hands it a free port at the moment
it binds (no window in which another test could take it), and tells the others through a file in a fresh temporary
directory. An assertion failing in any process fails the caller with that process's traceback.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TIMEOUT = timedelta(seconds=120)  # generous: 4 processes share 2 cores, alongside whatever else runs


def _store(rank: int, world: int, rendezvous: Path) -> dist.TCPStore:
    port_file = rendezvous / "port"
    if rank == 0:
        store = dist.TCPStore("127.0.0.1", 0, world, is_master=True, timeout=TIMEOUT, wait_for_workers=False)
        written = rendezvous / "port.tmp"
        written.write_text(str(store.port))
        written.rename(port_file)  # atomic: the others never read a half-written port
        return store
    deadline = time.monotonic() + TIMEOUT.total_seconds()
    while not port_file.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {rank}: no rendezvous port from rank 0 in {TIMEOUT}")
        time.sleep(0.01)
    return dist.TCPStore("127.0.0.1", int(port_file.read_text()), world, is_master=False, timeout=TIMEOUT)


def _entry(rank: int, world: int, rendezvous: str, fn: Callable, args: tuple) -> None:
    torch.set_num_threads(1)
    store = _store(rank, world, Path(rendezvous))
    dist.init_process_group("gloo", rank=rank, world_size=world, store=store, timeout=TIMEOUT)
    try:
        fn(rank, world, *args)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable, world: int, *args: object) -> None:
    """Run ``fn`` on ``world`` processes; once more if one is aborted by torch's C++ (SIGABRT, "terminate called
    without an active exception": seen here about once in ten runs of a 2-rank group, in torch's threads, not in the
    test's code). A failed assertion is never retried: it raises ``ProcessRaisedException``, not this."""
    for attempt in (1, 2):
        try:
            with tempfile.TemporaryDirectory(prefix="rendezvous-") as rendezvous:
                mp.spawn(_entry, args=(world, rendezvous, fn, args), nprocs=world, join=True)
            return
        except mp.ProcessExitedException as crash:
            if crash.signal_name != "SIGABRT" or attempt == 2:
                raise
            print(f"distributed_helpers.spawn: rank {crash.error_index} aborted (SIGABRT); running the group again")
