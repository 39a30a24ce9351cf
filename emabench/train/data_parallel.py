"""One run trained data-parallel over N processes: what the :class:`~emabench.train.loop.Trainer` of each rank does
differently (the launcher is :mod:`emabench.runs.data_parallel`).

Every rank builds the same model, optimizer, schedule and averagers from the same config (same seed), wraps the
model in ``DistributedDataParallel`` and draws the same epoch order from the same generator. Of every batch of
``B = batch_size`` samples, rank r takes the rows ``[⌊rB/N⌋, ⌊(r+1)B/N⌋)`` (``b_r`` of them) and scales its mean
loss ``L_r`` by ``N·b_r/B``, so DDP's mean of the ranks' gradients is

    ``(1/N)·Σ_r (N·b_r/B)·∇L_r = Σ_r (b_r/B)·∇L_r = ∇L``,  the gradient of the whole batch's mean loss,

and every rank takes the optimizer step of a single process on the whole batch (within float rounding: the sum is
taken in another order). A rank left without rows (``B < N``) computes on one row with weight 0, so it still joins
DDP's all-reduce. After each step the model's buffers (BatchNorm statistics) are rank 0's on every rank, as DDP's
``broadcast_buffers`` makes them at the next forward, but before the averagers see them; the averagers then stay
identical without communication (:func:`~emabench.averaging.verify_consistent` checks it every epoch).

Every rank evaluates; the epoch's numbers that decide anything (training loss summed over the ranks' rows, rank 0's
validation metrics) are made the same on every rank, so the plateau scheduler and early stopping decide alike and
no rank waits for one that stopped. What is not equal to one process: dropout (each rank draws its own masks for
its own rows from its own stream) and BatchNorm (statistics of each rank's rows, rank 0's kept).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from emabench.averaging import Averager, verify_consistent
from emabench.config import Config
from emabench.errors import ConfigError, RunError

MAX_PROCESSES_PER_CPU = 4  # beyond this, processes only wait for a core

# Every DDP wrapper made here, kept until the process exits. DDP's reducer holds the process group; if the reducer
# were freed last, gloo's destructor would run with the GIL held and join gloo's worker thread, which may be waiting
# for the GIL to free the tensors of the last collective: a deadlock (met here when a rank stops on an error;
# pytorch/pytorch#56297). A worker process ends without running destructors (os._exit after a fork).
_KEPT: list[DistributedDataParallel] = []


def parallel_device(config: Config, nproc: int, cpus: int, gpus: int) -> str:
    """``cpu`` or ``cuda`` for a run of ``config`` on ``nproc`` processes, or a :class:`ConfigError` saying why it
    cannot be (``cpus``, ``gpus``: what this machine has). ``device: auto`` is CUDA when every rank has a GPU."""
    name = config.model.name
    if name != "custom":
        raise ConfigError(
            f"--nproc {nproc}: model.name {name!r} is a stacked model, whose sweeps train many runs as one model "
            "(emabench sweep --jobs N spreads them over processes); --nproc splits one run of model: {name: custom}"
        )
    if nproc > MAX_PROCESSES_PER_CPU * cpus:
        raise ConfigError(
            f"--nproc {nproc}: more than {MAX_PROCESSES_PER_CPU} processes per CPU ({cpus} CPUs here: at most "
            f"{MAX_PROCESSES_PER_CPU * cpus})"
        )
    device = config.device
    if device == "cuda" and gpus < nproc:
        raise ConfigError(
            f"--nproc {nproc} with device: 'cuda' needs a GPU per process (rank r uses cuda:r): {gpus} here"
        )
    device = "cuda" if device == "cuda" or (device == "auto" and gpus >= nproc) else "cpu"
    if device == "cpu" and config.train.precision == "fp16":
        raise ConfigError(
            f"train.precision: 'fp16' needs CUDA, and --nproc {nproc} trains on the CPU here (allowed: fp32, bf16)"
        )
    return device


class DataParallel:
    """This process's part of a data-parallel run: rank ``rank`` of ``world``, training on ``device``.

    Every method that communicates is a collective: all ranks call it, in the same order.
    """

    def __init__(self, rank: int, world: int, device: torch.device) -> None:
        self.rank = rank
        self.world = world
        self.device = device
        self._buffers: list[torch.Tensor] = []

    @classmethod
    def from_environment(cls, device: str) -> DataParallel:
        """Join the process group that ``torch.distributed.run``'s variables describe (``RANK``, ``WORLD_SIZE``,
        ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): gloo on the CPU; on CUDA, rank r on ``cuda:r`` with NCCL
        for CUDA tensors and gloo for the few CPU ones (the averagers' consistency checksums, the stop flag)."""
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device == "cuda":
            torch.cuda.set_device(local)
            where = torch.device("cuda", local)
            dist.init_process_group("cpu:gloo,cuda:nccl", device_id=where)
        else:
            where = torch.device("cpu")
            dist.init_process_group("gloo")
        return cls(dist.get_rank(), dist.get_world_size(), where)

    def close(self) -> None:
        """Leave the process group (the DDP wrappers keep it alive until the process exits: :data:`_KEPT`)."""
        if dist.is_initialized():
            dist.destroy_process_group()

    # --- the model ------------------------------------------------------------------------------------------------
    def wrap(self, model: nn.Module, seed: int) -> DistributedDataParallel:
        """``model`` in DDP (it broadcasts rank 0's weights, already the same: same seed). Rank r > 0 then gets its
        own stream of torch's global generator, which a user's dropout draws from (rank 0 keeps the run's)."""
        self._buffers = [b for b in model.buffers() if b.numel()]
        ids = [self.device.index] if self.device.type == "cuda" else None
        # buffers are made rank 0's after every step (synced_buffers), before the averagers read them
        wrapped = DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)
        _KEPT.append(wrapped)
        if self.rank:
            torch.manual_seed(_stream_seed(seed, self.rank))
        return wrapped

    def share(
        self, x: torch.Tensor, y: torch.Tensor, masks: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], int, float]:
        """This rank's rows of a batch ``(R, B, …)``, how many count (``b_r``) and its loss weight ``N·b_r/B``."""
        size = x.shape[1]
        start, end = self.rank * size // self.world, (self.rank + 1) * size // self.world
        if end == start:  # fewer rows than ranks: one row of weight 0 keeps this rank in DDP's all-reduce
            return x[:, :1], y[:, :1], [m[:, :1] for m in masks], 0, 0.0
        rows = slice(start, end)
        return x[:, rows], y[:, rows], [m[:, rows] for m in masks], end - start, self.world * (end - start) / size

    @torch.no_grad()
    def synced_buffers(self) -> None:
        """Rank 0's buffers on every rank (after each optimizer step; nothing to do for a model without)."""
        for buffer in self._buffers:
            dist.broadcast(buffer, src=0)

    # --- once per epoch -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def agree(
        self, train_loss: torch.Tensor, metrics: dict[str, dict[str, torch.Tensor]]
    ) -> tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]]]:
        """The epoch's training loss summed over the ranks (each holds its rows' share) and rank 0's validation
        metrics, on every rank: what the scheduler, early stopping and the history read."""
        train_loss = train_loss.clone()
        dist.all_reduce(train_loss)
        names = [(model, metric) for model in metrics for metric in metrics[model]]
        table = torch.stack([metrics[m][k].to(torch.float64) for m, k in names])
        dist.broadcast(table, src=0)
        agreed: dict[str, dict[str, torch.Tensor]] = {model: {} for model in metrics}
        for row, (model, metric) in zip(table, names):
            agreed[model][metric] = row.to(metrics[model][metric].dtype)
        return train_loss, agreed

    def check(self, averagers: dict[str, Averager]) -> None:
        """A :class:`RunError` on every rank if an averager's state differs across ranks (it must not: every rank
        updates it from the same weights)."""
        for name, averager in averagers.items():
            differing = verify_consistent(averager, raise_error=False)
            if differing:
                raise RunError(
                    f"averagers.{name} differs across the {self.world} processes (ranks {differing} do not match "
                    "rank 0): the ranks' weights or buffers went apart"
                )

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any rank (a stop request that reached one rank stops all after this epoch)."""
        value = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    # --- checkpoints ----------------------------------------------------------------------------------------------
    def generator_states(self) -> list[torch.Tensor]:
        """Every rank's state of torch's global generator (its dropout stream), gathered on every rank."""
        mine = torch.get_rng_state()
        states = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(states, mine)
        return states

    def restore_generator(self, states: list[Any] | None, seed: int, step: int) -> None:
        """This rank's stream from a checkpoint's :meth:`generator_states`; a rank the checkpoint did not have (it
        was saved by fewer processes) starts a fresh stream of its own."""
        if states is not None and self.rank < len(states):
            torch.set_rng_state(states[self.rank])
        elif self.rank:
            torch.manual_seed(_stream_seed(seed, self.rank, step))


def _stream_seed(seed: int, *key: int) -> int:
    """A seed for torch's generator from the run's seed and ``key``, apart from the run's own stream."""
    return int(np.random.SeedSequence([seed, *key]).generate_state(1, np.uint64)[0])
