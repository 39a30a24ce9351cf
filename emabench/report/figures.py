"""Figures of the multi-seed report. Pure functions of the report's frames; each returns a figure, the caller saves it.

- :func:`curves_figure`: a metric over epochs, mean ± 1 std over seeds, one panel per group, one line per model.
  Runs end at different epochs (early stopping). By default (``align="carry"``) a run that stopped keeps its final
  value for the later epochs: the model it would deploy. Every seed then counts at every epoch and the right end of
  each curve equals the final-epoch mean of the tables. ``align="common"`` instead cuts the curves at the shortest
  run's last epoch. The panel title says which, and the epochs the runs stopped at.
- :func:`paired_figure`: one line per seed from raw to each averaged model (green: the averaged model is better on
  that seed, red: worse), the means as black diamonds.
- :func:`sweep_figure`: a metric's mean with its CI vs a swept key (e.g. ``ema.beta``), and the paired difference
  (model − raw) with its CI beside a zero line.

Which direction of a metric is better, and its name for people, are passed in (from the runs' task,
:mod:`emabench.report.specs`); :func:`report_figures` draws each task's figures from its own runs only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import matplotlib

matplotlib.use("Agg")  # headless: no display is ever needed

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from emabench.report.frames import Report  # noqa: E402
from emabench.report.groups import with_groups  # noqa: E402
from emabench.report.specs import STABILITY, TEST, VALIDATION, Measure, headline, spec  # noqa: E402
from emabench.results.figures import epoch_ranges  # noqa: E402
from emabench.runs.sweep_folder import (  # noqa: E402
    FIG_PAIRED_STABILITY,
    FIG_VAL_LOSS,
    fig_curves,
    fig_paired,
    fig_vs_beta,
)
from emabench.tasks.base import VAL_LOSS  # noqa: E402

BETTER_COLOR, WORSE_COLOR, TIE_COLOR = "#2a9d55", "#d1495b", "0.6"
Align = Literal["carry", "common"]


def _colors(models: Sequence[str]) -> dict[str, str]:
    return {model: f"C{i}" for i, model in enumerate(models)}


def _models(frame: pd.DataFrame) -> list[str]:
    models = list(dict.fromkeys(frame["model"]))
    return sorted(models, key=lambda m: (m != "raw", models.index(m)))


def _panels(n: int, width: float = 5.0, height: float = 3.7, sharey: bool = True) -> tuple[Figure, list[Axes]]:
    ncols = min(max(n, 1), 3)
    nrows = math.ceil(max(n, 1) / ncols)
    figure = Figure(figsize=(width * ncols, height * nrows + 0.4), layout="constrained")
    axes = figure.subplots(nrows, ncols, sharey=sharey, squeeze=False).ravel().tolist()
    for extra in axes[n:]:
        extra.set_visible(False)
    return figure, axes[:n]


# --- curves over epochs -----------------------------------------------------------------------------------------


def band_curves(curves: pd.DataFrame, value: str, align: Align = "carry") -> pd.DataFrame:
    """Per model and epoch: ``mean``, ``std`` (ddof=1) and ``n`` of ``value`` over runs (see the module docstring for
    ``align``). ``curves`` has one row per (run_id, model, epoch)."""
    if align not in ("carry", "common"):
        raise ValueError(f"align must be 'carry' or 'common', got {align!r}")
    parts = []
    for model, part in curves.groupby("model", sort=False):
        wide = part.pivot(index="epoch", columns="run_id", values=value).sort_index()
        last = part.groupby("run_id")["epoch"].max()
        if align == "carry":
            wide = wide.reindex(range(int(wide.index.min()), int(last.max()) + 1)).ffill()
        else:
            wide = wide.loc[: int(last.min())]
        parts.append(
            pd.DataFrame(
                {
                    "model": model,
                    "epoch": wide.index.to_numpy(int),
                    "mean": wide.mean(axis=1).to_numpy(float),
                    "std": wide.std(axis=1, ddof=1).to_numpy(float),
                    "n": wide.notna().sum(axis=1).to_numpy(int),
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["model", "epoch", "mean", "std"])


def curves_figure(
    curves: pd.DataFrame,
    value: str,
    *,
    align: Align = "carry",
    log: bool = False,
    zoom_from: int = 10,
    label: str | None = None,
    title: str | None = None,
) -> Figure:
    """``value`` over epochs, mean ± 1 std over seeds: one panel per ``group``, one line (and band) per model.

    ``curves``: one row per (group, run_id, model, epoch) with a ``value`` column; ``label``: its name for people.
    The y range is fitted to the epochs from ``zoom_from`` on (the initial descent, common to every model, would
    flatten the rest); each panel's x label names the epochs whose mean lies off the chart."""
    label = label or value
    groups = list(dict.fromkeys(curves["group"]))
    models = _models(curves)
    colors = _colors(models)
    one_task = "task" not in curves.columns or curves["task"].nunique() <= 1  # a shared y axis: same loss only
    figure, axes = _panels(len(groups), sharey=one_task)
    for ax, group in zip(axes, groups):
        part = curves[curves["group"] == group]
        bands = band_curves(part, value, align)
        stops = part.groupby("run_id")["epoch"].max()
        lows, highs, means = [], [], []
        for model in models:
            band = bands[bands["model"] == model]
            if band.empty:
                continue
            low, high = band["mean"] - band["std"].fillna(0), band["mean"] + band["std"].fillna(0)
            if log:
                low = low.where(low > 0, band["mean"] / 3)
            ax.fill_between(band["epoch"], low, high, color=colors[model], alpha=0.18, linewidth=0)
            ax.plot(band["epoch"], band["mean"], color=colors[model], label=f"{model} (n={stops.size})")
            tail = band["epoch"] >= zoom_from
            lows.append(low[tail].min())
            highs.append(high[tail].max())
            means.append(band[["epoch", "mean"]])
        logged = log and any((m["mean"] > 0).any() for m in means)  # a log axis needs a positive value to show
        ax.set_yscale("log" if logged else "linear")
        _zoom(ax, lows, highs, logged)
        how = "stopped runs carry their final value" if align == "carry" else "epochs reached by every seed"
        ax.set_title(f"{group}\n{how}; stops at epochs {int(stops.min())}–{int(stops.max())}", fontsize=9)
        ax.set_xlabel(_off_chart_note(ax, pd.concat(means) if means else pd.DataFrame(columns=["epoch", "mean"])))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel(label)
    figure.suptitle(title or f"{label} over epochs, mean ± 1 std over seeds")
    return figure


def _off_chart_note(ax: Axes, means: pd.DataFrame) -> str:
    """``epoch``, plus the epochs whose mean lies outside the (zoomed) y range: nothing is cut off silently."""
    low, high = ax.get_ylim()
    values = means["mean"].to_numpy(float)
    off = np.isfinite(values) & ((values < low) | (values > high))
    if not off.any():
        return "epoch"
    return f"epoch\ny axis zoomed: epochs {epoch_ranges(means['epoch'].to_numpy(int)[off])} lie off the chart"


def _zoom(ax: Axes, lows: list[float], highs: list[float], log: bool) -> None:
    lows = [v for v in lows if np.isfinite(v)]
    highs = [v for v in highs if np.isfinite(v)]
    if not lows or not highs:
        return
    low, high = min(lows), max(highs)
    if log:
        ax.set_ylim(low / 1.15, high * 1.15)
    else:
        pad = max((high - low) * 0.08, 1e-6)
        ax.set_ylim(low - pad, high + pad)


# --- per-seed pairs ---------------------------------------------------------------------------------------------


def paired_figure(
    per_run: pd.DataFrame,
    metric: str,
    *,
    higher_is_better: bool,
    label: str | None = None,
    verdicts: dict[tuple[str, str], str] | None = None,
    title: str | None = None,
    baseline: str = "raw",
) -> Figure:
    """Per group, a slope chart per model: the ``baseline`` model's ``metric`` on the left, the model's on the
    right, one line per seed (green where the model is better on that seed in the direction ``higher_is_better``
    says, red where worse), the means as black diamonds.

    ``per_run``: one row per (group, seed, model) with a ``metric`` column; models without a finite pair are left
    out. ``verdicts`` (``(group, model)`` → verdict) is printed under each model's name."""
    label = label or metric
    groups = list(dict.fromkeys(per_run["group"]))
    finite = per_run[np.isfinite(per_run[metric].to_numpy(float))]
    averaged = [m for m in _models(finite) if m != baseline]
    figure, axes = _panels(len(groups), width=2.2 + 1.5 * max(len(averaged), 1))
    for ax, group in zip(axes, groups):
        wide = finite[finite["group"] == group].pivot_table(index="seed", columns="model", values=metric)
        ticks = []
        for x, model in enumerate(averaged):
            pairs = wide[[baseline, model]].dropna() if {baseline, model} <= set(wide.columns) else pd.DataFrame()
            if pairs.empty:
                ticks.append(f"{model}\nno data")
                continue
            better = (pairs[model] > pairs[baseline]) if higher_is_better else (pairs[model] < pairs[baseline])
            same = pairs[model] == pairs[baseline]
            ends = [x - 0.3, x + 0.3]
            for (raw, avg), is_better, is_same in zip(pairs.to_numpy(), better, same):
                color = TIE_COLOR if is_same else BETTER_COLOR if is_better else WORSE_COLOR
                ax.plot(ends, [raw, avg], color=color, alpha=0.55, marker="o", markersize=3, linewidth=1)
            ax.scatter(ends, [pairs[baseline].mean(), pairs[model].mean()], marker="D", color="black", zorder=3, s=30)
            verdict = (verdicts or {}).get((group, model), "")
            tick = f"{baseline} → {model}\n{int(better.sum())}/{len(pairs)} better"
            ticks.append(tick + (f"\n({verdict})" if verdict else ""))
        ax.set_xticks(range(len(ticks)), ticks, fontsize=8)
        ax.set_xlim(-0.5, max(len(ticks), 1) - 0.5)
        ax.set_title(group, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel(label)
    figure.suptitle(title or f"{label} per seed: {baseline} vs each model (green: the model better on that seed)")
    return figure


# --- a swept key ------------------------------------------------------------------------------------------------


def sweep_figure(
    comparison: pd.DataFrame,
    key: str,
    metric: str,
    selection: str = "final",
    *,
    higher_is_better: bool,
    label: str | None = None,
    other_keys: Sequence[str] = (),
    title: str | None = None,
    baseline: str = "raw",
) -> Figure:
    """Left: ``metric`` mean with its CI vs ``key`` for the ``baseline`` model and each other. Right: the paired
    difference (model − baseline) with its CI, and zero. ``comparison`` is the report's long comparison table;
    ``other_keys`` (the other group keys) split the series (one line style each). One errorbar series
    (``ax.containers``) per line."""
    name = label or metric
    rows = comparison[(comparison["selection"] == selection) & (comparison["metric"] == metric)]
    values = sorted(rows[key].dropna().unique())
    if len(values) < 2:
        raise ValueError(f"sweep_figure needs at least two values of {key!r}, got {values}")
    position = {v: i for i, v in enumerate(values)}
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = figure.subplots(1, 2)
    colors = _colors([baseline, *dict.fromkeys(rows["model"])])
    parts = list(rows.groupby(list(other_keys), sort=True, dropna=False)) if other_keys else [((), rows)]
    series: list[tuple[Axes, pd.DataFrame, str, str, str]] = []  # axes, rows, column prefix, label, color
    for index, (other, part) in enumerate(parts):
        suffix = "" if not other_keys else " · " + ", ".join(f"{a}={b}" for a, b in zip(other_keys, _tuple(other)))
        style = ("-", "--", ":", "-.")[index % 4]
        base = part[part["model"] == part["model"].iloc[0]]  # the baseline's numbers repeat on every model's rows
        series.append((left, base, "baseline_", f"{baseline}{suffix}", colors[baseline] + style))
        for model, rows_m in part.groupby("model", sort=False):
            series.append((left, rows_m, "", f"{model}{suffix}", colors[model] + style))
            series.append((right, rows_m, "diff_", f"{model} − {baseline}{suffix}", colors[model] + style))
    for ax in (left, right):
        mine = [s for s in series if s[0] is ax]
        for i, (_, frame, prefix, legend, fmt) in enumerate(mine):
            offset = (i - (len(mine) - 1) / 2) * 0.06
            ordered = frame.sort_values(key)
            _errorbars(ax, ordered, [position[v] for v in ordered[key]], prefix, legend, fmt, offset)
        ax.set_xticks(range(len(values)), [f"{v:g}" if isinstance(v, float) else str(v) for v in values])
        ax.set_xlabel(key)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    right.axhline(0.0, color="black", linewidth=0.8)
    left.set(ylabel=f"{name} ({selection} epoch): mean, 95% CI")
    right.set(ylabel=f"paired difference in {name}: mean, 95% CI")
    better = "above" if higher_is_better else "below"
    right.set_title(f"{better} zero: the model is better than {baseline}", fontsize=9)
    figure.suptitle(title or f"{name} ({selection} epoch) vs {key}, over seeds")
    return figure


def _tuple(value: object) -> tuple[object, ...]:
    return value if isinstance(value, tuple) else (value,)


def _errorbars(ax: Axes, rows: pd.DataFrame, x: list[int], prefix: str, label: str, fmt: str, offset: float) -> None:
    """One series of means with CI bars from the ``{prefix}mean/ci_low/ci_high`` columns."""
    mean = rows[f"{prefix}mean"].to_numpy(float)
    low, high = rows[f"{prefix}ci_low"].to_numpy(float), rows[f"{prefix}ci_high"].to_numpy(float)
    yerr = np.nan_to_num(np.vstack([mean - low, high - mean]))
    positions = np.asarray(x, dtype=float) + offset
    ax.errorbar(positions, mean, yerr=yerr, fmt=fmt, marker="o", markersize=4, capsize=3, label=label)


# --- the report's set of figures --------------------------------------------------------------------------------


def report_figures(report: Report) -> dict[str, tuple[Figure, str]]:
    """The figures of a :class:`~emabench.report.frames.Report` by file name (:mod:`emabench.runs.sweep_folder`'s
    names), each with its caption. Per task, from that task's groups only: its headline metric per seed (and vs beta
    when betas were swept), its plot metric over epochs; the stability and the validation loss over every group."""
    figures: dict[str, tuple[Figure, str]] = {}
    baseline = report.question.baseline
    for task in report.tasks:
        main = spec(task, headline(task))
        comparison = report.comparison[report.comparison["task"] == task.name]
        on = TEST if len(comparison) and (comparison["set"] == TEST).any() else VALIDATION
        comparison = comparison[comparison["set"] == on] if len(comparison) else comparison
        where = " on the test set" if on == TEST else ""
        per_run = report.per_run[report.per_run["task"] == task.name]
        direction = {"higher_is_better": main.higher_is_better, "label": main.label + where}
        if "ema.beta" in report.by and comparison["ema.beta"].nunique() > 1:
            others = [k for k in report.by if k not in ("ema.beta", "task")]
            figure = sweep_figure(comparison, "ema.beta", main.name, other_keys=others, baseline=baseline, **direction)
            caption = f"final-epoch {main.label}{where} and the paired difference vs beta, 95% CIs ({task.name})"
            figures[fig_vs_beta(main.name)] = (figure, caption)
        title = f"final-epoch {main.label}{where} per seed (green: the model better than {baseline} on that seed)"
        verdicts = _verdicts(report, "final", main.name, on)
        column = Measure("final", main.name, on, main.higher_is_better).column
        figure = paired_figure(per_run, column, verdicts=verdicts, title=title, baseline=baseline, **direction)
        figures[fig_paired(main.name)] = (figure, f"final-epoch {main.label}{where} per seed, {baseline} vs each model")
    if report.per_run[STABILITY.name].notna().any():
        figure = paired_figure(
            report.per_run,
            STABILITY.name,
            higher_is_better=STABILITY.higher_is_better,
            label=f"{STABILITY.label} after burn-in",
            verdicts=_verdicts(report, "stability", STABILITY.name),
            title=f"validation-loss std over epochs > {report.burn_in}, per seed (green: steadier than {baseline})",
            baseline=baseline,
        )
        figures[FIG_PAIRED_STABILITY] = (
            figure,
            f"validation-loss std after burn-in per seed, {baseline} vs each model",
        )
    if len(report.curves):
        zoom = max(report.burn_in + 1, 20)  # the y range follows the later epochs, where the models differ
        figure = curves_figure(report.curves, VAL_LOSS.name, log=True, zoom_from=zoom, label=VAL_LOSS.label)
        figures[FIG_VAL_LOSS] = (figure, "validation loss over epochs, mean ± 1 std over seeds")
        for task in report.tasks:
            metric = spec(task, task.plot_metric)
            curves = report.curves[report.curves["task"] == task.name]
            figure = curves_figure(curves, metric.name, zoom_from=zoom, label=f"validation {metric.label}")
            figures[fig_curves(metric.name)] = (
                figure,
                f"validation {metric.label} over epochs, mean ± 1 std over seeds",
            )
    return figures


def _verdicts(report: Report, selection: str, metric: str, on: str = VALIDATION) -> dict[tuple[str, str], str]:
    rows = report.comparison
    if rows.empty:
        return {}
    rows = rows[(rows["selection"] == selection) & (rows["metric"] == metric) & (rows["set"] == on)]
    if rows.empty:
        return {}
    rows = with_groups(rows, report.by)
    return {(g, m): str(v) for g, m, v in zip(rows["group"], rows["model"], rows["verdict"]) if v}
