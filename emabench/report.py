"""``emabench report``: read finished run folders (never re-train) and say, with honest statistics across seeds,
whether each averaged model beats raw.

Data flow, everything after :func:`collect` a pure function of data frames::

    run folders ─collect─▶ Collection(runs: one row per run × model, curves: one row per run × model × epoch)
                ─build_report─▶ Report(per_run, comparison, summary, reference, decay)
                ─report_html (markdown, HTML), report_figures (PNG)─▶ files, written by :func:`write_files`

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
- Statistics come from :mod:`emabench.stats`: t-intervals at ``1 − alpha``; a verdict ``better``/``worse`` needs
  the paired t-test *and* the Wilcoxon signed-rank test at ``p < alpha``; fewer than 6 pairs is ``insufficient data``.

Files written into the report folder:

- ``report.csv``: one row per group: the group keys (``ema.beta`` as ``beta``), ``n_seeds``, ``n_diverged``; per
  model ``M`` and column ``C`` in mse, mae, r2 (final), best_mse, best_mae, best_r2, best_epoch, val_loss_std:
  ``M_C_mean/_std/_ci_low/_ci_high``; ``M_decay_reached``, ``M_half_life_updates``; per averaged model ``A``:
  ``A_mse_improvement_pct`` (mean paired (raw − A)/raw, %), ``A_wins`` (seeds with lower final MSE) and per compared
  column ``A_C_diff_mean/_diff_ci_low/_diff_ci_high/_p_ttest/_p_wilcoxon/_win_rate/_verdict``.
- ``comparison.csv``: long, one row per group × averaged model × selection (final, best, stability) × metric: group
  keys, ``model``, ``baseline``, ``selection``, ``metric``, ``n_seeds``, ``n_diverged``, ``n`` (pairs used),
  ``baseline_mean/std/ci_low/ci_high``, ``mean/std/ci_low/ci_high``, ``diff_mean/diff_ci_low/diff_ci_high``,
  ``rel_diff_pct``, ``p_ttest``, ``p_wilcoxon``, ``wins``, ``win_rate``, ``verdict``.
- ``per_run.csv``: one row per run × model: group keys, ``seed``, ``run_id``, ``status``, ``stop_reason``,
  ``epochs``, ``model``, final mse/mae/r2, ``best_epoch``, best_mse/mae/r2, ``val_loss_std``, ``decay_reached``,
  ``half_life_updates``, ``half_life_epochs``.
- ``report.md`` (tables, figures linked), ``report.html`` (one self-contained file, figures inline) and the
  figures ``fig_*.png`` (see :data:`FIGURES`).
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from emabench import stats
from emabench.averaging import half_life
from emabench.config import parse_yaml
from emabench.errors import ConfigError, RunError
from emabench.results.tables import FINAL_METRICS, STABILITY_FROM_EPOCH
from emabench.runs.folder import RunFolder, find_runs, is_run_folder
from emabench.runs.sweep_folder import is_sweep_folder, sweep_mode, write_report_files

# Keys that identify a run but are never a "setting" to group by.
IDENTITY_KEYS = ("seed", "name")
SHORT_NAMES = {"ema.beta": "beta"}
ALIASES = {short: key for key, short in SHORT_NAMES.items()}
BASELINE = "raw"
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

REPORT_CSV, REPORT_MD, REPORT_HTML = "report.csv", "report.md", "report.html"
COMPARISON_CSV, PER_RUN_CSV = "comparison.csv", "per_run.csv"
FIGURES = {  # file name → what it shows
    "fig_mse_vs_beta.png": "final-epoch MSE and the paired difference vs beta, 95% CIs (when betas were swept)",
    "fig_paired_mse.png": "final-epoch MSE per seed, raw vs each averaged model",
    "fig_paired_stability.png": "validation-loss std after burn-in per seed, raw vs each averaged model",
    "fig_val_loss.png": "validation loss over epochs, mean ± 1 std over seeds",
    "fig_r2.png": "validation R² over epochs, mean ± 1 std over seeds",
}

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


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"ema": {"beta": 0.9}}`` → ``{"ema.beta": 0.9}``; lists become strings so they can be grouped."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = str(value) if isinstance(value, list) else value
    return flat


# --- reading run folders ----------------------------------------------------------------------------------------


@dataclass
class Collection:
    """The finished runs found (tidy frames) and the folders skipped with the reason."""

    runs: pd.DataFrame  # one row per (run, model): flattened config, run_id, status, epochs, model, mse, mae, r2
    curves: pd.DataFrame  # one row per (run, model, epoch): run_id, model, epoch, val_loss, mse, mae, r2, decay
    skipped: list[tuple[RunFolder, str]] = field(default_factory=list)


def collect(roots: Iterable[str | Path], where: Sequence[str] = ()) -> Collection:
    """Read every run folder under ``roots`` whose config matches all ``where`` filters (``KEY=VALUE``).

    Folders without ``DONE`` (incomplete, interrupted) are skipped and returned with their status.
    """
    folders = find_runs(roots)
    configs = {f.path: flatten(parse_yaml(f.read_config_text(), str(f.path))) for f in folders}
    filters = parse_where(where, set().union(*configs.values()) if configs else set())
    rows, curves, skipped = [], [], []
    for folder in folders:
        config = configs[folder.path]
        if not all(_matches(config.get(key), value) for key, value in filters):
            continue
        if not folder.is_done:
            skipped.append((folder, folder.status))
            continue
        info, history = folder.done_info(), folder.read_history()
        base = config | {
            "run_id": folder.name,
            "run_path": str(folder.path),
            "status": info.get("status", "completed"),
            "stop_reason": info.get("stop_reason", ""),
            "epochs": int(info.get("epochs", len(history))),
            "sweep_mode": sweep_mode(folder.path),
        }
        for record in folder.read_metrics().to_dict("records"):
            rows.append(base | {"model": record["model"]} | {m: float(record[m]) for m in FINAL_METRICS})
        curves.append(history_curves(history, folder.name))
    curve_frame = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=_CURVE_COLUMNS)
    return Collection(pd.DataFrame(rows), curve_frame, skipped)


_CURVE_COLUMNS = ["run_id", "model", "epoch", "val_loss", "mse", "mae", "r2", "decay"]


def history_curves(history: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """One run's history in long form: one row per (model, epoch) for every ``<model>_val_loss`` column."""
    models = [c.removesuffix("_val_loss") for c in history.columns if c.endswith("_val_loss")]
    parts = []
    for model in models:
        part = pd.DataFrame({"run_id": run_id, "model": model, "epoch": history["epoch"].astype(int)})
        for metric in ("val_loss", *FINAL_METRICS, "decay"):
            column = f"{model}_{metric}"
            part[metric] = history[column].astype(float) if column in history else np.nan
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_CURVE_COLUMNS)


def parse_where(items: Sequence[str], known: set[str]) -> list[tuple[str, Any]]:
    """``["data.noise=0.1"]`` → ``[("data.noise", 0.1)]`` (value parsed as a YAML scalar); unknown keys refused."""
    filters = []
    for text in items:
        key, sep, raw = text.partition("=")
        key = ALIASES.get(key.strip(), key.strip())
        if not sep or not key:
            raise ConfigError(f"--where {text!r}: expected KEY=VALUE with a dotted config key, e.g. data.noise=0.1")
        if known and key not in known:
            raise ConfigError(f"--where: unknown key {key!r}{_did_you_mean(key, known)}")
        filters.append((key, parse_yaml(raw, f"--where {key}") if raw.strip() else None))
    return filters


def _did_you_mean(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else " (keys are dotted config keys, e.g. ema.beta)"


def _matches(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, list):
        wanted = str(wanted)  # flatten() stores lists as their str()
    numbers = (int, float)
    if isinstance(value, numbers) and isinstance(wanted, numbers) and not isinstance(value, bool):
        return math.isclose(float(value), float(wanted), rel_tol=1e-9, abs_tol=1e-12)
    return value == wanted or (value is not None and wanted is not None and str(value) == str(wanted))


# --- per-run numbers from history -------------------------------------------------------------------------------


def per_run_table(runs: pd.DataFrame, curves: pd.DataFrame, burn_in: int = DEFAULT_BURN_IN) -> pd.DataFrame:
    """``runs`` plus, per run and model: best-epoch metrics, stability after ``burn_in``, the decay reached and its
    half-life. Diverged runs get NaN metrics (counted, never averaged). Models without a history (post-hoc
    syntheses) get NaN for everything read from history."""
    if burn_in < 0:
        raise ConfigError(f"--burn-in: must be >= 0 epochs, got {burn_in}")
    extra = {key: _from_history(part, burn_in) for key, part in curves.groupby(["run_id", "model"], sort=False)}
    empty = _from_history(pd.DataFrame(columns=_CURVE_COLUMNS), burn_in)
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


# --- grouping ---------------------------------------------------------------------------------------------------


def config_keys(runs: pd.DataFrame) -> list[str]:
    return [c for c in runs.columns if "." in c or c in (*IDENTITY_KEYS, "device")]


def group_keys(runs: pd.DataFrame) -> list[str]:
    """Config keys whose values differ between runs (the swept settings), plus ``ema.beta`` always."""
    varying = [k for k in config_keys(runs) if k not in IDENTITY_KEYS and runs[k].astype(str).nunique() > 1]
    return (["ema.beta"] if "ema.beta" in runs.columns else []) + [k for k in varying if k != "ema.beta"]


def resolve_by(runs: pd.DataFrame, by: Sequence[str] | None) -> list[str]:
    """The group keys: ``by`` (aliases like ``beta`` allowed) checked against the runs' config, or the swept keys.

    Refuses a grouping that leaves two runs of one seed in a group (they differ in a key not grouped by)."""
    if not by:
        keys = group_keys(runs)
    else:
        keys = list(dict.fromkeys(ALIASES.get(k, k) for k in by))
        for key in keys:
            if key == "seed":
                raise ConfigError("--by seed: models are compared paired by seed, so seed cannot group runs")
            if key not in config_keys(runs):
                raise ConfigError(f"--by: unknown key {key!r}{_did_you_mean(key, config_keys(runs))}")
    for label, group in _groups(runs, keys):
        if group.duplicated(["seed", "model"]).any():
            others = [k for k in config_keys(runs) if k not in (*keys, *IDENTITY_KEYS)]
            differ = [k for k in others if group[k].astype(str).nunique() > 1]
            raise ConfigError(
                f"--by {' '.join(keys) or '(none)'}: group {label} holds several runs per seed that differ in "
                f"{', '.join(differ) or 'their config'}; add --by for those keys or filter with --where"
            )
    return keys


def group_label(keys: Sequence[str], values: Sequence[Any]) -> str:
    """``beta=0.99, data.noise=0.1``; ``all runs`` without keys."""
    return ", ".join(f"{SHORT_NAMES.get(k, k)}={_plain(v)}" for k, v in zip(keys, values)) or "all runs"


def _plain(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _groups(runs: pd.DataFrame, by: Sequence[str]) -> Iterator[tuple[str, pd.DataFrame]]:
    if not by:
        yield group_label([], []), runs
        return
    for key, group in runs.groupby(list(by), sort=True, dropna=False):
        yield group_label(by, key if isinstance(key, tuple) else (key,)), group


def model_order(runs: pd.DataFrame) -> list[str]:
    """``raw`` first, then the other models in order of appearance."""
    models = list(dict.fromkeys(runs["model"]))
    return sorted(models, key=lambda m: (m != BASELINE, models.index(m)))


def with_groups(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """``frame`` with a ``group`` label column."""
    labels = [group_label(by, values) for values in frame[list(by)].itertuples(index=False)] if by else None
    return frame.assign(group=labels if by else group_label([], []))


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
    for (_, group), key in zip(_groups(per_run, by), _group_values(per_run, by)):
        long = compare_group(group, alpha)
        for k, v in reversed(list(zip(by, key))):
            long.insert(0, k, v)
        parts.append(long)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _group_values(runs: pd.DataFrame, by: Sequence[str]) -> list[tuple[Any, ...]]:
    if not by:
        return [()]
    return [k if isinstance(k, tuple) else (k,) for k, _ in runs.groupby(list(by), sort=True, dropna=False)]


def summarize_groups(
    runs: pd.DataFrame, by: Sequence[str] | None = None, alpha: float = ALPHA, comparison: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The wide table of ``report.csv``: one row per group (columns in the module docstring)."""
    if runs.empty:
        raise RunError("no finished runs to report")
    by = resolve_by(runs, by)
    comparison = comparison_table(runs, by, alpha) if comparison is None else comparison
    models = model_order(runs)
    rows = []
    for (_, group), key in zip(_groups(runs, by), _group_values(runs, by)):
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
    for label, group in _groups(per_run, by):
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
    for label, group in _groups(per_run, by):
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
        raise RunError(f"no finished runs under {', '.join(sources) or 'the given folders'}")
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


def render_files(report: Report) -> dict[str, str | bytes]:
    """Every report file by name: the CSVs, Markdown and HTML as text, the figures as PNG bytes."""
    import io

    from emabench.report_figures import report_figures
    from emabench.report_html import document, to_html, to_markdown

    images: dict[str, bytes] = {}
    for name, figure in report_figures(report).items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        images[name] = buffer.getvalue()
    blocks = document(report, list(images))
    return {
        REPORT_CSV: to_csv(report.summary),
        REPORT_MD: to_markdown(blocks),
        REPORT_HTML: to_html(blocks, images),
        COMPARISON_CSV: to_csv(report.comparison),
        PER_RUN_CSV: to_csv(per_run_csv_frame(report)),
        **images,
    }


def write_files(files: dict[str, str | bytes], folder: Path) -> list[Path]:
    """Write :func:`render_files`'s output into ``folder``, each file atomically; returns the paths written."""
    return write_report_files(folder, files)


def per_run_csv_frame(report: Report) -> pd.DataFrame:
    columns = [*report.by, "group", "seed", "run_id", "status", "stop_reason", "epochs", "model", *METRIC_COLUMNS]
    columns += ["decay_reached", "half_life_updates", "half_life_epochs"]
    return report.per_run[[c for c in dict.fromkeys(columns) if c in report.per_run.columns]]


def to_csv(table: pd.DataFrame) -> str:
    return table.to_csv(index=False, lineterminator="\n")


def to_json(report: Report) -> str:
    """The report's tables as JSON (NaN → null), for scripting."""
    document = {
        "by": report.by,
        "alpha": report.alpha,
        "burn_in": report.burn_in,
        "sources": report.sources,
        "groups": _records(report.summary),
        "comparison": _records(report.comparison),
        "reference": _records(report.reference),
        "decay": _records(report.decay),
        "skipped": [{"path": p, "status": s} for p, s in report.skipped],
    }
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _json_value(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- ls and show ------------------------------------------------------------------------------------------------


def inventory(roots: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run folder under ``roots``: ``folder`` (its parent), ``is_sweep`` (the parent holds a sweep
    spec), ``run_id``, ``path``, ``status`` (completed, diverged, interrupted, incomplete), ``epochs`` (from DONE,
    else the epochs in history.csv so far), ``stop_reason``, ``wall_time_s``."""
    rows = []
    for folder in find_runs(roots):
        info = folder.done_info() if folder.is_done else {}
        rows.append(
            {
                "folder": str(folder.path.parent),
                "is_sweep": is_sweep_folder(folder.path.parent),
                "run_id": folder.name,
                "path": str(folder.path),
                "status": folder.status,
                "epochs": int(info["epochs"]) if "epochs" in info else epochs_so_far(folder),
                "stop_reason": str(info.get("stop_reason", "")),
                "wall_time_s": float(info.get("wall_time_s", np.nan)),
            }
        )
    columns = ["folder", "is_sweep", "run_id", "path", "status", "epochs", "stop_reason", "wall_time_s"]
    return pd.DataFrame(rows, columns=columns)


def epochs_so_far(folder: RunFolder) -> int:
    """Epochs recorded in a run's history.csv (0 without one); for runs that have no DONE yet."""
    try:
        return len(folder.read_history())
    except RunError:
        return 0


def find_run(spec: str | Path, runs_dir: Path) -> RunFolder:
    """A run folder given as a path, or as a run id (or a unique prefix of one) under ``runs_dir``."""
    path = Path(spec)
    if is_run_folder(path):
        return RunFolder(path)
    if not runs_dir.is_dir():
        raise RunError(f"{spec}: not a run folder (no config.yaml), and --runs-dir {runs_dir} does not exist")
    runs = find_runs([runs_dir])
    matches = [f for f in runs if f.name == str(spec)] or [f for f in runs if f.name.startswith(str(spec))]
    if not matches:
        raise RunError(f"{spec}: no such run (neither a folder with config.yaml nor a run id under {runs_dir})")
    if len(matches) > 1:
        names = ", ".join(f.name for f in matches[:3]) + (", …" if len(matches) > 3 else "")
        raise RunError(f"{spec}: ambiguous, matches {len(matches)} runs under {runs_dir} ({names})")
    return matches[0]
