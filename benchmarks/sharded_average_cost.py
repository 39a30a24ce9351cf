"""Memory and per-step cost of a sharded average (FSDP2, CPU, gloo) against a gather-every-step design.

An MLP of ``--layers`` Linear(width, width) layers, ``fully_shard`` per layer and at the root, on ``--world`` CPU
processes. Per rank it reports

- the bytes the average holds: ``EMA(model)`` keeps its DTensor shards (``local``) vs a full copy (``full``);
- the time of one EMA update: the shard-local update (``EMA.update``, no communication) vs gathering every parameter
  (``DTensor.full_tensor()``, an all-gather) and updating a full copy with it, as an averager that needs whole
  tensors must do at every step. Medians of ``--repeats`` interleaved steps, one thread per process.

Prints rank 0's figures (the others' are alike); asserts nothing. Run:
``.venv/bin/python benchmarks/sharded_average_cost.py --world 2`` (and ``--world 4``).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from emabench.averaging import EMA


def worker(rank: int, world: int, port: int, layers: int, width: int, repeats: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)])
    mesh = init_device_mesh("cpu", (world,))
    for layer in model:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    ema = EMA(model, beta=0.999, update_after_step=0)
    full_copy = {n: p.full_tensor().clone() for n, p in model.named_parameters()}  # the gather design's average
    local_bytes = sum(p.to_local().untyped_storage().nbytes() for p in ema.averaged_model.parameters())
    full_bytes = sum(t.numel() * t.element_size() for t in full_copy.values())

    local_times, gather_times = [], []
    for step in range(1, repeats + 1):
        dist.barrier()
        start = time.perf_counter()
        ema.update(step)
        local_times.append(time.perf_counter() - start)
        dist.barrier()
        start = time.perf_counter()
        with torch.no_grad():
            for name, param in model.named_parameters():
                full_copy[name].lerp_(param.full_tensor(), 0.001)
        gather_times.append(time.perf_counter() - start)
    if rank == 0:
        params = sum(t.numel() for t in full_copy.values())
        local, gather = statistics.median(local_times) * 1e3, statistics.median(gather_times) * 1e3
        print(f"world {world}, {params / 1e6:.2f}M parameters ({layers} x Linear({width}, {width})), rank 0:")
        print(f"  average held: {local_bytes / 2**20:.2f} MiB of shards vs {full_bytes / 2**20:.2f} MiB full copy "
              f"({local_bytes / full_bytes:.3f}x)")  # fmt: skip
        print(f"  per step: shard-local update {local:.2f} ms vs gather-every-step {gather:.2f} ms "
              f"({gather / local:.1f}x), medians of {repeats}")  # fmt: skip
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(worker, args=(args.world, port, args.layers, args.width, args.repeats), nprocs=args.world)


if __name__ == "__main__":
    main()
