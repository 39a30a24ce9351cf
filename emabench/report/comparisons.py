"""Every averaged model against raw, paired by seed, in every group, corrected for multiplicity over the whole report;
and the one-row-per-group summary. Pure functions of the per-run frame (see :mod:`emabench.report.frames`).

**Multiplicity.** A sweep of a few averagers × metrics × (final, best epoch, stability) × groups makes dozens of
comparisons; at ``p < α`` each, some "better" verdicts would appear by chance alone. So the comparisons of ONE report
are one family: the paired t-test p-values of the family are Holm-adjusted together (:func:`stats.holm`), and so
are the Wilcoxon p-values, and a verdict says "better"/"worse" only when BOTH adjusted p-values are below α. A false
"better" needs a false t-test rejection among the family, which Holm keeps below α (family-wise). Comparisons with
fewer than ``stats.min_seeds_for(α)`` seed pairs cannot reach α even alone: they are "insufficient data" and not
tested, so they do not enlarge the family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from emabench.errors import RunError
from emabench.report import stats
from emabench.report.collect import SHORT_NAMES
from emabench.report.groups import BASELINE, group_values, iter_groups, model_order, resolve_by
from emabench.report.specs import SELECTION_LABELS, compared_columns, headline, metric_columns, spec, task_of
from emabench.tasks.registry import get_task

ALPHA = 0.05
_SUMMARY_KEYS = ("mean", "std", "ci_low", "ci_high")
_PAIRED_KEYS = ("diff_mean", "diff_ci_low", "diff_ci_high", "rel_diff_pct", "p_ttest", "p_wilcoxon", "wins")
_PAIRED_KEYS += ("win_rate", "verdict")  # what stats.paired_comparison returns besides n
HOLM = ("p_ttest_holm", "p_wilcoxon_holm")
_DIFF_KEYS = ("diff_mean", "diff_ci_low", "diff_ci_high", "p_ttest", "p_ttest_holm", "p_wilcoxon")
_DIFF_KEYS += ("p_wilcoxon_holm", "wins", "win_rate", "verdict")


@dataclass(frozen=True)
class Family:
    """The comparisons corrected together: ``tests`` of them (Holm over each test's p-values), the fewest seed pairs
    with which a verdict can survive that correction (``min_seeds``), and a sentence that says which they were."""

    tests: int
    min_seeds: int
    alpha: float
    description: str


def compare_group(group: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """One group's paired comparisons, long: one row per averaged model × selection × metric, uncorrected
    (stats.compare_models), with the group's ``task`` and each metric's direction (``higher_is_better``)."""
    models = model_order(group)
    if BASELINE not in models:
        return pd.DataFrame()
    long = paired_long(group, group_by=[], models=models, baseline=BASELINE, alpha=alpha)
    if long.empty:
        return long
    order = {m: i for i, m in enumerate(models)}
    long = long.drop(columns="n_unpaired")
    long["n_diverged"] = int(group.drop_duplicates("run_id")["status"].eq("diverged").sum())
    return long.sort_values("model", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def paired_long(
    frame: pd.DataFrame, *, group_by: Sequence[str], models: Sequence[str], baseline: str, alpha: float = ALPHA
) -> pd.DataFrame:
    """``stats.compare_models`` on every compared column of ``frame``'s task (final metrics, best epoch, stability),
    long: one row per ``group_by`` × model × selection × metric with ``task``, ``selection``, ``metric`` (``best_``
    stripped), ``higher_is_better``, ``n_seeds``, ``n_unpaired``, ``n``, the two models' summaries (``baseline_*``
    and plain) and the paired comparison; uncorrected. Shared by the averaged-vs-raw comparisons and ``--versus``."""
    task = task_of(frame)
    parts = []
    for selection, columns in compared_columns(task).items():
        present = {c: higher for c, higher in columns.items() if c in frame.columns}
        if not present:
            continue
        wide = stats.compare_models(
            frame, group_by=group_by, models=models, metrics=present, baseline=baseline, alpha=alpha
        )
        for column, higher in present.items():
            renames = {f"{column}_n": "n"}
            renames |= {f"baseline_{column}_{k}": f"baseline_{k}" for k in _SUMMARY_KEYS}
            renames |= {f"{column}_{k}": k for k in (*_SUMMARY_KEYS, *_PAIRED_KEYS)}
            part = wide[[*group_by, "model", "baseline", "n_seeds", "n_unpaired", *renames]].rename(columns=renames)
            at = len(group_by) + 2
            part.insert(at, "task", task.name)
            part.insert(at + 1, "selection", selection)
            part.insert(at + 2, "metric", column.removeprefix("best_"))
            part.insert(at + 3, "higher_is_better", higher)
            parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def comparison_table(per_run: pd.DataFrame, by: Sequence[str], alpha: float = ALPHA) -> tuple[pd.DataFrame, Family]:
    """Every averaged model vs raw in every group, long, with Holm-adjusted p-values and verdicts over the whole
    table (:func:`correct`)."""
    parts = []
    for (_, group), key in zip(iter_groups(per_run, by), group_values(per_run, by)):
        long = compare_group(group, alpha)
        for k, v in reversed(list(zip(by, key))):
            if k not in long.columns:
                long.insert(0, k, v)
        parts.append(long)
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return correct(table, alpha, by)


def correct(comparison: pd.DataFrame, alpha: float = ALPHA, by: Sequence[str] = ()) -> tuple[pd.DataFrame, Family]:
    """``comparison`` with ``p_ttest_holm`` and ``p_wilcoxon_holm`` beside the raw p-values, and every ``verdict``
    recomputed from the adjusted ones (:func:`holm_correct`), as one family described for the report."""
    if comparison.empty:
        return comparison.copy(), Family(0, stats.min_seeds_for(alpha), alpha, "no comparisons")
    table, in_family = holm_correct(comparison, alpha)
    tests = int(in_family.sum())
    description = _describe(table[in_family], tests, by)
    return table, Family(tests, stats.min_seeds_for(alpha, max(tests, 1)), alpha, description)


def holm_correct(comparison: pd.DataFrame, alpha: float = ALPHA) -> tuple[pd.DataFrame, pd.Series]:
    """Holm over the rows of ``comparison`` as ONE family (module docstring): ``p_ttest_holm`` and
    ``p_wilcoxon_holm`` inserted beside the raw p-values, every ``verdict`` recomputed from them; and which rows
    formed the family: those with at least ``stats.min_seeds_for(alpha)`` pairs and a finite p-value (the others
    get NaN adjusted p-values)."""
    table = comparison.copy()
    if table.empty:
        return table, pd.Series(dtype=bool)
    in_family = (table["n"] >= stats.min_seeds_for(alpha)) & (
        np.isfinite(table["p_ttest"].to_numpy(float)) | np.isfinite(table["p_wilcoxon"].to_numpy(float))
    )
    tests = int(in_family.sum())
    for raw, adjusted in zip(("p_ttest", "p_wilcoxon"), HOLM):
        values = np.full(len(table), np.nan)
        values[in_family.to_numpy()] = stats.holm(table.loc[in_family, raw].to_numpy(float))
        table.insert(int(table.columns.get_loc(raw)) + 1, adjusted, values)
    table["verdict"] = [
        stats.verdict(
            int(r["n"]),
            float(r["diff_mean"]),
            float(r["p_ttest_holm"]),
            float(r["p_wilcoxon_holm"]),
            alpha=alpha,
            higher_is_better=bool(r["higher_is_better"]),
            tests=max(tests, 1),
        )
        for r in table.to_dict("records")
    ]
    return table, in_family


def _describe(rows: pd.DataFrame, tests: int, by: Sequence[str]) -> str:
    """``all averaged-vs-raw comparisons in this report: 14 tests (1 averaged model(s) in 2 group(s) × …)``."""
    if not tests:
        return "no averaged-vs-raw comparison in this report has enough seed pairs to be tested"
    what = measures_text(rows)
    groups = len(rows[list(by)].drop_duplicates()) if by else 1
    return (
        f"all averaged-vs-raw comparisons in this report: {tests} tests ({rows['model'].nunique()} averaged "
        f"model(s) in {groups} group(s), each on {what})"
    )


def measures_text(rows: pd.DataFrame) -> str:
    """What a family's ``rows`` compare: ``final MSE, final R², best-epoch MSE, stability``."""
    kinds = rows.drop_duplicates(["task", "selection", "metric"])
    names = [
        "stability" if s == "stability" else f"{SELECTION_LABELS[s]} {spec(get_task(t), m).label}"
        for t, s, m in zip(kinds["task"], kinds["selection"], kinds["metric"])
    ]
    return ", ".join(dict.fromkeys(names))


def summarize_groups(
    runs: pd.DataFrame, by: Sequence[str] | None = None, alpha: float = ALPHA, comparison: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The wide table of ``report.csv``: one row per group (columns in :mod:`emabench.report.files`)."""
    if runs.empty:
        raise RunError("no finished runs to report")
    by = resolve_by(runs, by)
    comparison = comparison_table(runs, by, alpha)[0] if comparison is None else comparison
    rows = []
    for (_, group), key in zip(iter_groups(runs, by), group_values(runs, by)):
        row: dict[str, Any] = {SHORT_NAMES.get(k, k): v for k, v in zip(by, key)}
        task = task_of(group)
        row |= {"task": task.name, "n_seeds": int(group["seed"].nunique())}
        row["n_diverged"] = int(group.drop_duplicates("run_id")["status"].eq("diverged").sum())
        for model in model_order(group):
            rows_m = group[group["model"] == model]
            for column in (c for c in metric_columns(task) if c in group.columns):
                summary = stats.summarize(rows_m[column], confidence=1.0 - alpha)
                row |= {f"{model}_{column}_{k}": summary[k] for k in _SUMMARY_KEYS}
            if model != BASELINE and "decay_reached" in group.columns:
                row[f"{model}_decay_reached"] = _finite_mean(rows_m["decay_reached"])
                row[f"{model}_half_life_updates"] = _finite_mean(rows_m["half_life_updates"])
        for rec in _group_rows(comparison, by, key).to_dict("records"):
            column = f"best_{rec['metric']}" if rec["selection"] == "best" else rec["metric"]
            row |= {f"{rec['model']}_{column}_{k}": rec[k] for k in _DIFF_KEYS}
            if rec["selection"] == "final":  # positive = better, in the metric's direction
                sign = 1.0 if rec["higher_is_better"] else -1.0
                row[f"{rec['model']}_{column}_improvement_pct"] = sign * rec["rel_diff_pct"]
                if column == headline(task):
                    row[f"{rec['model']}_wins"] = rec["wins"]
        rows.append(row)
    return pd.DataFrame(rows)


def _group_rows(comparison: pd.DataFrame, by: Sequence[str], key: Sequence[Any]) -> pd.DataFrame:
    mask = np.ones(len(comparison), dtype=bool)
    for k, v in zip(by, key):
        mask &= (comparison[k] == v).to_numpy() | (comparison[k].isna() & pd.isna(v)).to_numpy()
    return comparison[mask]


def _finite_mean(values: pd.Series) -> float:
    finite = values.to_numpy(float)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else float("nan")
