"""The report as a document: headings, text, tables and figures in reading order (:func:`document`), built from a
:class:`~emabench.report.frames.Report`. Every metric name, direction and verdict comes from the runs' tasks; runs of
different tasks get tables of their own. Pure functions; the renderers are :mod:`emabench.report.markdown` and
:mod:`emabench.report.html` (the terminal's rows are :mod:`emabench.report.terminal`'s).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from emabench.report.elements import Block, Bullets, Heading, Image, Paragraph, Table
from emabench.report.formats import COMPARISON_HEADER, comparison_cells, fmt
from emabench.report.frames import Report
from emabench.report.groups import with_groups
from emabench.report.protocol_blocks import churn_section, protocol_sections
from emabench.report.published import PUBLISHED_RUN
from emabench.report.specs import STABILITY, TEST, VALIDATION, direction_text, headline, spec
from emabench.report.verdict_blocks import glance, verdict_section
from emabench.report.versus_blocks import versus_method, versus_section
from emabench.runs.sweep_folder import FIG_PAIRED_STABILITY, FIG_VAL_LOSS, fig_curves, fig_paired, fig_vs_beta
from emabench.tasks.base import Task
from emabench.tasks.regression import Regression

TITLE = "emabench report: models compared across seeds"


def document(report: Report, figures: Mapping[str, str]) -> list[Block]:
    """The report's sections in reading order; ``figures``: the figure files that exist → their captions."""
    title = f"emabench report: each model against {report.question.baseline}, across seeds"
    blocks: list[Block] = [Heading(title, 1), Paragraph(_sources(report))]
    blocks += [Heading("At a glance"), Bullets(tuple(_glance(report)))]
    blocks += [Heading(f"Verdicts on the primary question (family-wise error ≤ {report.alpha:g})")]
    blocks += verdict_section(report)
    for task in report.tasks:
        blocks += _images(figures, fig_vs_beta(headline(task)), fig_paired(headline(task)))
    if report.versus is not None:  # one task: --versus refuses runs of several
        task = report.tasks[0]
        blocks += versus_section(report.versus, task, report.question.of(task), report.alpha)
    blocks += protocol_sections(report) + churn_section(report)
    tested = _has_test(report)
    final = "Final-epoch metrics on the validation set (exploratory)" if tested else _FINAL_TITLE
    blocks += [Heading(final), Paragraph(_FINAL_NOTE), _metric_table(report, "final")]
    blocks += [Heading("Best-epoch metrics (exploratory; optimistic: picked on the validation set itself)")]
    blocks += [Paragraph(_BEST_NOTE), _metric_table(report, "best")]
    blocks += [Heading("Stability: validation-loss std over epochs (exploratory)"), Paragraph(_stability_note(report))]
    blocks += [_metric_table(report, "stability"), *_images(figures, FIG_PAIRED_STABILITY)]
    blocks += [Heading("Curves over epochs"), Paragraph(_CURVES_NOTE), *_images(figures, FIG_VAL_LOSS)]
    for task in report.tasks:
        blocks += _images(figures, fig_curves(task.plot_metric))
    blocks += [Heading("Decay actually reached"), Paragraph(_DECAY_NOTE), _decay_table(report)]
    if not report.reference.empty:
        blocks += [Heading("Reference: the blog's single run beside our seeds"), Paragraph(_reference_note())]
        blocks += [_reference_table(report)]
    blocks += [Heading("Method"), Bullets(_method(report))]
    if report.skipped:
        blocks += [Heading("Skipped run folders (no DONE marker)")]
        blocks += [Bullets(tuple(f"{status}: `{path}`" for path, status in report.skipped))]
    if report.duplicates:
        blocks += [Heading("Run folders found twice (the same config: counted once)")]
        blocks += [Bullets(tuple(f"used `{kept}`, not `{dropped}`" for kept, dropped in report.duplicates))]
    return blocks


def studies_document(sections: Sequence[tuple[str, list[Block]]]) -> list[Block]:
    """Several studies' documents (:func:`document`) as one: a section per study, its headings one level down."""
    names = tuple(f"`{label}`" for label, _ in sections)
    blocks: list[Block] = [Heading(f"emabench report: {len(sections)} studies", 1), Paragraph(_STUDIES_NOTE)]
    blocks.append(Bullets(names))
    for label, section in sections:
        blocks.append(Heading(f"Study: {label}", 2))
        blocks += [Heading(b.text, b.level + 1) if isinstance(b, Heading) else b for b in section[1:]]
    return blocks


_FINAL_TITLE = "Final-epoch metrics (exploratory but for the primary rows)"
_STUDIES_NOTE = (
    "These runs hold several studies: the runs of one sweep folder, or the single runs (`emabench run`) of one "
    "config name. Each is reported on its own: its own groups, its own family of verdicts, its own figures. To report "
    "one alone, give its folder: `emabench report runs/<sweep folder>`."
)
_FINAL_NOTE = (
    "The metrics of each run's last epoch (where early stopping ended it), as the seed study reports them. "
    "Mean ± std over seeds [95% t-interval of the mean]; Δ = model − baseline, paired by seed, with its 95% CI; Δ % "
    'is the mean over seeds of (model − baseline)/|baseline| (its sign is the difference\'s, not "better"); wins = '
    "seeds where the model is strictly better, with the exact 95% interval of that share. Every interval and p-value "
    "here is unadjusted, of one comparison: only the primary rows carry a verdict (the section above); the others are "
    "exploratory. p (Wilcoxon) is the signed-rank test on the differences rounded to the metric's resolution, a "
    "robustness check on the median-like centre rather than the mean."
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
    "range is fitted to the epochs after the burn-in; the x label names the epochs whose band leaves the chart."
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
    tasks = ", ".join(t.name for t in report.tasks)
    twice = (
        f" The same config was found in two folders {len(report.duplicates)} time(s): counted once (listed at the end)."
        if report.duplicates
        else ""
    )
    return (
        f"{len(runs)} finished runs ({runs['seed'].nunique()} seeds; task: {tasks}) from {where}; grouped by {by}; "
        f"models compared with `{report.question.baseline}`, paired by seed. Diverged runs: {diverged} (counted, "
        "excluded from every "
        f"statistic). Skipped folders without DONE: {len(report.skipped)}.{twice}{_mode_note(runs)}"
        f"{_versus_note(report)}"
    )


def _versus_note(report: Report) -> str:
    if report.versus is None:
        return ""
    return f" Also each value of a setting against one: section *{report.versus.title}*."


def _mode_note(runs: pd.DataFrame) -> str:
    """Say when betas were shadows of one trajectory (``sweep --shadows``) rather than runs of their own."""
    if "sweep_mode" not in runs or not (runs["sweep_mode"] == "shadows").any():
        return ""
    return (
        " Shadow mode (`sweep --shadows`): the `ema_<beta>` models are shadows of ONE training trajectory per seed, "
        "driven by the config's monitor; they show which beta would have averaged that trajectory best, not which "
        "beta trains best."
    )


def _tasks(report: Report) -> dict[str, Task]:
    return {t.name: t for t in report.tasks}


def _has_test(report: Report) -> bool:
    return not report.comparison.empty and bool((report.comparison["set"] == TEST).any())


def _rows(report: Report, selection: str, metric: str | None = None) -> pd.DataFrame:
    """The comparisons of ``selection`` on the validation set (the test set's are :mod:`.protocol_blocks`')."""
    rows = report.comparison
    if rows.empty:
        return rows.assign(group=[])
    rows = with_groups(rows, report.by)
    rows = rows[(rows["selection"] == selection) & (rows["set"] == VALIDATION)]
    return rows if metric is None else rows[rows["metric"] == metric]


def _glance(report: Report) -> list[str]:
    claim = _claim(report)
    return [*glance(report), claim] if claim else glance(report)


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


def _metric_table(report: Report, selection: str) -> Table:
    baseline = report.question.baseline
    header = ("group", "model", "metric", "n", f"{baseline}: mean ± std [95% CI]", "model: mean ± std [95% CI]")
    header += (f"Δ model − {baseline} [95% CI]", *COMPARISON_HEADER)
    tasks = _tasks(report)
    body = []
    for _, r in _rows(report, selection).iterrows():
        body.append(
            (
                r["group"],
                r["model"],
                spec(tasks[r["task"]], r["metric"]).label,
                str(r["n"]),
                *comparison_cells(r),
            )
        )
    return Table(header, tuple(body))


def _stability_note(report: Report) -> str:
    return (
        f"The std (ddof=1) of each model's validation loss over the epochs after a burn-in of {report.burn_in} "
        "(the initial descent, common to every model, would dominate it otherwise), per seed, then compared with "
        f"{report.question.baseline}'s paired by seed; lower is steadier. The seed study's stability claim is this "
        "number for one run."
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
        f"epoch {PUBLISHED_RUN['epochs']}. Ours: final-epoch values over seeds of the seed study's runs (regression, "
        "seed 001's make_regression data, the MLP), for the groups at that beta when the report has any (else every "
        "group). *percentile*: where the published value falls in our distribution (50: typical of our seeds; near 0 "
        "or 100: outside most of them). The blog does not say over which epochs its validation-loss std was taken; "
        "ours is after the burn-in."
    )


# the blog's quantities: the seed study is a regression
_QUANTITY_NAMES = {m.name: m.label for m in Regression.metrics} | {STABILITY.name: STABILITY.label}


def _reference_table(report: Report) -> Table:
    header = ("group", "quantity", "model", "published", "ours: mean [95% CI]", "median (min–max)", "n", "percentile")
    body = []
    for r in report.reference.to_dict("records"):
        body.append(
            (
                r["group"],
                _QUANTITY_NAMES.get(r["quantity"], r["quantity"]),
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
    versus = (versus_method(report.versus),) if report.versus is not None else ()
    return (
        f"Groups: runs that differ only in their seed (keys: {groups}); every model is compared with "
        f"{report.question.baseline} within its group, paired by seed (`--baseline` picks another model). Runs of "
        "different tasks are grouped apart and never compared.",
        "Metrics and which direction of each is better come from each run's task (`config.task`), never from a "
        f"metric's name. {direction_text(report.tasks)}",
        "Means ± std (ddof=1) over seeds; 95% intervals are Student-t intervals of the mean "
        f"(level 1 − α, α = {report.alpha:g}).",
        "Paired tests on model − baseline, two-sided: the t-test (scipy `ttest_rel`), the exact sign-flip test of the "
        "same mean, the Wilcoxon signed-rank test (zeros dropped, ties at the metric's resolution kept tied; "
        "descriptive), TOST for equivalence; power and seeds needed from the noncentral t (docs/statistics.md).",
        f"Verdicts: the primary comparisons only ({report.family.description}), their error rate over every claim "
        f"kept at most α; the rule and its measured error rates and power: docs/statistics.md. Everything else is "
        "exploratory: unadjusted, no verdict.",
        "Diverged runs are counted per group and excluded (a seed pair goes when either side is not finite); "
        "nothing NaN is ever averaged.",
        f"Stability: std of the validation loss over epochs > {report.burn_in} (`--burn-in`).",
        "Files: report.csv (one row per group), comparison.csv (one row per group × model × selection × metric, "
        "`role` primary or exploratory), "
        "per_run.csv (one row per run × model), the figures fig_*.png.",
        *versus,
    )


def _images(available: Mapping[str, str], *names: str) -> list[Block]:
    return [Image(name, available[name]) for name in names if name in available]
