"""The training loop of seed 001, for one run or R stacked runs at once. No disk I/O: it yields history rows.

Per epoch, for every replica r (its own ``torch.Generator`` seeded with its config's ``seed``):
1. draw a fresh permutation of the training set and the epoch's dropout masks from generator r;
2. for each batch of ``batch_size`` consecutive samples of that order (the last partial batch kept): forward with
   dropout, MSE loss, backward, Adam step, EMA ``update()`` — the seed's ``train_one_epoch``;
3. evaluate the raw and the EMA model on the whole validation set in eval mode (no dropout);
4. step ReduceLROnPlateau and early stopping on the monitored model's validation loss (the seed: the EMA's).

Replicas share the data and the architecture and differ in anything else that is per replica (seed, lr, weight
decay, dropout, EMA beta, scheduler and early-stopping settings, max epochs); a replica that stops keeps its
history up to its stop epoch, exactly as if it had run alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from emabench.averaging import EMA
from emabench.averaging.schedules import half_life
from emabench.config import Config
from emabench.data import Dataset
from emabench.errors import ConfigError
from emabench.metrics import regression_metrics
from emabench.model import StackedMLP
from emabench.optim import EarlyStopping, PlateauScheduler, StackedAdam

MODELS = ("raw", "ema")


def resolve_device(requested: str) -> torch.device:
    """``auto`` → CUDA when available (as the seed script), else CPU; ``cuda`` without CUDA is an error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was requested but CUDA is not available here (allowed: auto, cpu)")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def stack_key(cfg: Config) -> tuple[Any, ...]:
    """What replicas must share to train as one stacked model; everything else may differ per replica."""
    ema = cfg.ema.model_dump(exclude={"beta"})
    opt, sched = cfg.train.optimizer, cfg.train.scheduler
    return (
        cfg.device,
        cfg.data.model_dump_json(),
        tuple(cfg.model.hidden_sizes),
        cfg.model.init,
        cfg.train.batch_size,
        opt.name,
        tuple(opt.betas),
        opt.eps,
        sched.name,
        tuple(sorted(ema.items())),
    )


@dataclass(frozen=True)
class EpochRecord:
    """One replica's history row for one epoch; ``stop_reason`` is set on its last epoch."""

    replica: int
    row: dict[str, float]
    stop_reason: str | None = None


class Trainer:
    """Holds the state of R stacked runs; :meth:`run_epoch` advances every still-active replica by one epoch."""

    def __init__(self, configs: Sequence[Config], dataset: Dataset) -> None:
        if not configs:
            raise ValueError("Trainer needs at least one config")
        keys = {stack_key(c) for c in configs}
        if len(keys) != 1:
            raise ConfigError("these configs cannot share one stacked model (they differ in data or architecture)")
        self.configs = list(configs)
        first = configs[0]
        self.device = resolve_device(first.device)
        self.data = dataset.to(self.device)
        self.replicas = len(configs)
        self.generators = [torch.Generator().manual_seed(c.seed) for c in configs]
        self.model = StackedMLP(dataset.n_features, first.model.hidden_sizes, self.replicas)
        self.model.reset_parameters(self.generators, first.model.init)
        self.model.to(self.device)
        opt = first.train.optimizer
        self.optimizer = StackedAdam(
            list(self.model.parameters()),
            lr=[c.train.optimizer.lr for c in configs],
            weight_decay=[c.train.optimizer.weight_decay for c in configs],
            betas=(opt.betas[0], opt.betas[1]),
            eps=opt.eps,
        )
        betas = [c.ema.beta for c in configs]
        ema = first.ema
        self.ema = EMA(
            self.model,
            beta=betas[0] if len(set(betas)) == 1 else torch.tensor(betas),
            update_after_step=ema.update_after_step,
            update_every=ema.update_every,
            inv_gamma=ema.inv_gamma,
            power=ema.power,
            min_value=ema.min_value,
        )
        self.schedulers = [_plateau(c) for c in configs]
        self.stoppers = [EarlyStopping(c.train.early_stopping.patience) for c in configs]
        self.epoch = 0
        self.active = [True] * self.replicas
        self._buffers: tuple[torch.Tensor, list[torch.Tensor]] | None = None
        self._keep = torch.tensor([1.0 - c.model.dropout for c in configs]).view(-1, 1, 1)

    @property
    def done(self) -> bool:
        return not any(self.active)

    def _epoch_batches(self) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """The epoch's shuffled inputs ``(R, n, in)``, targets ``(R, n, 1)`` and dropout masks ``(R, n, h)``.

        Per replica, in this order from its generator: ``randperm(n)``, then ``rand(n, h)`` per hidden layer (the
        mask is ``(u < 1−p)/(1−p)``; see :func:`emabench.model.dropout_masks`). Buffers are reused across epochs.
        """
        n = self.data.x_train.shape[0]
        if self._buffers is None:
            hidden = self.configs[0].model.hidden_sizes
            self._buffers = (
                torch.empty(self.replicas, n, dtype=torch.long),
                [torch.empty(self.replicas, n, h) for h in hidden],
            )
        perm, masks = self._buffers
        for r, generator in enumerate(self.generators):
            torch.randperm(n, generator=generator, out=perm[r])
            for mask in masks:
                mask[r].uniform_(generator=generator)
        on_device = [self._mask_from_uniform(m).to(self.device, non_blocking=True) for m in masks]
        index = perm.to(self.device, non_blocking=True).view(-1)
        xs = self.data.x_train.index_select(0, index).view(self.replicas, n, -1)
        ys = self.data.y_train.index_select(0, index).view(self.replicas, n, -1)
        return xs, ys, on_device

    def _mask_from_uniform(self, uniform: torch.Tensor) -> torch.Tensor:
        return (uniform < self._keep).to(uniform.dtype).div_(self._keep)

    def _train_one_epoch(self) -> torch.Tensor:
        xs, ys, masks = self._epoch_batches()
        n, batch_size = xs.shape[1], self.configs[0].train.batch_size
        loss_sum = torch.zeros(self.replicas, dtype=torch.float64, device=self.device)
        batches = zip(
            xs.split(batch_size, dim=1), ys.split(batch_size, dim=1), *(m.split(batch_size, 1) for m in masks)
        )
        for x, y, *batch_masks in batches:
            losses = self.model.loss_and_grad(x, y, batch_masks)
            self.optimizer.step()
            self.ema.update()
            loss_sum.add_(losses, alpha=x.shape[1])  # no .item(): one sync per epoch, not per step
        return loss_sum / n

    @torch.no_grad()
    def evaluate(self) -> dict[str, dict[str, torch.Tensor]]:
        """Validation metrics ``{model: {metric: (R,)}}`` for the raw and the averaged weights."""
        x, y = self.data.x_val, self.data.y_val
        return {"raw": regression_metrics(self.model(x), y), "ema": regression_metrics(self.ema(x), y)}

    def run_epoch(self) -> list[EpochRecord]:
        """Train and evaluate one epoch; return a record for every replica that was active in it."""
        if self.done:
            return []
        self.epoch += 1
        lrs = list(self.optimizer.lrs)
        train_loss = self._train_one_epoch()
        metrics = self.evaluate()
        names = [(model, metric) for model in MODELS for metric in metrics[model]]
        table = torch.stack([train_loss.double()] + [metrics[m][k] for m, k in names]).cpu().tolist()
        decay = self.ema.decay
        decays = decay.tolist() if isinstance(decay, torch.Tensor) else [decay] * self.replicas
        records = []
        for r in range(self.replicas):
            if not self.active[r]:
                continue
            row = {"epoch": self.epoch, "train_loss": table[0][r], "lr": lrs[r]}
            row.update({f"{m}_{k}": table[i + 1][r] for i, (m, k) in enumerate(names)})
            row.update({"ema_decay": decays[r], "ema_half_life": half_life(decays[r])})
            records.append(EpochRecord(r, row, self._control(r, row)))
        self.optimizer.set_lrs([s.lr for s in self.schedulers])
        return records

    def _control(self, r: int, row: dict[str, float]) -> str | None:
        train = self.configs[r].train
        if not all(math.isfinite(v) for v in row.values()):
            self.active[r] = False
            return "diverged"
        if train.scheduler.name != "none":
            self.schedulers[r].step(row[f"{train.scheduler.monitor}_val_loss"])
        reason = None
        if self.stoppers[r].step(row[f"{train.early_stopping.monitor}_val_loss"], self.epoch):
            reason = "early_stopping"
        elif self.epoch >= train.max_epochs:
            reason = "max_epochs"
        if reason is not None:
            self.active[r] = False
        return reason


def _plateau(cfg: Config) -> PlateauScheduler:
    s = cfg.train.scheduler
    return PlateauScheduler(
        cfg.train.optimizer.lr,
        factor=s.factor,
        patience=s.patience,
        threshold=s.threshold,
        threshold_mode=s.threshold_mode,
        cooldown=s.cooldown,
        min_lr=s.min_lr,
    )


def train(configs: Sequence[Config], dataset: Dataset) -> Iterator[list[EpochRecord]]:
    """Yield each epoch's records until every replica has stopped."""
    trainer = Trainer(configs, dataset)
    while not trainer.done:
        yield trainer.run_epoch()
