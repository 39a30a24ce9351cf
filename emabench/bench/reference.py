"""Seed 001's script, reproduced faithfully as the benchmark's reference: ``DataLoader`` over a ``TensorDataset``,
the seed's ``EMA`` class with its per-tensor loop, evaluation through a second ``DataLoader`` with numpy copies and
sklearn metrics, ``torch.optim.Adam`` and ``ReduceLROnPlateau``.

It is the yardstick ``emabench bench`` measures the training loop against (same process, interleaved repetitions), and,
run as ``python -m emabench.bench.reference``, the whole-process reference. It is not used for results.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from sklearn.datasets import make_regression
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn, optim


class SeedEMA(nn.Module):
    """The seed's EMA class (ema-pytorch of its era): a Python loop over named parameters and buffers per update."""

    def __init__(self, model, beta=0.999, update_after_step=100, update_every=1, inv_gamma=1.0, power=2 / 3):
        super().__init__()
        self.online_model = model
        self.ema_model = copy.deepcopy(model)
        self.ema_model.requires_grad_(False)
        self.beta, self.update_after_step, self.update_every = beta, update_after_step, update_every
        self.inv_gamma, self.power, self.min_value = inv_gamma, power, 0.0
        self.parameter_names = {n for n, p in self.ema_model.named_parameters() if p.dtype == torch.float}
        self.buffer_names = {n for n, b in self.ema_model.named_buffers() if b.dtype == torch.float}
        self.register_buffer("initted", torch.Tensor([False]))
        self.register_buffer("step", torch.tensor([0]))

    def _pairs(self, ma, cur):
        for (name, ma_p), (_, cur_p) in zip(ma.named_parameters(), cur.named_parameters()):
            if name in self.parameter_names:
                yield ma_p, cur_p
        for (name, ma_b), (_, cur_b) in zip(ma.named_buffers(), cur.named_buffers()):
            if name in self.buffer_names:
                yield ma_b, cur_b

    def copy_params_from_model_to_ema(self):
        for ma, cur in self._pairs(self.ema_model, self.online_model):
            ma.data.copy_(cur.data)

    def get_current_decay(self):
        epoch = max(self.step.item() - self.update_after_step - 1, 0.0)
        value = 1 - (1 + epoch / self.inv_gamma) ** -self.power
        if epoch <= 0:
            return 0.0
        return min(max(value, self.min_value), self.beta)

    def update(self):
        step = self.step.item()
        self.step += 1
        if (step % self.update_every) != 0:
            return
        if step <= self.update_after_step:
            self.copy_params_from_model_to_ema()
            return
        if not self.initted.item():
            self.copy_params_from_model_to_ema()
            self.initted.data.copy_(torch.Tensor([True]))
        self.update_moving_average()

    @torch.no_grad()
    def update_moving_average(self):
        decay = self.get_current_decay()
        for ma, cur in self._pairs(self.ema_model, self.online_model):
            ma.data.lerp_(cur.data, 1.0 - decay)


class ImprovedModel(nn.Module):
    def __init__(self, input_dim):
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(input_dim, 64), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(32, 1),
        )  # fmt: skip
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        return self.model(x)


def evaluate_model(model, data_loader, criterion, device):
    model.eval()
    total_loss, predictions, true_values = 0.0, [], []
    with torch.no_grad():
        for x, y in data_loader:
            x, y = x.to(device), y.to(device)
            outputs = model(x)
            total_loss += criterion(outputs, y).item() * len(y)
            predictions.extend(outputs.cpu().numpy())
            true_values.extend(y.cpu().numpy())
    predictions, true_values = np.array(predictions), np.array(true_values)
    return {
        "loss": total_loss / len(data_loader.dataset),
        "mse": mean_squared_error(true_values, predictions),
        "mae": mean_absolute_error(true_values, predictions),
        "r2": r2_score(true_values, predictions),
    }


def train_one_epoch(model, train_loader, criterion, optimizer, ema, device):
    model.train()
    total_loss = 0.0
    for x, y in train_loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        ema.update()
        total_loss += loss.item() * len(y)
    return total_loss / len(train_loader.dataset)


class SeedStudy:
    """The seed script's set-up; :meth:`epoch` runs one epoch of its loop (train, evaluate both, schedule)."""

    def __init__(self, seed: int = 0, device: str = "cpu") -> None:
        torch.manual_seed(seed)
        x, y = make_regression(n_samples=2000, n_features=20, noise=0.1, random_state=42)
        x = StandardScaler().fit_transform(x)
        y = StandardScaler().fit_transform(y.reshape(-1, 1))
        x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.2, random_state=42)
        as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        train = torch.utils.data.TensorDataset(as_tensor(x_train), as_tensor(y_train))
        val = torch.utils.data.TensorDataset(as_tensor(x_val), as_tensor(y_val))
        self.train_loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True)
        self.val_loader = torch.utils.data.DataLoader(val, batch_size=32)
        self.device = torch.device(device)
        self.model = ImprovedModel(20).to(self.device)
        self.ema = SeedEMA(self.model, beta=0.999, update_after_step=100, update_every=1, power=2 / 3)
        self.criterion = nn.MSELoss()
        self.optimizer = optim.Adam(self.model.parameters(), lr=0.001, weight_decay=1e-5)
        self.scheduler = optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, mode="min", factor=0.5, patience=10)
        self.history: list[dict[str, float]] = []

    def epoch(self) -> dict[str, float]:
        train_loss = train_one_epoch(
            self.model, self.train_loader, self.criterion, self.optimizer, self.ema, self.device
        )
        raw = evaluate_model(self.model, self.val_loader, self.criterion, self.device)
        ema = evaluate_model(self.ema.ema_model, self.val_loader, self.criterion, self.device)
        self.scheduler.step(ema["loss"])
        row = {"train_loss": train_loss, "raw_val_loss": raw["loss"], "ema_val_loss": ema["loss"]}
        self.history.append(row)
        return row


def main() -> None:
    """The seed script end to end (early stopping with patience 20, or a fixed number of epochs), plus its figure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--no-early-stopping", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default=None, help="where to save the seed's figure (PNG)")
    args = parser.parse_args()
    start = time.perf_counter()
    study = SeedStudy(args.seed)
    best, bad = float("inf"), 0
    for _ in range(args.epochs):
        loss = study.epoch()["ema_val_loss"]
        best, bad = (loss, 0) if loss < best else (best, bad + 1)
        if bad >= 20 and not args.no_early_stopping:
            break
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plt.figure(figsize=(15, 5))
        for i, keys in enumerate([("train_loss", "raw_val_loss", "ema_val_loss")]):
            plt.subplot(1, 2, i + 1)
            for key in keys:
                plt.plot([row[key] for row in study.history], label=key)
            plt.legend()
        plt.savefig(args.figure)
    print(f"epochs={len(study.history)} seconds={time.perf_counter() - start:.3f}")


if __name__ == "__main__":
    main()
