"""Figures of one run's history, raw vs averaged, like the seed's: the losses (``loss.png``) and the task's plot
metric (``r2.png``, ``accuracy.png``). Each returns a figure; the caller saves it.

The titles name the run (and its seed), the legends use the tables' words (``raw``, ``ema``, the averagers' names),
and nothing is cut off silently: when the y axis is zoomed, or a value is not finite (a diverged run), the x label
says which epochs are not on the chart.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: no display is ever needed

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from emabench.results.tables import models_in  # noqa: E402
from emabench.tasks.base import Task  # noqa: E402

ZOOM_FROM = 0.1  # the metric's y range follows the epochs after the first 10%: the initial jump would flatten the rest


def loss_figure(history: pd.DataFrame, task: Task, run: str = "") -> Figure:
    """Train loss and every model's validation loss per epoch (log scale: the curves span decades)."""
    figure = _figure()
    ax = figure.add_subplot()
    columns = {"train": "train_loss"} | {m: f"{m}_val_loss" for m in models_in(history)}
    for model, column in columns.items():
        label = "train loss" if model == "train" else f"{model} validation loss"
        ax.plot(history["epoch"], history[column], label=label, **({"color": "0.45"} if model == "train" else {}))
    ax.set(ylabel=f"{task.name} loss (log scale)", title=_title(run, "training and validation loss"))
    ax.set_yscale("log")
    _note_off_chart(ax, history, list(columns.values()), zoomed=False)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return figure


def metric_figure(history: pd.DataFrame, task: Task, metric: str | None = None, run: str = "") -> Figure:
    """Every model's validation ``metric`` (default: the task's ``plot_metric``) per epoch, the y axis zoomed on the
    range the models reach after the first epochs; the x label names the epochs left off the chart."""
    spec = task.metric(metric or task.plot_metric)
    figure = _figure()
    ax = figure.add_subplot()
    columns = [f"{m}_{spec.name}" for m in models_in(history)]
    for model, column in zip(models_in(history), columns):
        ax.plot(history["epoch"], history[column], label=model)
    tail = history[columns].iloc[int(len(history) * ZOOM_FROM) :].to_numpy(dtype=float).ravel()
    tail = tail[np.isfinite(tail)]  # a diverged run has inf/NaN values: zoom on what is finite
    if tail.size:
        low, high = float(tail.min()), float(tail.max())
        pad = max((high - low) * 0.1, abs(high) * 1e-3, 1e-4)  # relative too: R² of a diverged run is ~ -1e20
        ax.set_ylim(low - pad, high + pad)
    better = "higher" if spec.higher_is_better else "lower"
    ax.set(ylabel=f"validation {spec.label} ({better} is better)", title=_title(run, f"validation {spec.label}"))
    _note_off_chart(ax, history, columns, zoomed=True)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return figure


def _figure() -> Figure:
    """A 7.5×5 in figure with fixed margins: matplotlib's ``tight`` layout draws everything twice (~60% slower)."""
    figure = Figure(figsize=(7.5, 5))
    figure.subplots_adjust(left=0.1, right=0.97, top=0.92, bottom=0.16)
    return figure


def _title(run: str, what: str) -> str:
    return f"{run}: {what}" if run else what


def _note_off_chart(ax: Axes, history: pd.DataFrame, columns: list[str], *, zoomed: bool) -> None:
    """The x label, plus a line per kind of value not drawn: outside the zoomed y range, or not finite."""
    values = history[columns].to_numpy(dtype=float)
    epochs = history["epoch"].to_numpy(dtype=int)
    notes = []
    finite = np.isfinite(values)
    if zoomed:
        low, high = ax.get_ylim()
        outside = finite & ((values < low) | (values > high))
        if outside.any():
            notes.append(f"y axis zoomed: epochs {epoch_ranges(epochs[outside.any(axis=1)])} lie off the chart")
    if not finite.all():
        notes.append(f"not finite (not drawn) at epochs {epoch_ranges(epochs[(~finite).any(axis=1)])}")
    ax.set_xlabel("\n".join(["epoch", *notes]))


def epoch_ranges(epochs: np.ndarray | list[int]) -> str:
    """``[1, 2, 3, 7, 9, 10]`` → ``"1–3, 7, 9–10"``."""
    parts: list[str] = []
    ordered = sorted({int(e) for e in epochs})
    start = previous = ordered[0] if ordered else 0
    for epoch in [*ordered[1:], None]:
        if epoch is not None and epoch == previous + 1:
            previous = epoch
            continue
        parts.append(str(start) if start == previous else f"{start}–{previous}")
        if epoch is not None:
            start = previous = epoch
    return ", ".join(parts) if ordered else ""
