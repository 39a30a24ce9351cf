"""The report as a document: headings, text, tables and figures in reading order (:func:`document`), built from a
:class:`~emabench.report.frames.Report`, plus the rows of the terminal table (:func:`display_rows`) and the number
formats. Pure functions; the renderers are :mod:`emabench.report.markdown` and :mod:`emabench.report.html`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from emabench.report import stats
from emabench.report.figures import FIGURES
from emabench.report.frames import PUBLISHED_RUN, STABILITY, Report
from emabench.report.groups import BASELINE, with_groups
from emabench.runs.sweep_folder import FIG_MSE_VS_BETA, FIG_PAIRED_MSE, FIG_PAIRED_STABILITY, FIG_R2, FIG_VAL_LOSS

TITLE = "emabench report: raw vs averaged models across seeds"


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str  # may hold **bold**


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    name: str  # file name next to the report
    caption: str


Block = Heading | Paragraph | Bullets | Table | Image


# --- terminal rows and number formats ---------------------------------------------------------------------------

TERMINAL_VERDICT_COLUMNS = {
    ("final", "mse"): "MSE",
    ("final", "mae"): "MAE",
    ("final", "r2"): "R2",
    ("best", "mse"): "best-ep MSE",
    ("stability", STABILITY): "val-loss std",
}


def display_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """Human rows, one per (group, averaged model): final MSE raw vs model, the paired difference with its CI, the
    seeds won, the verdicts (final MSE/MAE/R², best-epoch MSE, stability) and the decay reached."""
    header = ["group", "model", "n", "MSE raw", "MSE model", "Δ MSE [95% CI]", "wins"]
    header += [*TERMINAL_VERDICT_COLUMNS.values(), "decay reached"]
    decays = {(r["group"], r["model"]): r["decay_mean"] for r in report.decay.to_dict("records")}
    comparison = with_groups(report.comparison, report.by) if not report.comparison.empty else report.comparison
    body = []
    for (group, model), rows in comparison.groupby(["group", "model"], sort=False) if len(comparison) else []:
        cells = {(r["selection"], r["metric"]): r for r in rows.to_dict("records")}
        mse = cells[("final", "mse")]
        n = f"{mse['n']}" + (f" ({mse['n_diverged']} div.)" if mse["n_diverged"] else "")
        line = [group, model, n, fmt(mse["baseline_mean"]), fmt(mse["mean"]), diff_text(mse)]
        line.append(f"{mse['wins']}/{mse['n']}")
        line += [str(cells[key]["verdict"]) if key in cells else "" for key in TERMINAL_VERDICT_COLUMNS]
        decay = decays.get((group, model), np.nan)
        line.append("" if np.isnan(decay) else f"{decay:.4f}")
        body.append(line)
    return header, body


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers with ``digits`` significant digits; NaN as an em dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}g}"
    return str(value)


def diff_text(row: dict[str, Any]) -> str:
    """``+0.00029 [-0.00031, 0.00088]``: the paired mean difference (model − raw) and its CI, all three with the
    same decimals (three significant digits of the interval's width)."""
    mean, low, high = row["diff_mean"], row["diff_ci_low"], row["diff_ci_high"]
    if not math.isfinite(mean):
        return "—"
    width = abs(high - low) if math.isfinite(high - low) and high != low else abs(mean)
    decimals = max(0, 2 - math.floor(math.log10(width))) if width > 0 else 4
    interval = f" [{low:.{decimals}f}, {high:.{decimals}f}]" if math.isfinite(low) else ""
    return f"{mean:+.{decimals}f}{interval}"


def p_text(p: float) -> str:
    if not math.isfinite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


# --- the document -----------------------------------------------------------------------------------------------


def document(report: Report, figures: Sequence[str]) -> list[Block]:
    """The report's sections in reading order; ``figures`` are the figure files that exist (see ``FIGURES``)."""
    blocks: list[Block] = [Heading(TITLE, 1), Paragraph(_sources(report))]
    blocks += [Heading("At a glance"), Bullets(tuple(_glance(report)))]
    blocks += [Heading(f"Verdicts at the {report.alpha:.0%} level"), _verdict_table(report), Paragraph(_VERDICT_RULE)]
    blocks += _images(figures, FIG_MSE_VS_BETA, FIG_PAIRED_MSE)
    blocks += [Heading("Final-epoch metrics (what the seed study reports)"), Paragraph(_FINAL_NOTE)]
    blocks += [_metric_table(report, "final")]
    blocks += [Heading("Best-epoch metrics (optimistic: picked on the validation set itself)"), Paragraph(_BEST_NOTE)]
    blocks += [_metric_table(report, "best")]
    blocks += [Heading("Stability: validation-loss std over epochs"), Paragraph(_stability_note(report))]
    blocks += [_metric_table(report, "stability"), *_images(figures, FIG_PAIRED_STABILITY)]
    blocks += [Heading("Curves over epochs"), Paragraph(_CURVES_NOTE), *_images(figures, FIG_VAL_LOSS)]
    blocks += _images(figures, FIG_R2)
    blocks += [Heading("Decay actually reached"), Paragraph(_DECAY_NOTE), _decay_table(report)]
    blocks += [Heading("Reference: the blog's single run beside our seeds"), Paragraph(_reference_note())]
    blocks += [_reference_table(report)]
    blocks += [Heading("Method"), Bullets(_method(report))]
    if report.skipped:
        blocks += [Heading("Skipped run folders (no DONE marker)")]
        blocks += [Bullets(tuple(f"{status}: `{path}`" for path, status in report.skipped))]
    return blocks


_VERDICT_RULE = (
    "**better** / **worse**: the paired t-test *and* the Wilcoxon signed-rank test over seeds both give p < α and the "
    "mean difference points that way; otherwise **no significant difference**; fewer than "
    f"{stats.min_seeds_for(0.05)} finished seed pairs is **insufficient data**. Lower is better for MSE, MAE and the "
    "validation-loss std, higher for R²."
)
_FINAL_NOTE = (
    "The metrics of each run's last epoch (where early stopping ended it), as the seed study reports them. "
    "Mean ± std over seeds [95% t-interval of the mean]; Δ = model − raw, paired by seed, with its 95% CI; Δ % is the "
    "mean over seeds of (model − raw)/raw; wins = seeds where the averaged model is strictly better."
)
_BEST_NOTE = (
    "Each model's metrics at the epoch of **its own lowest validation loss**. That epoch is chosen on the very "
    "validation set the metrics are measured on, so these numbers are optimistic, and more so for the noisier "
    "model (the minimum of a noisier curve is lower). Never compare them with the final-epoch numbers or the blog's."
)
_CURVES_NOTE = (
    "Mean ± 1 std over seeds, per epoch. Runs stop at different epochs (early stopping); a run that stopped keeps its "
    "final value for the later epochs (the model it would deploy), so every seed counts at every epoch and the right "
    "end of each curve is the final-epoch mean of the tables. Panel titles give the epochs the runs stopped at. The y "
    "range is fitted to the epochs after the burn-in."
)
_DECAY_NOTE = (
    "The decay the averager actually used at the last update (mean and range over seeds) and its half-life "
    "ln 0.5 / ln d, in updates and in epochs. Warm-up schedules approach the configured beta slowly: with the seed's "
    "warm-up (power 2/3) the decay reaches 0.999 only after ~31.6k updates, far more than a ~100-epoch run makes."
)


def _sources(report: Report) -> str:
    runs = report.per_run.drop_duplicates("run_id")
    diverged = int((runs["status"] == "diverged").sum())
    by = ", ".join(f"`{k}`" for k in report.by) or "nothing (one group)"
    where = ", ".join(f"`{s}`" for s in report.sources) or "the given folders"
    return (
        f"{len(runs)} finished runs ({runs['seed'].nunique()} seeds) from {where}; grouped by {by}; models compared "
        f"with `{BASELINE}`, paired by seed. Diverged runs: {diverged} (counted, excluded from every statistic). "
        f"Skipped folders without DONE: {len(report.skipped)}.{_mode_note(runs)}"
    )


def _mode_note(runs: pd.DataFrame) -> str:
    """Say when betas were shadows of one trajectory (``sweep --shadows``) rather than runs of their own."""
    if "sweep_mode" not in runs or not (runs["sweep_mode"] == "shadows").any():
        return ""
    return (
        " Shadow mode (`sweep --shadows`): the `ema_<beta>` models are shadows of ONE training trajectory per seed, "
        "driven by the config's monitor; they show which beta would have averaged that trajectory best, not which "
        "beta trains best."
    )


def _rows(report: Report, selection: str, metric: str | None = None) -> pd.DataFrame:
    rows = report.comparison
    if rows.empty:
        return rows.assign(group=[])
    rows = with_groups(rows, report.by)
    rows = rows[rows["selection"] == selection]
    return rows if metric is None else rows[rows["metric"] == metric]


def _glance(report: Report) -> list[str]:
    items = []
    stability = {(r["group"], r["model"]): r["verdict"] for _, r in _rows(report, "stability").iterrows()}
    best = {(r["group"], r["model"]): r["verdict"] for _, r in _rows(report, "best", "mse").iterrows()}
    for _, r in _rows(report, "final", "mse").iterrows():
        key = (r["group"], r["model"])
        items.append(
            f"**{r['group']} · {r['model']} vs raw**, final-epoch MSE {fmt(r['mean'])} vs {fmt(r['baseline_mean'])}: "
            f"difference {diff_text(r)} ({_pct(r['rel_diff_pct'])} per seed on average); {r['model']} better on "
            f"{r['wins']}/{r['n']} seeds; p = {p_text(r['p_ttest'])} (t) / {p_text(r['p_wilcoxon'])} (Wilcoxon): "
            f"**{r['verdict']}**. Stability: **{stability.get(key, '—')}**. Best-epoch MSE: **{best.get(key, '—')}**."
        )
    claim = _claim(report)
    if claim:
        items.append(claim)
    return items


def _claim(report: Report) -> str:
    """Where the blog's "MSE −20%" falls among our per-seed changes, in the group of its beta when there is one."""
    rows = report.reference
    if rows.empty:
        return ""
    rows = rows[rows["quantity"] == "MSE change %"]
    preferred = rows[rows["group"].str.contains(f"beta={PUBLISHED_RUN['beta']:g}", regex=False)]
    r = (preferred if len(preferred) else rows).iloc[0]
    return (
        f"The blog's single run claimed EMA MSE {r['published']:+.0f}% vs raw; over our {r['n']} seeds ({r['group']}) "
        f"the per-seed change is {r['mean']:+.1f}% on average [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}], ranging "
        f"{r['min']:+.0f}% to {r['max']:+.0f}%: the claim sits at percentile {r['percentile']:.0f} of ours."
    )


def _pct(value: float) -> str:
    if not math.isfinite(value):
        return "—"
    return f"{value:+.1f}%" if abs(value) >= 0.1 or value == 0 else f"{value:+.2g}%"


def _verdict_table(report: Report) -> Table:
    columns = [
        ("final", "mse", "final MSE"),
        ("final", "mae", "final MAE"),
        ("final", "r2", "final R²"),
        ("best", "mse", "best-epoch MSE"),
        ("best", "mae", "best-epoch MAE"),
        ("best", "r2", "best-epoch R²"),
        ("stability", STABILITY, "val-loss std"),
    ]
    rows = with_groups(report.comparison, report.by) if len(report.comparison) else report.comparison
    body = []
    for (group, model), part in rows.groupby(["group", "model"], sort=False) if len(rows) else []:
        cells = {(r["selection"], r["metric"]): r for r in part.to_dict("records")}
        first = cells.get(("final", "mse"), part.iloc[0].to_dict())
        n = f"{first['n']}" + (f" ({first['n_diverged']} diverged)" if first["n_diverged"] else "")
        body.append(
            (group, model, n, *(str(cells[(s, m)]["verdict"]) if (s, m) in cells else "—" for s, m, _ in columns))
        )
    return Table(("group", "model", "n", *(label for _, _, label in columns)), tuple(body))


_METRIC_NAMES = {"mse": "MSE", "mae": "MAE", "r2": "R²", STABILITY: "val-loss std"}


def _metric_table(report: Report, selection: str) -> Table:
    header = ("group", "model", "metric", "n", "raw: mean ± std [95% CI]", "model: mean ± std [95% CI]")
    header += ("Δ model − raw [95% CI]", "Δ %", "p (t)", "p (Wilcoxon)", "wins", "verdict")
    body = []
    for _, r in _rows(report, selection).iterrows():
        body.append(
            (
                r["group"],
                r["model"],
                _METRIC_NAMES.get(r["metric"], r["metric"]),
                str(r["n"]),
                _summary(r, "baseline_"),
                _summary(r, ""),
                diff_text(r).replace(" [", "\n["),
                _pct(r["rel_diff_pct"]),
                p_text(r["p_ttest"]),
                p_text(r["p_wilcoxon"]),
                f"{r['wins']}/{r['n']}",
                str(r["verdict"]),
            )
        )
    return Table(header, tuple(body))


def _summary(row: Mapping[str, Any], prefix: str) -> str:
    mean, std = row[f"{prefix}mean"], row[f"{prefix}std"]
    low, high = row[f"{prefix}ci_low"], row[f"{prefix}ci_high"]
    text = f"{fmt(mean)} ± {fmt(std, 2)}"
    return text + (f"\n[{fmt(low)}, {fmt(high)}]" if math.isfinite(low) else "")  # a line break in HTML


def _stability_note(report: Report) -> str:
    return (
        f"The std (ddof=1) of each model's validation loss over the epochs after a burn-in of {report.burn_in} "
        "(the initial descent, common to every model, would dominate it otherwise), per seed, then compared with "
        "raw's paired by seed. The seed study's stability claim is this number for one run."
    )


def _decay_table(report: Report) -> Table:
    header = ("group", "model", "configured beta", "n", "decay reached: mean (min–max)", "half-life (updates)")
    header += ("half-life (epochs)", "epochs run (mean)")
    body = []
    for r in report.decay.to_dict("records"):
        body.append(
            (
                r["group"],
                r["model"],
                fmt(r["configured_beta"], 6),
                str(r["n"]),
                f"{r['decay_mean']:.5f} ({r['decay_min']:.5f}–{r['decay_max']:.5f})",
                f"{r['half_life_updates_mean']:.0f}",
                f"{r['half_life_epochs_mean']:.2f}" if math.isfinite(r["half_life_epochs_mean"]) else "—",
                f"{r['epochs_mean']:.0f}",
            )
        )
    return Table(header, tuple(body))


def _reference_note() -> str:
    return (
        f"Published numbers: {PUBLISHED_RUN['source']}: ONE unseeded run at beta {PUBLISHED_RUN['beta']:g}, stopped at "
        f"epoch {PUBLISHED_RUN['epochs']}. Ours: final-epoch values over seeds, for the groups at that beta when the "
        "report has any (else every group). *percentile*: where the "
        "published value falls in our distribution (50: typical of our seeds; near 0 or 100: outside most of them). "
        "The blog does not say over which epochs its validation-loss std was taken; ours is after the burn-in."
    )


def _reference_table(report: Report) -> Table:
    header = ("group", "quantity", "model", "published", "ours: mean [95% CI]", "median (min–max)", "n", "percentile")
    body = []
    for r in report.reference.to_dict("records"):
        body.append(
            (
                r["group"],
                _METRIC_NAMES.get(r["quantity"], r["quantity"]),
                r["model"],
                fmt(r["published"]),
                f"{fmt(r['mean'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]",
                f"{fmt(r['median'])} ({fmt(r['min'])}–{fmt(r['max'])})",
                str(r["n"]),
                "—" if not math.isfinite(r["percentile"]) else f"{r['percentile']:.0f}",
            )
        )
    return Table(header, tuple(body))


def _method(report: Report) -> tuple[str, ...]:
    groups = ", ".join(f"`{k}`" for k in report.by) or "—"
    return (
        f"Groups: runs that differ only in their seed (keys: {groups}); every averaged model is compared with raw "
        "within its group, paired by seed.",
        "Means ± std (ddof=1) over seeds; 95% intervals are Student-t intervals of the mean "
        f"(level 1 − α, α = {report.alpha:g}).",
        "Paired tests: scipy `ttest_rel` and `wilcoxon` (two-sided, zero differences dropped) on model − raw.",
        "Diverged runs are counted per group and excluded (a seed pair goes when either side is not finite); "
        "nothing NaN is ever averaged.",
        f"Stability: std of the validation loss over epochs > {report.burn_in} (`--burn-in`).",
        "Files: report.csv (one row per group), comparison.csv (one row per group × model × selection × metric), "
        "per_run.csv (one row per run × model), the figures fig_*.png.",
    )


def _images(available: Sequence[str], *names: str) -> list[Block]:
    return [Image(name, FIGURES[name]) for name in names if name in available]
