"""Stochastic weight averaging / Polyak averaging, its learning-rate annealing, and BatchNorm re-estimation."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn

from emabench.averaging.base import Averager, BufferPolicy, check_int


class SWA(Averager):
    """Equal-weight average of snapshots (Izmailov et al. 2018; Polyak–Ruppert averaging with ``every=1``).

    With ``t`` the number of ``update()`` calls so far (this one included), a snapshot is taken when
    ``t ≥ start_step`` and ``(t − start_step) % every == 0``:

        ``W ← W + (θ − W)/(n + 1)``,  ``n ← n + 1``

    so the first snapshot copies (``n = 0``) and ``W`` is the mean of the ``n`` snapshots, exactly as torch
    ``AveragedModel(model, multi_avg_fn=get_swa_multi_avg_fn())`` (θ = 1, 2, 3 → 2.0). Before the first snapshot
    ``averaged_model`` keeps the weights the model had at construction, as torch's does.

    Examples: Polyak averaging from step T0 is ``SWA(model, start_step=T0)``; SWA over the last epochs with one
    snapshot per epoch is ``SWA(model, start_step=swa_start_epoch * steps_per_epoch, every=steps_per_epoch)``.

    Buffers default to ``"copy"``: averaged BatchNorm statistics do not describe the averaged weights, so re-estimate
    them with :func:`update_bn` on training data before evaluating the average.
    """

    def __init__(
        self, model: nn.Module, *, start_step: int = 0, every: int = 1, buffers: BufferPolicy = "copy"
    ) -> None:
        check_int("start_step", start_step, 0)
        check_int("every", every, 1)
        super().__init__(model, buffers=buffers)
        self.start_step = start_step
        self.every = every
        self._register_counter("n_averaged", 0)

    @property
    def n_averaged(self) -> int:
        """How many snapshots the average holds."""
        return self._n_averaged

    @property
    def decay(self) -> float:
        """The weight ``n/(n + 1)`` kept on the average by the last snapshot (0 before and at the first)."""
        return (self._n_averaged - 1) / self._n_averaged if self._n_averaged else 0.0

    def update(self) -> None:  # autograd: handled by the tensor paths (base.py)
        self._step += 1
        t = self._step
        if t < self.start_step or (t - self.start_step) % self.every != 0:
            return
        self._lerp_to_online(1.0 / (self._n_averaged + 1))  # weight 1 at n = 0: the first snapshot copies
        self._n_averaged += 1


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
    if swa_lr < 0 or initial_lr < 0:
        raise ValueError(f"learning rates must be >= 0, got initial_lr={initial_lr}, swa_lr={swa_lr}")
    x = 1.0 if anneal_epochs == 0 else min(1.0, epoch / anneal_epochs)
    alpha = (1.0 - math.cos(math.pi * x)) / 2.0 if strategy == "cos" else x
    return swa_lr * alpha + initial_lr * (1.0 - alpha)


@torch.no_grad()
def update_bn(batches: Iterable, model: nn.Module | Averager, device: torch.device | str | None = None) -> None:
    """Recompute BatchNorm running statistics of ``model`` (or of an averager's ``averaged_model``) from ``batches``.

    torch ``swa_utils.update_bn``: every BatchNorm layer's statistics are reset and re-estimated as the cumulative
    mean (``momentum=None``) over one pass of ``batches`` (each a tensor, or a list/tuple whose first item is the
    input), in train mode and without gradients. The layers' momenta and the model's ``training`` flag are restored
    afterwards, also if a batch raises. A model without BatchNorm is left untouched.
    """
    target = model.averaged_model if isinstance(model, Averager) else model
    momenta = {m: m.momentum for m in target.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
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
