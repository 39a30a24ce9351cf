"""Run a function on N CPU processes joined by a gloo process group (torch.multiprocessing spawn).

``spawn(fn, world, *args)`` starts ``world`` processes, each running ``fn(rank, world, *args)`` inside an initialised
process group on a free port (bound to port 0 first, so parallel test runs never collide). An assertion failing in
any process fails the caller with that process's traceback.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _entry(rank: int, world: int, port: int, fn: Callable, args: tuple) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        fn(rank, world, *args)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable, world: int, *args: object) -> None:
    mp.spawn(_entry, args=(world, free_port(), fn, args), nprocs=world, join=True)
