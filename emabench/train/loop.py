"""The training loop of seed 001, for one run or R stacked runs at once. No disk I/O: it returns history rows.

Per epoch, for every replica r (its own ``torch.Generator`` seeded with its config's ``seed``):
1. draw a fresh permutation of the training set and the epoch's dropout masks from generator r;
2. for each batch of ``batch_size`` consecutive samples of that order (the last partial batch kept): forward with
   dropout, MSE loss, backward, Adam step, then ``update()`` of every averager — the seed's ``train_one_epoch``;
3. evaluate the raw model and every averaged model on the whole validation set without dropout;
4. step ReduceLROnPlateau (or the SWA schedule) and early stopping on the monitored model's validation loss.

Replicas share the data and the architecture and differ in anything else that is per replica (seed, lr, weight
decay, dropout, the seed EMA's beta, scheduler and early-stopping settings, max epochs). A replica that stops keeps
its history up to its stop epoch, exactly as if it had run alone, and is then dropped from the stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from emabench.averaging import Averager, PostHocEMA, swa_annealed_lr
from emabench.averaging.schedules import half_life
from emabench.config import Config, PostHocSpec, SWASpec
from emabench.errors import ConfigError
from emabench.stack import rows as replica_rows
from emabench.stack.mlp import StackedMLP
from emabench.tasks.data import Dataset
from emabench.tasks.metrics import regression_metrics
from emabench.train.averagers import build_all, decay_of, has_average, is_per_epoch, update_all
from emabench.train.control import EarlyStopping, PlateauScheduler
from emabench.train.optim import StackedAdam


def resolve_device(requested: str) -> torch.device:
    """``auto`` → CUDA when available (as the seed script), else CPU; ``cuda`` without CUDA is an error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was requested but CUDA is not available here (allowed: auto, cpu)")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def stack_key(cfg: Config) -> tuple[Any, ...]:
    """What replicas must share to train as one stacked model; everything else may differ per replica."""
    opt = cfg.train.optimizer
    return (
        cfg.device,
        cfg.data.model_dump_json(),
        tuple(cfg.model.hidden_sizes),
        cfg.model.init,
        cfg.train.batch_size,
        opt.name,
        tuple(opt.betas),
        opt.eps,
        cfg.train.scheduler.name,
        cfg.ema.model_dump_json(exclude={"beta"}),
        repr(cfg.averagers),
    )


@dataclass(frozen=True)
class EpochRecord:
    """One replica's history row for one epoch. On its last epoch ``stop_reason`` is set, and ``final_extra`` holds
    the models that only exist after training (post-hoc EMA: ``{name: {metric: value, "fit_error": e}}``)."""

    replica: int
    row: dict[str, float]
    stop_reason: str | None = None
    final_extra: dict[str, dict[str, float]] = field(default_factory=dict)


class Trainer:
    """Holds the state of R stacked runs; :meth:`run_epoch` advances every still-active replica by one epoch."""

    def __init__(self, configs: Sequence[Config], dataset: Dataset) -> None:
        if not configs:
            raise ValueError("Trainer needs at least one config")
        if len({stack_key(c) for c in configs}) != 1:
            raise ConfigError("these configs cannot share one stacked model (they differ in data or architecture)")
        self.configs = list(configs)  # per stack position; ``ids`` maps positions to the original replica numbers
        self.replicas = len(configs)
        self.ids = list(range(self.replicas))
        first = configs[0]
        self.device = resolve_device(first.device)
        self.data = dataset.to(self.device)
        self.generators = [torch.Generator().manual_seed(c.seed) for c in configs]
        self.model = StackedMLP(dataset.n_features, first.model.hidden_sizes, self.replicas)
        self.model.reset_parameters(self.generators, first.model.init)
        self.model.to(self.device)
        self.model.pack()  # .to() moves each tensor on its own; one buffer again
        opt = first.train.optimizer
        self.optimizer = StackedAdam(
            list(self.model.parameters()),
            lr=[c.train.optimizer.lr for c in configs],
            weight_decay=[c.train.optimizer.weight_decay for c in configs],
            betas=(opt.betas[0], opt.betas[1]),
            eps=opt.eps,
        )
        self.averagers = build_all(self.model, configs, n_train=dataset.x_train.shape[0])
        self.schedulers = [_plateau(c) for c in configs]
        self.stoppers = [EarlyStopping(c.train.early_stopping.patience) for c in configs]
        self.swa_lr_start: list[float | None] = [None] * self.replicas  # lr when the SWA schedule took over
        self.epoch = 0
        self.active = [True] * self.replicas  # by original replica number
        self._buffers: tuple[torch.Tensor, list[torch.Tensor]] | None = None
        self._keep = torch.tensor([1.0 - c.model.dropout for c in configs]).view(-1, 1, 1)

    @property
    def done(self) -> bool:
        return not any(self.active)

    @property
    def step_count(self) -> int:
        return self.optimizer.step_count

    # --- one epoch ------------------------------------------------------------------------------------------------
    def _epoch_batches(self) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """The epoch's shuffled inputs ``(R, n, in)``, targets ``(R, n, 1)`` and dropout masks ``(R, n, h)``.

        Per replica, in this order from its generator: ``randperm(n)``, then ``rand(n, h)`` per hidden layer (the
        mask is ``(u < 1−p)/(1−p)``: a fresh Bernoulli(1−p)/(1−p) mask per sample, as ``nn.Dropout(p)``). Buffers
        are reused across epochs.
        """
        n = self.data.x_train.shape[0]
        if self._buffers is None:
            hidden = self.configs[0].model.hidden_sizes
            positions = len(self.configs)
            self._buffers = (
                torch.empty(positions, n, dtype=torch.long),
                [torch.empty(positions, n, h) for h in hidden],
            )
        perm, masks = self._buffers
        for r, generator in enumerate(self.generators):
            torch.randperm(n, generator=generator, out=perm[r])
            for mask in masks:
                mask[r].uniform_(generator=generator)
        on_device = [(m < self._keep).to(m.dtype).div_(self._keep).to(self.device, non_blocking=True) for m in masks]
        index = perm.to(self.device, non_blocking=True).view(-1)
        xs = self.data.x_train.index_select(0, index).view(len(self.configs), n, -1)
        ys = self.data.y_train.index_select(0, index).view(len(self.configs), n, -1)
        return xs, ys, on_device

    def _train_one_epoch(self) -> torch.Tensor:
        xs, ys, masks = self._epoch_batches()
        n, batch_size = xs.shape[1], self.configs[0].train.batch_size
        loss_sum = torch.zeros(len(self.configs), dtype=torch.float64, device=self.device)
        averagers = list(self.averagers.values())
        batches = zip(
            xs.split(batch_size, dim=1), ys.split(batch_size, dim=1), *(m.split(batch_size, 1) for m in masks)
        )
        for x, y, *batch_masks in batches:
            losses = self.model.loss_and_grad(x, y, batch_masks)
            self.optimizer.step()
            update_all(averagers)
            loss_sum.add_(losses, alpha=x.shape[1])  # no .item(): one sync per epoch, not per step
        return loss_sum / n

    @torch.no_grad()
    def evaluate(self) -> dict[str, dict[str, torch.Tensor]]:
        """Validation metrics ``{model: {metric: (R,)}}`` for the raw and every per-epoch averaged model."""
        x, y = self.data.x_val, self.data.y_val
        results = {"raw": regression_metrics(self.model(x), y)}
        for name, averager in self.averagers.items():
            if not is_per_epoch(averager):
                continue
            if has_average(averager):
                results[name] = regression_metrics(averager.averaged_model(x), y)
            else:
                results[name] = {k: torch.full_like(v, math.nan) for k, v in results["raw"].items()}
        return results

    def run_epoch(self) -> list[EpochRecord]:
        """Train and evaluate one epoch; return a record for every replica that was active in it."""
        if self.done:
            return []
        self.epoch += 1
        lrs = list(self.optimizer.lrs)
        train_loss = self._train_one_epoch()
        metrics = self.evaluate()
        names = [(model, metric) for model in metrics for metric in metrics[model]]
        table = torch.stack([train_loss.double()] + [metrics[m][k] for m, k in names]).cpu().tolist()
        decays = self._decays()
        records = []
        for position, replica in enumerate(self.ids):
            row = {"epoch": self.epoch, "train_loss": table[0][position], "lr": lrs[position]}
            row.update({f"{m}_{k}": table[i + 1][position] for i, (m, k) in enumerate(names)})
            for name, values in decays.items():
                row[f"{name}_decay"] = values[position]
                if name == "ema":
                    row["ema_half_life"] = half_life(values[position])
            reason = self._control(position, row)
            extra = self._final_extra(position) if reason is not None else {}
            records.append(EpochRecord(replica, row, reason, extra))
        self.optimizer.set_lrs(self._next_lrs(lrs))
        self._drop_stopped()
        return records

    def _decays(self) -> dict[str, list[float]]:
        out = {}
        for name, averager in self.averagers.items():
            decay = decay_of(averager)
            if decay is None or not is_per_epoch(averager):
                continue
            out[name] = decay.tolist() if isinstance(decay, torch.Tensor) else [float(decay)] * len(self.ids)
        return out

    # --- control --------------------------------------------------------------------------------------------------
    def _control(self, position: int, row: dict[str, float]) -> str | None:
        """Scheduler and early stopping for one replica; returns why it stops after this epoch, if it does."""
        train = self.configs[position].train
        watched = [row["train_loss"], row["raw_val_loss"], row[f"{train.early_stopping.monitor}_val_loss"]]
        reason = None
        limit = train.diverged_above if train.diverged_above is not None else math.inf
        if not all(math.isfinite(v) and v <= limit for v in watched):
            reason = "diverged"
        else:
            if train.scheduler.name != "none" and not self._in_swa(self.epoch):
                self.schedulers[position].step(row[f"{train.scheduler.monitor}_val_loss"])
            if self.stoppers[position].step(row[f"{train.early_stopping.monitor}_val_loss"], self.epoch):
                reason = "early_stopping"
            elif self.epoch >= train.max_epochs:
                reason = "max_epochs"
        if reason is not None:
            self.active[self.ids[position]] = False
        return reason

    def _swa_schedule(self) -> SWASpec | None:
        specs = [s for s in self.configs[0].averagers.values() if isinstance(s, SWASpec) and s.swa_lr is not None]
        return specs[0] if specs else None

    def _in_swa(self, epoch: int) -> bool:
        spec = self._swa_schedule()
        return spec is not None and epoch >= spec.start_epoch

    def _next_lrs(self, lrs: list[float]) -> list[float]:
        """The plateau schedulers' lrs; once SWA's schedule takes over, torch SWALR's annealing to ``swa_lr``."""
        spec = self._swa_schedule()
        if spec is None or self.epoch < spec.start_epoch:
            return [s.lr for s in self.schedulers]
        out = []
        for position, lr in enumerate(lrs):
            start = self.swa_lr_start[position] = self.swa_lr_start[position] or lr
            out.append(
                swa_annealed_lr(
                    self.epoch - spec.start_epoch + 1,
                    initial_lr=start,
                    swa_lr=spec.swa_lr,
                    anneal_epochs=spec.anneal_epochs,
                    strategy=spec.anneal_strategy,
                )
            )
        return out

    @torch.no_grad()
    def _final_extra(self, position: int) -> dict[str, dict[str, float]]:
        """Post-hoc EMA at this replica's stop step: synthesize every target ``sigma_rel`` and evaluate it."""
        extra = {}
        for name, spec in self.configs[0].averagers.items():
            if not isinstance(spec, PostHocSpec):
                continue
            averager = self.averagers[name]
            assert isinstance(averager, PostHocEMA)
            for target in spec.targets:
                model_name = f"{name}_{target:g}"
                # the profiles at this stop step join the periodic snapshots for this synthesis only, so the
                # result neither lags behind the last snapshot nor depends on when other replicas stopped
                with averager.current_snapshot():
                    _, fit_error = averager.synthesize(sigma_rel=target, step=self.step_count)
                result = regression_metrics(averager.averaged_model(self.data.x_val), self.data.y_val)
                extra[model_name] = {k: float(v[position]) for k, v in result.items()} | {"fit_error": fit_error}
        return extra

    # --- checkpoints (the caller saves and loads them: no disk I/O here) ---------------------------------------------
    def replica_state(self, position: int) -> dict[str, Any]:
        """Everything that continues the replica at stack ``position`` on its own, after a finished epoch.

        Plain types only (tensors on the CPU, numbers, strings, lists, dicts), so ``torch.load(weights_only=True)``
        reads it back. Per-replica tensors (leading dim = the stack size) are cut to their row ``[position]``
        (kept as a leading dim of 1, listed under ``rows``); counters and other shared values are kept as they are.
        """
        size = len(self.ids)
        averagers = {
            name: replica_rows.averager_rows(averager, position, size) for name, averager in self.averagers.items()
        }
        return {
            "epoch": self.epoch,
            "model": replica_rows.rows(self.model.state_dict(), position, size),
            "optimizer": {
                "lr": self.optimizer.lrs[position],
                "step": self.optimizer.step_t.detach().to("cpu", copy=True),
                "exp_avg": [replica_rows.row(t, position) for t in self.optimizer.exp_avg],
                "exp_avg_sq": [replica_rows.row(t, position) for t in self.optimizer.exp_avg_sq],
            },
            "averagers": averagers,
            "scheduler": self.schedulers[position].state_dict(),
            "early_stopping": self.stoppers[position].state_dict(),
            "swa_lr_start": self.swa_lr_start[position],
            "generator": self.generators[position].get_state(),
        }

    @classmethod
    def resume(cls, configs: Sequence[Config], dataset: Dataset, states: Sequence[dict[str, Any]]) -> Trainer:
        """A trainer that continues ``configs`` from their :meth:`replica_state` s (all taken after the same epoch).

        Stacked replicas are independent, so a replica continues here exactly as it would have in its old stack.
        """
        trainer = cls(configs, dataset)
        trainer.load_replica_states(states)
        return trainer

    @torch.no_grad()
    def load_replica_states(self, states: Sequence[dict[str, Any]]) -> None:
        """Load one :meth:`replica_state` per stack position into a freshly built trainer (in place: the averagers
        keep observing the same parameter tensors). Raises ``ValueError`` if the states do not fit these configs."""
        if len(states) != len(self.ids) or self.epoch != 0:
            raise ValueError(f"need one state per replica of a fresh trainer ({len(self.ids)}), got {len(states)}")
        epochs = {int(s["epoch"]) for s in states}
        if len(epochs) != 1:
            raise ValueError(f"replicas saved after different epochs cannot share a stack: {sorted(epochs)}")
        try:
            self.model.load_state_dict(replica_rows.stack_rows([s["model"] for s in states]))
            optimizer = [s["optimizer"] for s in states]
            self.optimizer.load_state_dict(
                {
                    "lrs": [o["lr"] for o in optimizer],
                    "step": replica_rows.shared([o["step"] for o in optimizer], "optimizer step"),
                    "exp_avg": [torch.cat(rows) for rows in zip(*(o["exp_avg"] for o in optimizer))],
                    "exp_avg_sq": [torch.cat(rows) for rows in zip(*(o["exp_avg_sq"] for o in optimizer))],
                }
            )
            for name, averager in self.averagers.items():
                replica_rows.load_averager_rows(averager, [s["averagers"][name] for s in states])
        except (KeyError, RuntimeError) as err:  # a missing entry or a shape that does not fit this config
            raise ValueError(f"the saved state does not fit this config: {err}") from None
        for position, state in enumerate(states):
            self.schedulers[position].load_state_dict(dict(state["scheduler"]))
            self.stoppers[position].load_state_dict(dict(state["early_stopping"]))
            self.swa_lr_start[position] = state["swa_lr_start"]
            self.generators[position].set_state(state["generator"])
        self.epoch = epochs.pop()

    # --- compaction -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _drop_stopped(self) -> None:
        """Remove stopped replicas from the stack so the rest train at the cost of their own number."""
        keep = [p for p, replica in enumerate(self.ids) if self.active[replica]]
        if not keep or len(keep) == len(self.ids):
            return
        index = torch.tensor(keep, device=self.device)
        old = len(self.ids)
        for root in [self.model, *self.averagers.values()]:
            for module in root.modules():
                if isinstance(module, StackedMLP):  # the model, and every averaged copy of it
                    module.select_replicas(index)
        self.optimizer.select(index)
        for averager in self.averagers.values():
            _select_averager_extras(averager, index, old)
            for module in averager.modules():
                if isinstance(module, Averager):
                    module.refresh()
        self.configs = [self.configs[p] for p in keep]
        self.generators = [self.generators[p] for p in keep]
        self.schedulers = [self.schedulers[p] for p in keep]
        self.stoppers = [self.stoppers[p] for p in keep]
        self.swa_lr_start = [self.swa_lr_start[p] for p in keep]
        self.ids = [self.ids[p] for p in keep]
        self._keep = self._keep[index.cpu()]
        self._buffers = None


def _select_averager_extras(averager: Any, index: torch.Tensor, old: int) -> None:
    """Per-replica state outside parameters and buffers: a tensor ``beta`` and post-hoc snapshots."""
    for module in averager.modules():
        beta = getattr(module, "beta", None)
        if isinstance(beta, torch.Tensor) and beta.dim() == 1 and beta.shape[0] == old:
            module.beta = beta[index.to(beta.device)]
        if isinstance(module, PostHocEMA):
            for snapshot in module._snapshots:
                snapshot["state"] = {
                    k: v.index_select(0, index.to(v.device)) if v.dim() >= 1 and v.shape[0] == old else v
                    for k, v in snapshot["state"].items()
                }


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
