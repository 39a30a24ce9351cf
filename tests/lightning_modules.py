"""A Lightning module and data for tests/test_lightning.py, imported there only when Lightning is installed and a
Lightning test runs (importing Lightning takes seconds, which the default suite does not pay)."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Classifier(L.LightningModule):
    """A small MLP with dropout on a fixed random problem; ``fail_at`` raises in that epoch's first step (Ctrl-C's
    ``KeyboardInterrupt`` with ``interrupt``)."""

    def __init__(self, fail_at: int | None = None, metric_object: bool = False, interrupt: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3))
        if metric_object:
            import torchmetrics

            self.val_metric = torchmetrics.Accuracy(task="multiclass", num_classes=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201 - Lightning's hook
        if self.hparams.fail_at is not None and self.current_epoch + 1 == self.hparams.fail_at:
            raise KeyboardInterrupt if self.hparams.interrupt else RuntimeError("the user's training_step failed")
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):  # noqa: ANN001, ANN201 - Lightning's hook
        x, y = batch
        out = self(x)
        self.log_dict({"val_loss": F.cross_entropy(out, y), "val/accuracy": (out.argmax(1) == y).float().mean()})
        if self.hparams.metric_object:
            self.val_metric.update(out, y)
            self.log("val_metric", self.val_metric)

    def configure_optimizers(self):  # noqa: ANN201 - Lightning's hook
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)]


def loaders() -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    train = DataLoader(TensorDataset(x[:160], y[:160]), batch_size=16, shuffle=True)
    return train, DataLoader(TensorDataset(x[160:], y[160:]), batch_size=15)  # 40 rows: batches of 15, 15, 10


def fit(module: L.LightningModule, callbacks: list, epochs: int = 3, **trainer_args) -> L.Trainer:
    L.seed_everything(7, verbose=False)
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=callbacks,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_args,
    )
    trainer.fit(module, *loaders())
    return trainer
