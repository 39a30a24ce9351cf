"""Figures of a run's history, raw vs averaged, like the seed's. Each returns a figure; the caller saves it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: no display is ever needed

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from emabench.results.tables import models_in  # noqa: E402

LABELS = {"raw": "Original"}


def _label(model: str) -> str:
    return LABELS.get(model, model.upper() if model == "ema" else model)


def loss_figure(history: pd.DataFrame, title: str = "Training and Validation Losses") -> Figure:
    """Train loss and every model's validation loss per epoch (log scale: the curves span decades)."""
    figure = Figure(figsize=(7.5, 5), layout="tight")
    ax = figure.add_subplot()
    ax.plot(history["epoch"], history["train_loss"], label="Train Loss", color="0.45")
    for model in models_in(history):
        ax.plot(history["epoch"], history[f"{model}_val_loss"], label=f"{_label(model)} Val Loss")
    ax.set(xlabel="Epoch", ylabel="Loss (MSE)", title=title, yscale="log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return figure


def r2_figure(history: pd.DataFrame, title: str = "R2 Scores") -> Figure:
    """Every model's validation R² per epoch, zoomed on the range the models reach after the first epochs."""
    figure = Figure(figsize=(7.5, 5), layout="tight")
    ax = figure.add_subplot()
    columns = [f"{m}_r2" for m in models_in(history)]
    for model, column in zip(models_in(history), columns):
        ax.plot(history["epoch"], history[column], label=f"{_label(model)} R2")
    tail = history[columns].iloc[len(history) // 10 :].to_numpy(dtype=float).ravel()
    tail = tail[np.isfinite(tail)]  # a diverged run has inf/NaN R²: zoom on what is finite
    if tail.size:
        low, high = float(tail.min()), float(tail.max())
        pad = max((high - low) * 0.1, abs(high) * 1e-3, 1e-4)  # relative too: R² of a diverged run is ~ -1e20
        ax.set_ylim(low - pad, high + pad)
    ax.set(xlabel="Epoch", ylabel="R2 Score", title=title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return figure
