"""``emabench bench scaling``: what one more run costs in a stack. R runs of the seed study (and of seed 003's
digits classifier) trained as one stacked model, one thread, early stopping off: the cost of a replica-epoch at each
R against a solo run's epoch measured in the same session, its flatness from R = 64 up, and the memory a replica
takes (memory in use after an epoch, per replica, between the two largest stacks).

The arithmetic floor: a replica-epoch of the seed study is ~38 MFLOP (1,600 samples through 20-64-32-1 forward and
backward, two evaluations of 400); the batched matmuls it needs run at ~30-45 GFLOP/s on this kind of core
(``torch.bmm`` of R small matrices), so about 1 ms of a replica-epoch is matmul whatever else is saved.
"""

from __future__ import annotations

import ctypes
import gc
import statistics
import time
from pathlib import Path

from emabench.bench.common import Row

STACKS = {"regression": (1, 64, 256, 1024), "digits": (1, 64, 256)}  # digits' LeNet: R = 1024 takes minutes


def bench_scaling(repeats: int = 3, quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    for name, sizes in STACKS.items():
        sizes = sizes[:-1] if quick else sizes
        per_epoch = {r: _epoch_ms(name, r, repeats) for r in sizes}
        solo = per_epoch[1][0]
        for r in sizes[1:]:
            target = "<= 0.05" if r == 256 else ""
            rows.append(
                Row("scaling", f"{name}: a replica-epoch at R = {r} vs a solo epoch", per_epoch[r][0] / r, solo,
                    "ms", target, f"{per_epoch[r][0]:.0f} ms per epoch of the stack")
            )  # fmt: skip
        big, small = sizes[-1], 64
        if big > small:
            memory = (per_epoch[big][1] - per_epoch[small][1]) / (big - small)
            rows.append(
                Row("scaling", f"{name}: a replica-epoch at R = {big} vs at R = {small} (flat = 1)",
                    per_epoch[big][0] / big, per_epoch[small][0] / small, "ms", "<= 1.2",
                    f"a replica costs ~{memory:.2f} MB of memory")
            )  # fmt: skip
    return rows


def _epoch_ms(name: str, replicas: int, repeats: int) -> tuple[float, float]:
    """Median ms per epoch of ``replicas`` stacked runs (after a warm-up epoch), and the MB in use after it."""
    from emabench.config import load_config, shipped_config_path, with_overrides
    from emabench.tasks.data import make_dataset
    from emabench.train.loop import Trainer

    config = with_overrides(
        load_config(shipped_config_path(name)),
        {"device": "cpu", "train.max_epochs": 10_000, "train.early_stopping.patience": None},
    )
    configs = [with_overrides(config, {"seed": seed}) for seed in range(replicas)]
    trainer = Trainer(configs, make_dataset(config.data, config.task))
    trainer.run_epoch()
    epochs = 3 if replicas <= 64 else 1
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(epochs):
            trainer.run_epoch()
        times.append((time.perf_counter() - start) / epochs * 1e3)
    memory = _memory_mb()
    del trainer
    gc.collect()
    return statistics.median(times), memory


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (malloc.h), field for field."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")
    ]  # fmt: skip


def _memory_mb() -> float:
    """The MB this process's allocator has handed out and not taken back (glibc's ``mallinfo2``): unlike resident
    memory it falls when a trainer is freed, which the command line's allocator settings (``cli/memory.py``) keep
    resident. Resident memory from ``/proc`` where there is no ``mallinfo2``; NaN elsewhere."""
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
        mallinfo2.restype = _MallInfo2
        info = mallinfo2()
        return (info.uordblks + info.hblkhd) / 2**20
    except (OSError, AttributeError):
        pass
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return float("nan")
    import resource

    return pages * resource.getpagesize() / 2**20
