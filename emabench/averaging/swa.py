"""Stochastic weight averaging / Polyak averaging, its learning-rate annealing, and BatchNorm re-estimation."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn

from emabench.averaging.base import Averager, BufferPolicy
from emabench.averaging.checks import check_int, check_number


class SWA(Averager):
    """Equal-weight average of snapshots (Izmailov et al. 2018; Polyak–Ruppert averaging with ``every=1``).

    With ``t`` the optimizer step (passed to ``update(t)``, or the number of calls), a snapshot is taken at the
    steps with ``t ≥ start_step`` and ``(t − start_step) % every == 0``:

        ``W ← W + (θ − W)/(n + 1)``,  ``n ← n + 1``

    so the first snapshot copies (``n = 0``) and ``W`` is the mean of the ``n`` snapshots, exactly as torch
    ``AveragedModel(model, multi_avg_fn=get_swa_multi_avg_fn())`` (θ = 1, 2, 3 → 2.0). Before the first snapshot
    ``averaged_model`` keeps the weights the model had at construction, as torch's does. The mean is kept in
    ``dtype`` (at least float32 by default: in bfloat16 ``(θ − W)/(n + 1)`` rounds away after ~50 snapshots).

    Examples: Polyak averaging from step T0 is ``SWA(model, start_step=T0)``; SWA over the last epochs with one
    snapshot per epoch is ``SWA(model, start_step=swa_start_epoch * steps_per_epoch, every=steps_per_epoch)``.

    Buffers default to ``"copy"``: averaged BatchNorm statistics do not describe the averaged weights, so re-estimate
    them with :func:`update_bn` on training data before evaluating the average.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        start_step: int = 0,
        every: int = 1,
        buffers: BufferPolicy = "copy",
        dtype: torch.dtype | None = None,
    ) -> None:
        start_step = check_int("start_step", start_step, 0)
        every = check_int("every", every, 1)
        super().__init__(model, buffers=buffers, dtype=dtype)
        self.start_step = start_step
        self.every = every
        self._register_counter("n_averaged", 0)

    @property
    def n_averaged(self) -> int:
        """How many snapshots the average holds."""
        return self._counts.n_averaged

    @property
    def decay(self) -> float:
        """The weight ``n/(n + 1)`` kept on the average by the last snapshot (0 before and at the first)."""
        n = self._counts.n_averaged
        return (n - 1) / n if n else 0.0

    def _snapshots_until(self, step: int) -> int:
        """How many snapshot steps ``start_step + j·every`` are ``≤ step``."""
        return 0 if step < self.start_step else (step - self.start_step) // self.every + 1

    def _weight(self, last: int, step: int) -> float | None:
        if self._snapshots_until(step) == self._snapshots_until(last):
            return None
        n = self._counts.n_averaged
        self._counts.n_averaged = n + 1
        return 1.0 / (n + 1)  # 1.0 at n = 0: the first snapshot copies


AnnealStrategy = Literal["cos", "linear"]


def swa_annealed_lr(
    epoch: int, *, initial_lr: float, swa_lr: float, anneal_epochs: int = 10, strategy: AnnealStrategy = "cos"
) -> float:
    """The learning rate torch ``SWALR`` sets after ``epoch`` calls of its ``step()``:

    ``lr = swa_lr·α + initial_lr·(1 − α)`` with ``α = a(min(1, epoch/anneal_epochs))``,
    ``a(x) = (1 − cos(πx))/2`` for ``"cos"`` and ``a(x) = x`` for ``"linear"``; ``anneal_epochs = 0`` jumps to
    ``swa_lr`` at once. ``initial_lr`` is the optimizer's lr when the scheduler is created (epoch 0).
    """
    check_int("epoch", epoch, 0)
    check_int("anneal_epochs", anneal_epochs, 0)
    if strategy not in ("cos", "linear"):
        raise ValueError(f"strategy must be 'cos' or 'linear', got {strategy!r}")
    initial_lr = check_number("initial_lr", initial_lr, low=0.0)
    swa_lr = check_number("swa_lr", swa_lr, low=0.0)
    x = 1.0 if anneal_epochs == 0 else min(1.0, epoch / anneal_epochs)
    alpha = (1.0 - math.cos(math.pi * x)) / 2.0 if strategy == "cos" else x
    return swa_lr * alpha + initial_lr * (1.0 - alpha)


@torch.no_grad()
def update_bn(batches: Iterable, model: nn.Module | Averager, device: torch.device | str | None = None) -> None:
    """Recompute BatchNorm running statistics of ``model`` (or of an averager's ``averaged_model``) from ``batches``.

    torch ``swa_utils.update_bn``: every BatchNorm layer's statistics are reset and re-estimated as the cumulative
    mean (``momentum=None``) over one pass of ``batches`` (each a tensor, or a list/tuple whose first item is the
    input), in train mode and without gradients. The layers' momenta and the model's ``training`` flag are restored
    afterwards, also if a batch raises. A model without BatchNorm is left untouched. Besides torch's BatchNorm
    layers, any layer with ``running_mean``, ``momentum`` and ``reset_running_stats()`` counts (e.g. a stacked
    BatchNorm keeping statistics per replica) and must treat ``momentum=None`` as a cumulative average.
    """
    target = model.averaged_model if isinstance(model, Averager) else model
    momenta = {m: m.momentum for m in target.modules() if _is_batchnorm(m)}
    if not momenta:
        return
    was_training = target.training
    try:
        for module in momenta:
            module.reset_running_stats()
            module.momentum = None
        target.train()
        for batch in batches:
            inputs = batch[0] if isinstance(batch, (list, tuple)) else batch
            target(inputs if device is None else inputs.to(device))
    finally:
        for module, momentum in momenta.items():
            module.momentum = momentum
        target.train(was_training)


def _is_batchnorm(module: nn.Module) -> bool:
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return True
    return all(hasattr(module, a) for a in ("running_mean", "momentum", "reset_running_stats"))
