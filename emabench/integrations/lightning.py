"""Lightning's ``Trainer.fit``, raw beside averaged: :class:`EMAComparison` keeps emabench's averagers during ``fit``,
evaluates the raw model and every averaged model on the validation loop, and writes the run folder through
:mod:`emabench.track` (``pip install 'emabench[lightning]'``).

    from functools import partial
    import lightning as L
    from emabench.averaging import EMA
    from emabench.integrations.lightning import EMAComparison

    L.seed_everything(seed)
    comparison = EMAComparison(averagers={"ema": partial(EMA, beta=0.99)}, runs_dir="runs", task="classification")
    L.Trainer(max_epochs=14, callbacks=[comparison]).fit(model, train_loader, val_loader)

Lightning's own ``EMAWeightAveraging`` swaps the average in for validation, so a run logs the average's metrics
instead of raw's. Here the module trains and validates as it is; after each validation batch, each averaged model
runs the module's own ``validation_step`` on that batch with the average swapped in
(:meth:`~emabench.averaging.Averager.swapped_into`), its ``self.log`` calls caught, not logged. No extra pass over a
DataLoader, no random draw (validation runs in eval mode): the raw run is the run without the callback.

Recorded per epoch that validated (its last validation): every key ``validation_step`` logs, as Lightning's epoch
mean (weighted by batch size), named without a ``val_`` or ``val/`` prefix (``val_acc`` → ``acc``; ``val_loss``, which
must be logged, stays); ``train_loss``, the mean of ``training_step``'s loss over the epoch weighted by batch size;
``lr``, the first parameter group's at the epoch's start; each averager's ``decay``. Averagers are updated after every
optimizer step (``update(trainer.global_step)``: with gradient accumulation, once per accumulated step).

Limits, refused in one line: one process (``world_size`` 1), one validation DataLoader, values logged with the
default mean reduction as numbers or tensors — not a torchmetrics ``Metric`` object, whose state the averaged models'
passes would mix into raw's (log its per-batch value instead).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

try:
    import lightning.pytorch as pl
    from lightning.pytorch.utilities.data import extract_batch_size
except ImportError:  # pragma: no cover - the message is the point
    raise ImportError("emabench.integrations.lightning needs Lightning: pip install 'emabench[lightning]'") from None
import torch
from torch import nn

from emabench.averaging import Averager
from emabench.track import Run

AveragerFactory = Callable[[nn.Module], Averager]
_PREFIX = re.compile(r"^val[_/]")


def metric_name(key: str) -> str:
    """The history's name of a key logged in ``validation_step``: ``val_acc`` → ``acc``, ``val/loss`` →
    ``val_loss``; other characters than letters, digits and ``_`` become ``_``."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", _PREFIX.sub("", key))
    return "val_loss" if name == "loss" else name


class EMAComparison(pl.Callback):
    """Averagers beside a Lightning module during ``fit``, raw and each average validated, into a run folder.

    Args:
        averagers: model name → an averager of the module (``partial(EMA, beta=0.99)``, called with the module when
            ``fit`` starts) or one built on it already (``EMA(module, beta=0.99)``).
        runs_dir, task, metrics: as :class:`emabench.track.Run` (``task="classification"``; ``metrics={"acc":
            "higher"}`` for what the task does not know, named as recorded: without the ``val_`` prefix).
        name: the run's name (default: the module's class name).
        seed: the run's seed (default: the one ``lightning.seed_everything`` set).
        config: the run's settings (default: the module's ``hparams``, from ``save_hyperparameters``).
    """

    def __init__(
        self,
        averagers: Mapping[str, AveragerFactory | Averager],
        *,
        runs_dir: str | os.PathLike[str] = "runs",
        task: str | None = None,
        metrics: Mapping[str, str] | None = None,
        name: str | None = None,
        seed: int | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if not averagers or "raw" in averagers:
            raise ValueError("averagers: at least one, by name ('raw' is the module itself)")
        self._factories = dict(averagers)
        self._run_args = {"runs_dir": runs_dir, "task": task, "metrics": metrics, "name": name, "seed": seed}
        self._config = config
        self.averagers: dict[str, Averager] = {}
        self.run: Run | None = None
        self._catch: _LogCatcher | None = None
        self._pending: dict[str, dict[str, float]] | None = None  # the epoch's last validation, per model
        self._train = [0.0, 0]  # the epoch's training loss × batch size, and its batch size
        self._lr = float("nan")
        self._step = 0  # trainer.global_step at the last update

    # --- fit ---------------------------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size != 1:
            raise ValueError(f"EMAComparison: one process only, got world_size={trainer.world_size}")
        self.averagers = {name: self._averager(make, pl_module) for name, make in self._factories.items()}
        self._step = trainer.global_step
        self.run = Run(**self._identity(pl_module))
        self.run.__enter__()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close(None)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._uncatch(pl_module)
        self._close(exception)

    def _averager(self, make: AveragerFactory | Averager, module: nn.Module) -> Averager:
        averager = make if isinstance(make, Averager) else make(module)
        if not isinstance(averager, Averager) or averager.online_model is not module:
            raise ValueError("averagers: each an emabench Averager of the module being fit, or a function making one")
        return averager

    def _identity(self, module: pl.LightningModule) -> dict[str, Any]:
        args = dict(self._run_args)
        args["name"] = args["name"] or type(module).__name__
        if args["seed"] is None:
            if "PL_GLOBAL_SEED" not in os.environ:
                raise ValueError("EMAComparison: give seed=, or call lightning.seed_everything(seed) before fit")
            args["seed"] = int(os.environ["PL_GLOBAL_SEED"])
        args["config"] = dict(module.hparams) if self._config is None else self._config
        return args

    def _close(self, error: BaseException | None) -> None:
        run, self.run = self.run, None
        if run is not None:
            run.__exit__(type(error) if error is not None else None, error, error.__traceback__ if error else None)

    # --- training ------------------------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._train = [0.0, 0]
        optimizers = trainer.optimizers
        self._lr = float(optimizers[0].param_groups[0]["lr"]) if optimizers else float("nan")

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is not None:
            size = extract_batch_size(batch)
            self._train[0] += float(torch.as_tensor(loss).detach().float().mean()) * size
            self._train[1] += size
        if trainer.global_step > self._step:  # an optimizer step was taken (not a micro-batch of an accumulation)
            self._step = trainer.global_step
            for averager in self.averagers.values():
                averager.update(self._step)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.run is None or self._pending is None:
            return
        models, self._pending = self._pending, None
        for name, averager in self.averagers.items():
            decay = getattr(averager, "decay", None)
            if isinstance(decay, float):
                models[name]["decay"] = decay
        train_loss = self._train[0] / self._train[1] if self._train[1] else None
        self.run.log(trainer.current_epoch + 1, models, train_loss=train_loss, lr=self._lr)

    # --- validation: raw as Lightning runs it, then each average on the same batch ------------------------------------
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.run is None or trainer.sanity_checking:
            return
        self._catch = _LogCatcher(pl_module, ["raw", *self.averagers])
        pl_module.log = self._catch  # the module's own self.log calls go through the catcher (log_dict included)

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self._catch is not None:
            if dataloader_idx != 0:
                raise ValueError("EMAComparison: one validation DataLoader only")
            self._catch.batch = batch

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        catch = self._catch
        if catch is None:
            return
        with torch.no_grad():
            for name, averager in self.averagers.items():
                catch.model = name
                with averager.swapped_into(pl_module):
                    pl_module.validation_step(batch, batch_idx)
        catch.model = "raw"

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._catch is not None:
            self._pending = self._catch.means()
            self._uncatch(pl_module)

    def _uncatch(self, pl_module: pl.LightningModule) -> None:
        if self._catch is not None:
            self._catch = None
            pl_module.__dict__.pop("log", None)  # the class's log again


class _LogCatcher:
    """Stands in for ``LightningModule.log`` during validation: records each value under the model being evaluated
    (passing raw's on to Lightning, keeping the averages' to itself) and gives the batch-size-weighted means."""

    def __init__(self, module: pl.LightningModule, models: list[str]) -> None:
        self._log = module.log  # the bound method, before it is shadowed
        self.model = "raw"
        self.batch: Any = None
        self._sums: dict[str, dict[str, list[float]]] = {m: {} for m in models}

    def __call__(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("reduce_fx", "mean") != "mean" or hasattr(value, "compute"):
            raise ValueError(
                f"EMAComparison: {name!r} must be logged as a number or tensor with the mean reduction (a torchmetrics "
                "Metric object would mix the averaged models' batches into raw's state)"
            )
        if self.model == "raw":
            self._log(name, value, *args, **kwargs)
        size = kwargs.get("batch_size") or extract_batch_size(self.batch)
        total = self._sums[self.model].setdefault(metric_name(name), [0.0, 0])
        total[0] += float(torch.as_tensor(value).detach().float().mean()) * size
        total[1] += size

    def means(self) -> dict[str, dict[str, float]]:
        return {model: {k: s / n for k, (s, n) in sums.items()} for model, sums in self._sums.items()}
