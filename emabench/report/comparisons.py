"""Every model against the baseline (``raw`` unless ``--baseline`` says otherwise), paired by seed, in every group,
and the one-row-per-group summary. Pure functions of the per-run frame (see :mod:`emabench.report.frames`).

Every comparison of every metric and selection (final epoch, best epoch, stability) is described with unadjusted
intervals and p-values (:func:`emabench.report.stats.compare_models`); only the primary ones are decided, as one
family (:mod:`emabench.report.verdicts`): a report that tested everything it shows would spend its error rate on
questions no one asked (accuracy and macro-F1, nearly the same number, counted twice) and lose the power to answer
the one that was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from emabench.errors import RunError
from emabench.report import stats
from emabench.report.collect import SHORT_NAMES
from emabench.report.groups import group_values, iter_groups, model_order, resolve_by
from emabench.report.question import Question
from emabench.report.specs import (
    SELECTION_LABELS,
    TEST,
    VALIDATION,
    Measure,
    headline,
    is_tested,
    measures,
    metric_columns,
    spec,
    task_of,
)
from emabench.report.verdicts import Family, Looks, Pair, judge
from emabench.tasks.registry import get_task

ALPHA = 0.05
_SUMMARY_KEYS = ("mean", "std", "ci_low", "ci_high")
_PAIRED_KEYS = ("diff_mean", "diff_ci_low", "diff_ci_high", "rel_diff_pct", "p_ttest", "p_sign_flip", "p_wilcoxon")
_PAIRED_KEYS += ("wins", "win_rate", "win_ci_low", "win_ci_high", "skewness")  # stats.paired_comparison's, but n
_DIFF_KEYS = ("diff_mean", "diff_ci_low", "diff_ci_high", "p_ttest", "p_sign_flip", "p_wilcoxon", "wins", "win_rate")
_DIFF_KEYS += ("verdict",)


def compare_group(group: pd.DataFrame, baseline: str, alpha: float = ALPHA) -> tuple[pd.DataFrame, list[Pair]]:
    """One group's paired comparisons, long: one row per model × selection × metric (stats.compare_models,
    unadjusted), with the group's ``task`` and each metric's direction; and each row's seeds and paired values."""
    models = model_order(group, baseline)
    if baseline not in models:
        return pd.DataFrame(), []
    long, pairs = paired_long(group, group_by=[], models=models, baseline=baseline, alpha=alpha)
    if long.empty:
        return long, pairs
    long = long.drop(columns="n_unpaired")
    long["n_diverged"] = int(group.drop_duplicates("run_id")["status"].eq("diverged").sum())
    order = {m: i for i, m in enumerate(models)}
    ranks = long["model"].map(order).to_numpy()
    keep = np.argsort(ranks, kind="stable")
    return long.iloc[keep].reset_index(drop=True), [pairs[i] for i in keep]


def paired_long(
    frame: pd.DataFrame,
    *,
    group_by: Sequence[str],
    models: Sequence[str],
    baseline: str,
    alpha: float = ALPHA,
    cross_model: bool = True,
) -> tuple[pd.DataFrame, list[Pair]]:
    """``stats.compare_models`` on every :class:`~emabench.report.specs.Measure` of ``frame``'s task (the protocols
    on the test set when every run has one, the final and best-epoch metrics on the validation set, stability), long:
    one row per ``group_by`` × model × measure with ``task``, ``selection``, ``set`` (test or validation),
    ``metric``, ``higher_is_better``, ``n_seeds``, ``n_unpaired``, ``n``, the two models' summaries (``baseline_*``
    and plain) and the paired comparison, unadjusted; and per row its seeds and paired values. Shared by the
    comparisons with the baseline and ``--versus`` (``cross_model=False``: no early-stopped protocol)."""
    task = task_of(frame)
    wanted = measures(task, is_tested(frame), cross_model)
    frame = _with_sides(frame, wanted, baseline)
    wanted = [m for m in wanted if m.column in frame.columns]
    joined = _joined(frame, group_by, models, baseline, [m.column for m in wanted])
    parts, pairs = [], []
    for (selection, on), chosen in _by_protocol(wanted).items():
        present = {m.column: m.higher_is_better for m in chosen}
        wide = stats.compare_models(
            frame, group_by=group_by, models=models, metrics=present, baseline=baseline, alpha=alpha
        )
        for measure in chosen:
            column = measure.column
            renames = {f"{column}_n": "n"}
            renames |= {f"baseline_{column}_{k}": f"baseline_{k}" for k in _SUMMARY_KEYS}
            renames |= {f"{column}_{k}": k for k in (*_SUMMARY_KEYS, *_PAIRED_KEYS)}
            part = wide[[*group_by, "model", "baseline", "n_seeds", "n_unpaired", *renames]].rename(columns=renames)
            at = len(group_by) + 2
            for offset, (name, value) in enumerate(
                (("task", task.name), ("selection", selection), ("set", on), ("metric", measure.metric))
            ):
                part.insert(at + offset, name, value)
            part.insert(at + 4, "higher_is_better", measure.higher_is_better)
            parts.append(part)
            pairs += [_pair(joined[key, model], column) for key, model in _row_keys(part, group_by)]
    return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()), pairs


def _by_protocol(wanted: Sequence[Measure]) -> dict[tuple[str, str], list[Measure]]:
    """The measures by (selection, set), in order."""
    out: dict[tuple[str, str], list[Measure]] = {}
    for measure in wanted:
        out.setdefault((measure.selection, measure.on), []).append(measure)
    return out


def _with_sides(frame: pd.DataFrame, wanted: Sequence[Measure], baseline: str) -> pd.DataFrame:
    """``frame`` with a column for each measure whose two sides are different columns (the early-stopped protocol):
    the baseline's rows hold its side, every other model's rows the model's side, so that a pairing by seed on one
    column compares the two."""
    added = {}
    for measure in wanted:
        model_side, baseline_side = measure.sides
        if model_side != baseline_side and {model_side, baseline_side} <= set(frame.columns):
            is_baseline = (frame["model"] == baseline).to_numpy()
            added[measure.column] = np.where(is_baseline, frame[baseline_side], frame[model_side]).astype(float)
    return frame.assign(**added) if added else frame


def _row_keys(part: pd.DataFrame, group_by: Sequence[str]) -> list[tuple[tuple[Any, ...], str]]:
    return [(tuple(r[k] for k in group_by), r["model"]) for r in part.to_dict("records")]


def _joined(
    frame: pd.DataFrame, group_by: Sequence[str], models: Sequence[str], baseline: str, columns: Sequence[str]
) -> dict[tuple[tuple[Any, ...], str], pd.DataFrame]:
    """(group key, model) → that model's and the baseline's rows joined by seed (``stats.paired_frame``)."""
    present = [c for c in columns if c in frame.columns]
    groups = frame.groupby(list(group_by), sort=True, dropna=False) if group_by else [((), frame)]
    joined = {}
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        for model in (m for m in models if m != baseline and m in set(group["model"])):
            joined[key, model] = stats.paired_frame(group, model, baseline, present)[0]
    return joined


def _pair(joined: pd.DataFrame, column: str) -> Pair:
    """The finite pairs of ``column``: seeds, baseline values, model values."""
    base, other = joined[f"{column}__base"].to_numpy(float), joined[f"{column}__other"].to_numpy(float)
    keep = np.isfinite(base) & np.isfinite(other)
    return joined.index.to_numpy()[keep], base[keep], other[keep]


def comparison_table(
    per_run: pd.DataFrame, by: Sequence[str], question: Question, alpha: float = ALPHA, looks: Looks | None = None
) -> tuple[pd.DataFrame, Family]:
    """Every model vs the question's baseline in every group, long, described; the primary rows decided as one
    family (:func:`emabench.report.verdicts.judge`; with ``looks``, as the sequential study it was)."""
    parts, pairs = [], []
    for (_, group), key in zip(iter_groups(per_run, by), group_values(per_run, by)):
        long, group_pairs = compare_group(group, question.baseline, alpha)
        for k, v in reversed(list(zip(by, key))):
            if k not in long.columns:
                long.insert(0, k, v)
        parts.append(long)
        pairs += group_pairs
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if table.empty:
        return table, Family(0, alpha, float("nan"), 0, "no comparison in this report")
    return judge(table, pairs, question, alpha, by, looks)


def measures_text(rows: pd.DataFrame) -> str:
    """What a family's ``rows`` compare: ``final MSE, final R², best-epoch MSE, stability`` (``on the test set``
    after a measure taken there)."""
    kinds = rows.drop_duplicates(["task", "selection", "set", "metric"])
    names = [
        measure_label(get_task(t), s, m, on)
        for t, s, m, on in zip(kinds["task"], kinds["selection"], kinds["metric"], kinds["set"])
    ]
    return ", ".join(dict.fromkeys(names))


def measure_label(task: Any, selection: str, metric: str, on: str) -> str:
    """``final accuracy on the test set``, ``best-epoch MSE``, ``stability``."""
    if selection == "stability":
        return "stability"
    return f"{SELECTION_LABELS[selection]} {spec(task, metric).label}" + (" on the test set" if on == TEST else "")


def summarize_groups(
    runs: pd.DataFrame,
    by: Sequence[str],
    comparison: pd.DataFrame,
    baseline: str,
    alpha: float = ALPHA,
    churn: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The wide table of ``report.csv``: one row per group (columns in :mod:`emabench.report.files`); ``churn``:
    :func:`emabench.report.churn.churn_table`'s rows, one per group and model."""
    if runs.empty:
        raise RunError("no finished runs to report")
    by = resolve_by(runs, by)
    rows = []
    for (label, group), key in zip(iter_groups(runs, by), group_values(runs, by)):
        row: dict[str, Any] = {SHORT_NAMES.get(k, k): v for k, v in zip(by, key)}
        task = task_of(group)
        row |= {"task": task.name, "n_seeds": int(group["seed"].nunique())}
        row["n_diverged"] = int(group.drop_duplicates("run_id")["status"].eq("diverged").sum())
        for model in model_order(group, baseline):
            rows_m = group[group["model"] == model]
            for column in (c for c in metric_columns(task) if c in group.columns):
                summary = stats.summarize(rows_m[column], confidence=1.0 - alpha)
                row |= {f"{model}_{column}_{k}": summary[k] for k in _SUMMARY_KEYS}
            if "decay_reached" in group.columns and np.isfinite(rows_m["decay_reached"].to_numpy(float)).any():
                row[f"{model}_decay_reached"] = _finite_mean(rows_m["decay_reached"])
                row[f"{model}_half_life_updates"] = _finite_mean(rows_m["half_life_updates"])
        row |= _differences(_group_rows(comparison, by, key), task, is_tested(group))
        if churn is not None and len(churn):
            row |= {f"{r['model']}_churn": r["churn"] for r in churn[churn["group"] == label].to_dict("records")}
        rows.append(row)
    return pd.DataFrame(rows)


def _differences(comparison: pd.DataFrame, task: Any, tested: bool) -> dict[str, Any]:
    """One group's comparisons as ``report.csv`` cells: ``<model>_<measure column>_<key>``, the final metrics'
    improvement, and the seeds won on the headline metric (on the test set when there is one)."""
    wins_on = Measure("final", headline(task), TEST if tested else VALIDATION, True).column
    row: dict[str, Any] = {}
    for rec in comparison.to_dict("records"):
        column = Measure(rec["selection"], rec["metric"], rec["set"], rec["higher_is_better"]).column
        row |= {f"{rec['model']}_{column}_{k}": rec[k] for k in _DIFF_KEYS}
        if rec["selection"] == "final":  # positive = better, in the metric's direction
            sign = 1.0 if rec["higher_is_better"] else -1.0
            row[f"{rec['model']}_{column}_improvement_pct"] = sign * rec["rel_diff_pct"]
            if column == wins_on:
                row[f"{rec['model']}_wins"] = rec["wins"]
    return row


def _group_rows(comparison: pd.DataFrame, by: Sequence[str], key: Sequence[Any]) -> pd.DataFrame:
    mask = np.ones(len(comparison), dtype=bool)
    for k, v in zip(by, key):
        mask &= (comparison[k] == v).to_numpy() | (comparison[k].isna() & pd.isna(v)).to_numpy()
    return comparison[mask]


def _finite_mean(values: pd.Series) -> float:
    finite = values.to_numpy(float)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else float("nan")
