"""The report's tables, pure functions of the collected frames: per run (best epoch, stability, decay reached),
the paired comparisons with raw, the per-group summary, the blog's run beside ours and the decay reached, gathered in
a :class:`Report` by :func:`build_report`. No renderer is imported here.

Definitions used throughout:

- **group**: the runs that differ only in their seed (default: grouped by every config key that varies, plus
  ``ema.beta``; ``--by`` picks the keys). Models are compared with ``raw`` *within* a group, paired by seed.
- **final epoch**: the metrics of the last epoch each run trained (``metrics.csv``), what the seed study reports.
- **best epoch**: each model's metrics at the epoch of its lowest validation loss (``history.csv``). It is picked on
  the validation set itself, so it is optimistic; it is never called "final".
- **stability**: std (ddof=1) of a model's validation loss over epochs ``> burn_in`` (default 9: epochs ≥ 10, the
  same window as ``val_loss_std`` in ``metrics.csv``).
- **decay reached**: the averager's decay at the last epoch (``<model>_decay`` in history) and its half-life
  ``ln 0.5 / ln d`` in updates (:func:`emabench.averaging.half_life`) and in epochs.
- **diverged runs** are counted per group (``n_diverged``) and excluded: their metrics are set to NaN, and the
  statistics drop non-finite values (a pair goes when either side is NaN), so nothing NaN is ever averaged.
- Statistics come from :mod:`emabench.report.stats`: t-intervals at ``1 − alpha``; a verdict ``better``/``worse`` needs
  the paired t-test *and* the Wilcoxon signed-rank test at ``p < alpha``; fewer than 6 pairs is ``insufficient data``.

The columns of each table are listed where they are written (:mod:`emabench.report.files`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from emabench.averaging import half_life
from emabench.errors import ConfigError, InputError
from emabench.report import stats
from emabench.report.collect import CURVE_COLUMNS, SHORT_NAMES, Collection
from emabench.report.groups import BASELINE, group_values, iter_groups, model_order, resolve_by, with_groups
from emabench.results.tables import FINAL_METRICS, STABILITY_FROM_EPOCH

ALPHA = 0.05
DEFAULT_BURN_IN = STABILITY_FROM_EPOCH - 1  # epochs > 9, i.e. from epoch 10 on, as metrics.csv's val_loss_std

BEST_METRICS = tuple(f"best_{m}" for m in FINAL_METRICS)
STABILITY = "val_loss_std"
METRIC_COLUMNS = (*FINAL_METRICS, *BEST_METRICS, "best_epoch", STABILITY)
# What is compared with raw, paired by seed: selection → per-run columns.
SELECTIONS = {"final": FINAL_METRICS, "best": BEST_METRICS, "stability": (STABILITY,)}
_SUMMARY_KEYS = ("mean", "std", "ci_low", "ci_high")
_DIFF_KEYS = ("diff_mean", "diff_ci_low", "diff_ci_high", "p_ttest", "p_wilcoxon", "win_rate", "verdict")
_PAIRED_KEYS = ("diff_mean", "diff_ci_low", "diff_ci_high", "rel_diff_pct", "p_ttest", "p_wilcoxon", "wins")
_PAIRED_KEYS += ("win_rate", "verdict")  # what stats.paired_comparison returns besides n

# The blog's published single-run numbers. Source: the seed-001 blog post's section 4 tables, restated at the bottom
# of shared/REFERENCE.md ("Blog's reported result (one unseeded run)"): ONE unseeded run of the seed study at
# beta 0.999 that early stopping ended at epoch 97. The blog does not say over which epochs its validation-loss std
# was taken; ours is after the burn-in. Read-only.
PUBLISHED_RUN = MappingProxyType(
    {
        "source": "seed-001 blog post, section 4 (restated in shared/REFERENCE.md)",
        "beta": 0.999,
        "epochs": 97,
        "raw": MappingProxyType({"mse": 0.0055, "mae": 0.0581, "r2": 0.9946, "val_loss_std": 0.0023}),
        "ema": MappingProxyType({"mse": 0.0044, "mae": 0.0526, "r2": 0.9957, "val_loss_std": 0.0015}),
    }
)


# --- per-run numbers from history -------------------------------------------------------------------------------


def per_run_table(runs: pd.DataFrame, curves: pd.DataFrame, burn_in: int = DEFAULT_BURN_IN) -> pd.DataFrame:
    """``runs`` plus, per run and model: best-epoch metrics, stability after ``burn_in``, the decay reached and its
    half-life. Diverged runs get NaN metrics (counted, never averaged). Models without a history (post-hoc
    syntheses) get NaN for everything read from history."""
    if burn_in < 0:
        raise ConfigError(f"--burn-in: must be >= 0 epochs, got {burn_in}")
    extra = {key: _from_history(part, burn_in) for key, part in curves.groupby(["run_id", "model"], sort=False)}
    empty = _from_history(pd.DataFrame(columns=CURVE_COLUMNS), burn_in)
    added = pd.DataFrame([extra.get((r, m), empty) for r, m in zip(runs["run_id"], runs["model"])], index=runs.index)
    table = pd.concat([runs, added], axis=1)
    updates = [_updates_per_epoch(row, model) for row, model in zip(table.to_dict("records"), table["model"])]
    table["half_life_epochs"] = table["half_life_updates"] / np.asarray(updates, dtype=float)
    table.loc[table["status"] == "diverged", list(METRIC_COLUMNS)] = np.nan
    return table


def _from_history(curve: pd.DataFrame, burn_in: int) -> dict[str, float]:
    curve = curve.sort_values("epoch")
    finite = curve[np.isfinite(curve["val_loss"].to_numpy(float))]
    row: dict[str, float] = {"best_epoch": np.nan, **{f"best_{m}": np.nan for m in FINAL_METRICS}}
    if len(finite):
        best = finite.loc[finite["val_loss"].idxmin()]  # first epoch of the minimum on ties
        row |= {"best_epoch": float(best["epoch"]), **{f"best_{m}": float(best[m]) for m in FINAL_METRICS}}
    row[STABILITY] = stats.stability(curve, "val_loss", burn_in) if len(curve) else np.nan
    decays = curve["decay"].to_numpy(float)
    decays = decays[np.isfinite(decays)]
    row["decay_reached"] = float(decays[-1]) if decays.size else np.nan
    row["half_life_updates"] = half_life(row["decay_reached"]) if decays.size else np.nan
    return row


def _updates_per_epoch(config: dict[str, Any], model: str) -> float:
    """Optimizer steps per epoch over the averager's ``update_every`` (NaN when the config lacks a key)."""
    try:
        n = int(config["data.n_samples"])
        n_train = n - math.ceil(float(config["data.test_size"]) * n)  # train_test_split's rounding
        steps = math.ceil(n_train / int(config["train.batch_size"]))  # the last partial batch is kept
    except (KeyError, TypeError, ValueError):
        return float("nan")
    every = config.get("ema.update_every" if model == "ema" else f"averagers.{model}.update_every", 1)
    every = 1 if every is None or (isinstance(every, float) and math.isnan(every)) else every
    return steps / float(every)


# --- statistics -------------------------------------------------------------------------------------------------


def compare_group(group: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """One group's paired comparisons, long: one row per averaged model × selection × metric (stats.compare_models)."""
    models = model_order(group)
    parts = []
    for selection, columns in SELECTIONS.items():
        present = [c for c in columns if c in group.columns]
        if not present or BASELINE not in models:
            continue
        wide = stats.compare_models(group, group_by=[], models=models, baseline=BASELINE, metrics=present, alpha=alpha)
        for column in present:
            renames = {f"{column}_n": "n"}
            renames |= {f"baseline_{column}_{k}": f"baseline_{k}" for k in _SUMMARY_KEYS}
            renames |= {f"{column}_{k}": k for k in (*_SUMMARY_KEYS, *_PAIRED_KEYS)}
            part = wide[["model", "baseline", "n_seeds", *renames]].rename(columns=renames)
            part.insert(2, "selection", selection)
            part.insert(3, "metric", column.removeprefix("best_"))
            parts.append(part)
    if not parts:
        return pd.DataFrame()
    order = {m: i for i, m in enumerate(models)}
    long = pd.concat(parts, ignore_index=True)
    long["n_diverged"] = int(group.drop_duplicates("run_id")["status"].eq("diverged").sum())
    return long.sort_values("model", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def comparison_table(per_run: pd.DataFrame, by: Sequence[str], alpha: float = ALPHA) -> pd.DataFrame:
    """Every averaged model vs raw in every group, long (columns in the module docstring)."""
    parts = []
    for (_, group), key in zip(iter_groups(per_run, by), group_values(per_run, by)):
        long = compare_group(group, alpha)
        for k, v in reversed(list(zip(by, key))):
            long.insert(0, k, v)
        parts.append(long)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def summarize_groups(
    runs: pd.DataFrame, by: Sequence[str] | None = None, alpha: float = ALPHA, comparison: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The wide table of ``report.csv``: one row per group (columns in the module docstring)."""
    if runs.empty:
        raise InputError("no finished runs to report")
    by = resolve_by(runs, by)
    comparison = comparison_table(runs, by, alpha) if comparison is None else comparison
    models = model_order(runs)
    rows = []
    for (_, group), key in zip(iter_groups(runs, by), group_values(runs, by)):
        row: dict[str, Any] = {SHORT_NAMES.get(k, k): v for k, v in zip(by, key)}
        row["n_seeds"] = int(group["seed"].nunique())
        row["n_diverged"] = int(group.drop_duplicates("run_id")["status"].eq("diverged").sum())
        for model in models:
            rows_m = group[group["model"] == model]
            for column in (c for c in METRIC_COLUMNS if c in group.columns):
                summary = stats.summarize(rows_m[column], confidence=1.0 - alpha)
                row |= {f"{model}_{column}_{k}": summary[k] for k in _SUMMARY_KEYS}
            if model != BASELINE and "decay_reached" in group.columns:
                row[f"{model}_decay_reached"] = _finite_mean(rows_m["decay_reached"])
                row[f"{model}_half_life_updates"] = _finite_mean(rows_m["half_life_updates"])
        mask = np.ones(len(comparison), dtype=bool)
        for k, v in zip(by, key):
            mask &= (comparison[k] == v).to_numpy() | (comparison[k].isna() & pd.isna(v)).to_numpy()
        for rec in comparison[mask].to_dict("records"):
            column = f"best_{rec['metric']}" if rec["selection"] == "best" else rec["metric"]
            row |= {f"{rec['model']}_{column}_{k}": rec[k] for k in _DIFF_KEYS}
            if column == "mse":
                row[f"{rec['model']}_mse_improvement_pct"] = -rec["rel_diff_pct"]
                row[f"{rec['model']}_wins"] = rec["wins"]
        rows.append(row)
    return pd.DataFrame(rows)


def _finite_mean(values: pd.Series) -> float:
    finite = values.to_numpy(float)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else float("nan")


def reference_table(per_run: pd.DataFrame, by: Sequence[str], published: Any = PUBLISHED_RUN) -> pd.DataFrame:
    """The blog's single run beside our distribution, per group with ``raw`` and ``ema``: one row per quantity with
    the published value, our n/mean/CI/min/median/max and the percentile of the published value in ours.

    Only the groups at the blog's beta when there are any (``ema.beta`` = 0.999), else every group."""
    rows = []
    if "ema.beta" in per_run.columns:
        at_beta = np.isclose(pd.to_numeric(per_run["ema.beta"], errors="coerce"), published["beta"])
        per_run = per_run[at_beta] if at_beta.any() else per_run
    for label, group in iter_groups(per_run, by):
        if not {"raw", "ema"} <= set(group["model"]):
            continue
        runs = group.drop_duplicates("run_id")
        quantities = [("stop epoch", "", published["epochs"], runs.loc[runs["status"] != "diverged", "epochs"])]
        for model in ("raw", "ema"):
            values = group[group["model"] == model]
            for metric, value in published[model].items():
                quantities.append((metric, model, value, values[metric]))
        wide = group.pivot_table(index="seed", columns="model", values="mse", dropna=False)
        change = (wide["ema"] - wide["raw"]) / wide["raw"] * 100.0
        claimed = (published["ema"]["mse"] - published["raw"]["mse"]) / published["raw"]["mse"] * 100.0
        quantities.append(("MSE change %", "ema vs raw", claimed, change))
        for quantity, model, value, ours in quantities:
            data = pd.to_numeric(ours, errors="coerce").to_numpy(float)
            finite = data[np.isfinite(data)]
            summary = stats.summarize(finite)
            rows.append(
                {"group": label, "quantity": quantity, "model": model, "published": float(value)}
                | {k: summary[k] for k in ("n", "mean", "ci_low", "ci_high")}
                | {"min": _q(finite, 0), "median": _q(finite, 0.5), "max": _q(finite, 1)}
                | {"percentile": stats.percentile_of(float(value), finite)}
            )
    return pd.DataFrame(rows)


def _q(values: np.ndarray, q: float) -> float:
    return float(np.quantile(values, q)) if values.size else float("nan")


def decay_table(per_run: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per group and averaged model with a decay: the configured beta (when the config has one), and the decay
    reached at the last epoch and its half-life (mean, min, max over non-diverged seeds)."""
    rows = []
    for label, group in iter_groups(per_run, by):
        for model in model_order(group):
            values = group[group["model"] == model]
            decay = values["decay_reached"].to_numpy(float)
            if model == BASELINE or not np.isfinite(decay).any():
                continue
            configured = _configured_beta(values, model)
            rows.append(
                {"group": label, "model": model, "configured_beta": configured, "n": int(np.isfinite(decay).sum())}
                | {"decay_mean": _finite_mean(values["decay_reached"])}
                | {"decay_min": float(np.nanmin(decay)), "decay_max": float(np.nanmax(decay))}
                | {"half_life_updates_mean": _finite_mean(values["half_life_updates"])}
                | {"half_life_epochs_mean": _finite_mean(values["half_life_epochs"])}
                | {"epochs_mean": _finite_mean(values.loc[values["status"] != "diverged", "epochs"].astype(float))}
            )
    return pd.DataFrame(rows)


def _configured_beta(values: pd.DataFrame, model: str) -> float:
    column = "ema.beta" if model == "ema" else f"averagers.{model}.beta"
    if column not in values.columns:
        return float("nan")
    configured = pd.to_numeric(values[column], errors="coerce").dropna().unique()
    return float(configured[0]) if len(configured) == 1 else float("nan")


# --- the report -------------------------------------------------------------------------------------------------


@dataclass
class Report:
    """Everything the renderings need; pure data."""

    by: list[str]
    per_run: pd.DataFrame  # per_run.csv, with a ``group`` label column
    curves: pd.DataFrame  # non-diverged runs' curves, with ``group``, ``seed`` and ``status``
    comparison: pd.DataFrame  # comparison.csv
    summary: pd.DataFrame  # report.csv
    reference: pd.DataFrame
    decay: pd.DataFrame
    burn_in: int
    alpha: float
    sources: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (folder, status)


def build_report(
    collection: Collection,
    by: Sequence[str] | None = None,
    burn_in: int = DEFAULT_BURN_IN,
    alpha: float = ALPHA,
    sources: Sequence[str] = (),
) -> Report:
    """All statistics of the report from a :class:`Collection` (see the module docstring)."""
    if collection.runs.empty:
        raise InputError(f"no finished runs under {', '.join(sources) or 'the given folders'}")
    keys = resolve_by(collection.runs, by)
    runs = collection.runs.sort_values([*keys, "seed"], kind="stable") if keys else collection.runs
    per_run = with_groups(per_run_table(runs.reset_index(drop=True), collection.curves, burn_in), keys)
    comparison = comparison_table(per_run, keys, alpha)
    run_info = per_run.drop_duplicates("run_id").set_index("run_id")[["group", "seed", "status"]]
    curves = collection.curves.join(run_info, on="run_id")
    order = {run: i for i, run in enumerate(run_info.index)}  # the groups' order, as in the tables
    curves = curves.sort_values("run_id", key=lambda s: s.map(order), kind="stable")
    return Report(
        by=keys,
        per_run=per_run,
        curves=curves[curves["status"] != "diverged"].reset_index(drop=True),
        comparison=comparison,
        summary=summarize_groups(per_run, keys, alpha, comparison),
        reference=reference_table(per_run, keys),
        decay=decay_table(per_run, keys),
        burn_in=burn_in,
        alpha=alpha,
        sources=list(sources),
        skipped=[(str(folder.path), status) for folder, status in collection.skipped],
    )
