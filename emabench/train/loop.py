"""The training loop, for one run or R stacked runs at once. No disk I/O: it returns history rows.

Per epoch, for every replica r (its own ``torch.Generator`` seeded with its config's ``seed``):
1. draw a fresh permutation of the training set and the epoch's dropout masks from generator r (:mod:`.batches`;
   a user's Dataset is read in that order through a ``DataLoader``, :mod:`.loader`);
2. for each batch of ``batch_size`` consecutive samples of that order (the last partial batch kept): forward,
   the task's loss (plus ``λ·MSE(student, teacher)`` with an EMA teacher), backward by autograd (over
   ``grad_accumulation`` micro-batches), one optimizer step (:mod:`.stepper`: per-replica lr, weight decay,
   clipping), then ``update(step)`` of every averager — the seed's ``train_one_epoch``;
3. evaluate the raw model and every averaged model on the whole validation set, in eval mode;
4. step ReduceLROnPlateau and early stopping on the monitored model's validation loss (:mod:`.control`).

Replicas share the data and the architecture and differ in anything listed in
:data:`emabench.train.build.PER_REPLICA`. The stacked loss is the *sum* of the per-replica mean losses, so each
replica's gradient is its own run's. A replica that stops keeps its history up to its stop epoch, exactly as if it
had run alone, and is then dropped from the stack.

With a :class:`~emabench.train.data_parallel.DataParallel` (``emabench run --nproc N``: one run, one replica), each
process trains on its share of every batch under ``DistributedDataParallel`` and the epoch's numbers are agreed
across the processes before anything is decided from them (see that module).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from emabench.averaging import half_life, swa_annealed_lr
from emabench.config import Config
from emabench.errors import ConfigError
from emabench.stack import fast_mlp
from emabench.tasks.data import Dataset
from emabench.tasks.user import task_of
from emabench.train import averagers as averaging
from emabench.train import build, checkpoint, compaction, custom, evaluation, finals, loader
from emabench.train.batches import EpochBuffers, mask_generator, micro_batches
from emabench.train.control import EarlyStopping, PlateauScheduler

if TYPE_CHECKING:
    from emabench.train.data_parallel import DataParallel

PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class EpochRecord:
    """One replica's history row for one epoch. On its last epoch ``stop_reason`` is set, and ``final_extra`` holds
    what only exists at the end (:func:`emabench.train.finals.finals`): ``posthoc`` (the post-hoc EMA syntheses'
    validation metrics, ``{name: {metric: value, "fit_error": e}}``) and, with a test set, ``test`` (every model's
    test metrics, final weights), ``best`` (each model at its best validation epoch, on the test set:
    ``{name: {"epoch": e, metric: value}}``) and ``predictions`` (``{model: (n_test, outputs) float32}``,
    probabilities for classification)."""

    replica: int
    row: dict[str, float]
    stop_reason: str | None = None
    final_extra: dict[str, dict[str, float]] = field(default_factory=dict)


class Trainer:
    """Holds the state of R stacked runs; :meth:`run_epoch` advances every still-active replica by one epoch."""

    def __init__(
        self,
        configs: Sequence[Config],
        dataset: Dataset,
        *,
        fast_paths: bool = True,
        parallel: DataParallel | None = None,
    ) -> None:
        if not configs:
            raise ValueError("Trainer needs at least one config")
        if len({build.stack_key(c) for c in configs}) != 1:
            raise ConfigError(
                "these configs cannot share one stacked model (they differ in more than per-run settings)"
            )
        first = configs[0]
        self.configs = list(configs)  # per stack position; ``ids`` maps positions to the original replica numbers
        self.replicas = len(configs)
        self.ids = list(range(self.replicas))
        self.active = [True] * self.replicas  # by original replica number
        self.task = task_of(first)  # the built-in task, or one with the user's loss and metrics
        self.parallel = parallel
        self.device = parallel.device if parallel is not None else build.runnable_device(first)
        self.data = dataset.to(self.device)
        self.generators = [torch.Generator().manual_seed(c.seed) for c in configs]
        self.mask_generators = [mask_generator(c.seed) for c in configs]
        self._epoch_buffers = EpochBuffers()  # an epoch's order and masks, written over by the next
        outputs = self.task.outputs(dataset.n_classes)
        self.model = build.build_model(configs, dataset.sample_shape, outputs, self.generators).to(self.device)
        self.model.pack()  # after .to(): one buffer for the parameters, one for their gradients
        # the network the training forward runs through: DDP's wrapper (it all-reduces the gradients) or the model
        self._net = self.model if parallel is None else parallel.wrap(self.model, first.seed)
        self.stepper = build.build_stepper(configs, self.model)
        self.averagers = averaging.build_all(self.model, configs, n_train=dataset.n_train)
        self.recalibrated = averaging.recalibrated(first)
        stacked = not isinstance(self.model, custom.SingleModel)
        self.best = evaluation.BestStates(self._tracked(), self.replicas, stacked=stacked) if dataset.has_test else None
        self._dropouts = self.model.dropouts()
        self.schedule, self.schedule_unit = build.lr_schedule(first, dataset.n_train)
        self.plateaus = [_plateau(c) for c in configs]
        self.stoppers = [EarlyStopping(c.train.early_stopping.patience) for c in configs]
        self.swa_lr_start: list[float | None] = [None] * self.replicas  # lr when the SWA schedule took over
        self.epoch = 0
        self.step = 0  # optimizer steps taken
        self._last_lrs = [c.train.optimizer.resolved().lr for c in configs]  # the lrs of the last optimizer step
        self.scaler = torch.amp.GradScaler(self.device.type) if first.train.precision == "fp16" else None
        train, spec = first.train, first.model
        extras = train.teacher is not None or train.precision != "fp32" or train.grad_accumulation > 1
        extras = extras or first.loss is not None  # the written-out gradient is the task's own loss's
        self.fast = (
            fast_paths
            and parallel is None
            and fast_mlp.covers(
                self.model,
                task=first.task,
                activation=getattr(spec, "activation", ""),
                norm=getattr(spec, "norm", ""),
                extras=extras,
            )
        )  # the seed's network: its gradient written out (tested equal to autograd), see stack/fast_mlp.py
        self._written_out = fast_mlp.WrittenOutGradient(self.model) if self.fast else None
        self._refresh_per_replica()

    # --- per-replica settings as tensors (rebuilt when the stack shrinks) --------------------------------------------
    def _refresh_per_replica(self) -> None:
        def vector(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32, device=self.device)

        self._keep = [1.0 - getattr(c.model, "dropout", 0.0) for c in self.configs]
        smoothing = [c.train.label_smoothing for c in self.configs]
        self._smoothing = vector(smoothing) if any(smoothing) else None
        teacher = self.configs[0].train.teacher
        self._teacher = (
            None if teacher is None else (teacher.averager, vector([c.train.teacher.weight for c in self.configs]))
        )

    @property
    def done(self) -> bool:
        return not any(self.active)

    @property
    def step_count(self) -> int:
        return self.step

    # --- learning rates -------------------------------------------------------------------------------------------
    def lrs(self) -> list[float]:
        """Each replica's learning rate for the next optimizer step: ``plateau_r.lr · schedule(t)``, or, after the
        SWA start epoch, torch SWALR's annealing from the lr in use at the end of that epoch to ``swa_lr``."""
        swa = self.configs[0].train.swa_lr
        if swa is None or self.epoch <= swa.start_epoch:
            t = self.epoch - 1 if self.schedule_unit == "epoch" else self.step
            factor = self.schedule.factor(t)
            return [plateau.lr * factor for plateau in self.plateaus]
        out = []
        for position, last in enumerate(self._last_lrs):
            start = self.swa_lr_start[position]
            if start is None:
                start = self.swa_lr_start[position] = last
            out.append(
                swa_annealed_lr(
                    self.epoch - swa.start_epoch,
                    initial_lr=start,
                    swa_lr=swa.swa_lr,
                    anneal_epochs=swa.anneal_epochs,
                    strategy=swa.anneal_strategy,
                )
            )
        return out

    # --- one epoch ------------------------------------------------------------------------------------------------
    def _train_one_epoch(self) -> tuple[torch.Tensor, float]:
        """Train every replica for one epoch; its mean training loss ``(R,)`` and the lr of its last step."""
        train = self.configs[0].train
        order = loader.epoch_order(self)  # from the training tensors, or a user's Dataset through a DataLoader
        loss_sum = torch.zeros(len(self.configs), dtype=torch.float64, device=self.device)
        self.model.train()
        per_step = self.schedule_unit == "step" or self.configs[0].train.swa_lr is not None
        lrs = self.lrs()
        with torch.set_grad_enabled(self._written_out is None):  # written out: autograd off once, not per call
            for x, y, masks in order.batches(train.batch_size):
                rows, scale = x.shape[1], 1.0
                if self.parallel is not None:  # this rank's rows of the batch, its loss weighted (data_parallel.py)
                    x, y, masks, rows, scale = self.parallel.share(x, y, masks)
                losses = self._backward(x, y, masks, train.grad_accumulation, scale)
                if per_step:
                    lrs = self.lrs()
                self._last_lrs = lrs
                self.stepper.step(lrs, scaler=self.scaler)
                self.step += 1
                if self.parallel is not None:
                    self.parallel.synced_buffers()
                for averager in self.averagers.values():
                    averager.update(self.step)
                loss_sum.add_(losses.detach(), alpha=rows)  # no .item(): one host sync per epoch, not per step
        for dropout in self._dropouts:
            dropout.set_mask(None)
        return loss_sum / order.samples(train.batch_size), lrs

    def _backward(
        self, x: torch.Tensor, y: torch.Tensor, masks: list[torch.Tensor], parts: int, scale: float = 1.0
    ) -> torch.Tensor:
        """Gradients of ``scale`` × the batch's mean loss into ``.grad`` (accumulated over micro-batches; under DDP
        all-reduced once, with the last); the per-replica mean loss."""
        if self._written_out is not None:
            return self._written_out(x, y, masks)
        self.stepper.zero_grad()
        size = x.shape[1]
        total = torch.zeros(len(self.configs), device=self.device)
        for start, end in micro_batches(size, parts):
            for dropout, mask in zip(self._dropouts, masks):
                dropout.set_mask(mask[:, start:end])
            # under DDP the gradients are all-reduced once a batch, with its last micro-batch
            last = self.parallel is None or end == size
            with contextlib.nullcontext() if last else self._net.no_sync():
                with self._autocast():
                    out = self._net(x[:, start:end])
                    loss = self.task.loss(out, y[:, start:end], self._smoothing)
                    if self._teacher is not None:
                        loss = loss + self._teacher_term(out, x[:, start:end])
                weight = (end - start) / size
                scaled = loss.sum() * (weight * scale)
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            total += loss.detach().float() * weight
        return total

    def _teacher_term(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``λ_r · mean((student − teacher)²)`` with the teacher averager's model in eval mode, no gradient."""
        name, weight = self._teacher
        with torch.no_grad():
            teacher = self.averagers[name].averaged_model(x)
        return weight * (out.float() - teacher.float()).square().flatten(1).mean(1)

    def _autocast(self) -> contextlib.AbstractContextManager:
        precision = self.configs[0].train.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[precision])

    # --- evaluation (emabench.train.evaluation) -----------------------------------------------------------------------
    def _tracked(self) -> dict[str, torch.nn.Module]:
        """The models evaluated every epoch: raw and every per-epoch averaged model."""
        models = {"raw": self.model}
        models.update({n: a.averaged_model for n, a in self.averagers.items() if averaging.is_per_epoch(a)})
        return models

    @torch.no_grad()
    def evaluate(self, split: str = "val") -> dict[str, dict[str, torch.Tensor]]:
        """Metrics ``{model: {metric: (R,)}}`` on the validation (or test) set for the raw and every per-epoch
        averaged model (BatchNorm statistics re-estimated first for ``buffers: recalibrate``)."""
        results = {"raw": self._metrics(self.model, split)}
        for name, averager in self.averagers.items():
            if not averaging.is_per_epoch(averager):
                continue
            if not averaging.has_average(averager):  # SWA before its first snapshot
                results[name] = {k: torch.full_like(v, math.nan) for k, v in results["raw"].items()}
                continue
            if name in self.recalibrated and split == "val":
                averaging.recalibrate(averager, self._training_batches())
            results[name] = self._metrics(averager.averaged_model, split)
        self.model.train()
        return results

    def _metrics(self, model: torch.nn.Module, split: str = "val") -> dict[str, torch.Tensor]:
        x, y = (self.data.x_val, self.data.y_val) if split == "val" else (self.data.x_test, self.data.y_test)
        return evaluation.metrics(self.task, model, x, y, self.data.per_replica, self._autocast())

    def _training_batches(self) -> Iterator[torch.Tensor]:
        return loader.training_inputs(self)

    def run_epoch(self) -> list[EpochRecord]:
        """Train and evaluate one epoch; return a record for every replica that was active in it."""
        if self.done:
            return []
        self.epoch += 1
        train_loss, lrs = self._train_one_epoch()
        metrics = self.evaluate()
        if self.parallel is not None:  # every rank decides from the same numbers; the averagers must be the same
            train_loss, metrics = self.parallel.agree(train_loss, metrics)
            self.parallel.check(self.averagers)
        if self.best is not None:
            self.best.observe(self._tracked(), {m: values["val_loss"] for m, values in metrics.items()}, self.epoch)
        columns = {f"{m}_{k}": v for m, values in metrics.items() for k, v in values.items()}
        columns |= finals.test_columns(self)
        table = torch.stack([train_loss.double(), *columns.values()]).cpu().tolist()
        decays = self._decays()
        rows, reasons = [], []
        for position in range(len(self.ids)):
            row = {"epoch": self.epoch, "train_loss": table[0][position], "lr": lrs[position]}
            row.update({name: table[i + 1][position] for i, name in enumerate(columns)})
            for name, values in decays.items():
                row[f"{name}_decay"] = values[position]
                if name == "ema":
                    row["ema_half_life"] = half_life(values[position])
            rows.append(row)
            reasons.append(self._control(position, row))
        extras = finals.finals(self, [p for p, reason in enumerate(reasons) if reason is not None])
        records = [EpochRecord(r, rows[p], reasons[p], extras.get(p, {})) for p, r in enumerate(self.ids)]
        for name, averager in self.averagers.items():
            averaging.observe(averager, name, metrics)  # adaptive rules read this epoch's validation losses
        self._drop_stopped()
        return records

    def _decays(self) -> dict[str, list[float]]:
        out = {}
        for name, averager in self.averagers.items():
            decay = averaging.decay_of(averager)
            if decay is None or not averaging.is_per_epoch(averager):
                continue
            out[name] = decay.tolist() if isinstance(decay, torch.Tensor) else [float(decay)] * len(self.ids)
        return out

    # --- control --------------------------------------------------------------------------------------------------
    def _control(self, position: int, row: dict[str, float]) -> str | None:
        """Scheduler and early stopping for one replica; returns why it stops after this epoch, if it does."""
        train = self.configs[position].train
        watched = [row["train_loss"], row["raw_val_loss"], row[f"{train.early_stopping.monitor}_val_loss"]]
        limit = train.diverged_above if train.diverged_above is not None else math.inf
        reason = None
        if not all(math.isfinite(v) and v <= limit for v in watched):
            reason = "diverged"
        else:
            swa = train.swa_lr
            if train.scheduler.name != "none" and (swa is None or self.epoch < swa.start_epoch):
                self.plateaus[position].step(row[f"{train.scheduler.monitor}_val_loss"])
            if self.stoppers[position].step(row[f"{train.early_stopping.monitor}_val_loss"], self.epoch):
                reason = "early_stopping"
            elif self.epoch >= train.max_epochs:
                reason = "max_epochs"
        if reason is not None:
            self.active[self.ids[position]] = False
        return reason

    # --- checkpoints (the caller saves and loads them: no disk I/O here) ---------------------------------------------
    def replica_state(self, position: int) -> dict[str, Any]:
        """Everything that continues the replica at stack ``position`` on its own (see :mod:`.checkpoint`)."""
        return checkpoint.replica_state(self, position)

    @classmethod
    def resume(
        cls,
        configs: Sequence[Config],
        dataset: Dataset,
        states: Sequence[dict[str, Any]],
        *,
        parallel: DataParallel | None = None,
    ) -> Trainer:
        """A trainer that continues ``configs`` from their :meth:`replica_state` s (all taken after the same epoch).

        Stacked replicas are independent, so a replica continues here exactly as it would have in its old stack.
        """
        trainer = cls(configs, dataset, parallel=parallel)
        checkpoint.load_replica_states(trainer, states)
        return trainer

    # --- compaction -----------------------------------------------------------------------------------------------
    def _drop_stopped(self) -> None:
        """Remove stopped replicas from the stack so the rest train at the cost of their own number."""
        keep = [p for p, replica in enumerate(self.ids) if self.active[replica]]
        if keep and len(keep) < len(self.ids):
            compaction.keep_replicas(self, keep)
            self._refresh_per_replica()


def _plateau(cfg: Config) -> PlateauScheduler:
    s = cfg.train.scheduler
    return PlateauScheduler(
        cfg.train.optimizer.resolved().lr,
        factor=s.factor,
        patience=s.patience,
        threshold=s.threshold,
        threshold_mode=s.threshold_mode,
        cooldown=s.cooldown,
        min_lr=s.min_lr,
    )
