"""The report as a document: headings, text, tables and figures in reading order (:func:`document`), built from a
:class:`~emabench.report.frames.Report`. Every metric name, direction and verdict comes from the runs' tasks; runs of
different tasks get tables of their own. Pure functions; the renderers are :mod:`emabench.report.markdown` and
:mod:`emabench.report.html` (the terminal's rows are :mod:`emabench.report.terminal`'s).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from emabench.report.elements import Block, Bullets, Heading, Image, Paragraph, Table
from emabench.report.formats import comparison_cells, diff_text, fmt, p_text, pct
from emabench.report.frames import Report
from emabench.report.groups import BASELINE, with_groups
from emabench.report.published import PUBLISHED_RUN
from emabench.report.specs import STABILITY, compared_columns, direction_text, headline, spec
from emabench.report.versus_blocks import versus_method, versus_section
from emabench.runs.sweep_folder import FIG_PAIRED_STABILITY, FIG_VAL_LOSS, fig_curves, fig_paired, fig_vs_beta
from emabench.tasks.base import Task
from emabench.tasks.regression import Regression

TITLE = "emabench report: raw vs averaged models across seeds"


def document(report: Report, figures: Mapping[str, str]) -> list[Block]:
    """The report's sections in reading order; ``figures``: the figure files that exist → their captions."""
    blocks: list[Block] = [Heading(TITLE, 1), Paragraph(_sources(report))]
    blocks += [Heading("At a glance"), Bullets(tuple(_glance(report)))]
    blocks += [Heading(f"Verdicts at the {report.alpha:.0%} level, Holm-corrected")]
    for task in report.tasks:
        blocks += _task_heading(report, task) + [_verdict_table(report, task)]
    blocks += [Paragraph(_verdict_rule(report))]
    for task in report.tasks:
        blocks += _images(figures, fig_vs_beta(headline(task)), fig_paired(headline(task)))
    if report.versus is not None:  # one task: --versus refuses runs of several
        blocks += versus_section(report.versus, report.tasks[0], report.alpha)
    blocks += [Heading("Final-epoch metrics (what the seed study reports)"), Paragraph(_FINAL_NOTE)]
    blocks += [_metric_table(report, "final")]
    blocks += [Heading("Best-epoch metrics (optimistic: picked on the validation set itself)"), Paragraph(_BEST_NOTE)]
    blocks += [_metric_table(report, "best")]
    blocks += [Heading("Stability: validation-loss std over epochs"), Paragraph(_stability_note(report))]
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


_FINAL_NOTE = (
    "The metrics of each run's last epoch (where early stopping ended it), as the seed study reports them. "
    "Mean ± std over seeds [95% t-interval of the mean]; Δ = model − raw, paired by seed, with its 95% CI; Δ % is the "
    'mean over seeds of (model − raw)/|raw| (its sign is the difference\'s, not "better"); wins = seeds where the '
    "averaged model is strictly better; p-values raw and Holm-adjusted side by side (the verdict uses the adjusted)."
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
        f"models compared with `{BASELINE}`, paired by seed. Diverged runs: {diverged} (counted, excluded from every "
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


def _rows(report: Report, selection: str, metric: str | None = None) -> pd.DataFrame:
    rows = report.comparison
    if rows.empty:
        return rows.assign(group=[])
    rows = with_groups(rows, report.by)
    rows = rows[rows["selection"] == selection]
    return rows if metric is None else rows[rows["metric"] == metric]


def _glance(report: Report) -> list[str]:
    items = []
    tasks = _tasks(report)
    stability = {(r["group"], r["model"]): r["verdict"] for _, r in _rows(report, "stability").iterrows()}
    for _, r in _rows(report, "final").iterrows():
        task = tasks[r["task"]]
        if r["metric"] != headline(task):
            continue
        key, name = (r["group"], r["model"]), spec(task, r["metric"]).label
        best = _rows(report, "best", r["metric"])
        best = best[(best["group"] == r["group"]) & (best["model"] == r["model"])]["verdict"]
        items.append(
            f"**{r['group']} · {r['model']} vs raw**, final-epoch {name} {fmt(r['mean'])} vs "
            f"{fmt(r['baseline_mean'])}: "
            f"difference {diff_text(r)} ({pct(r['rel_diff_pct'])} per seed on average); {r['model']} better on "
            f"{r['wins']}/{r['n']} seeds; p = {p_text(r['p_ttest'])} (t) / {p_text(r['p_wilcoxon'])} (Wilcoxon), "
            f"Holm-adjusted {p_text(r['p_ttest_holm'])} / {p_text(r['p_wilcoxon_holm'])}: **{r['verdict']}**. "
            f"Stability: **{stability.get(key, '—')}**. Best-epoch {name}: **{best.iloc[0] if len(best) else '—'}**."
        )
    claim = _claim(report)
    return [*items, claim] if claim else items


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


def _task_heading(report: Report, task: Task) -> list[Block]:
    return [Heading(f"Task: {task.name}", 3)] if len(report.tasks) > 1 else []


def _verdict_table(report: Report, task: Task) -> Table:
    columns = [
        (selection, column.removeprefix("best_"))
        for selection, directions in compared_columns(task).items()
        for column in directions
    ]
    titles = [f"{'best-epoch' if s == 'best' else 'final'} {spec(task, m).label}" for s, m in columns[:-1]]
    titles.append(STABILITY.label)
    rows = with_groups(report.comparison, report.by) if len(report.comparison) else report.comparison
    rows = rows[rows["task"] == task.name] if len(rows) else rows
    body = []
    for (group, model), part in rows.groupby(["group", "model"], sort=False) if len(rows) else []:
        cells = {(r["selection"], r["metric"]): r for r in part.to_dict("records")}
        first = part.iloc[0].to_dict()
        n = f"{first['n']}" + (f" ({first['n_diverged']} diverged)" if first["n_diverged"] else "")
        body.append((group, model, n, *(str(cells[c]["verdict"]) if c in cells else "—" for c in columns)))
    return Table(("group", "model", "n", *titles), tuple(body))


def _verdict_rule(report: Report) -> str:
    family = report.family
    seeds = int(report.per_run.groupby("group")["seed"].nunique().max()) if len(report.per_run) else 0
    rule = (
        "**better** / **worse**: the paired t-test *and* the Wilcoxon signed-rank test over seeds both give p < α "
        f"(α = {report.alpha:g}) after **Holm–Bonferroni correction** over {family.description}, and the mean "
        "difference points that way; otherwise **no significant difference**. **insufficient data**: fewer than "
        f"{family.min_seeds} seed pairs, the fewest with which an exact Wilcoxon test (smallest p = 2/2ⁿ) can survive "
        f"the correction over {family.tests} tests. {direction_text(report.tasks)}"
    )
    if family.tests and seeds < family.min_seeds:
        rule += (
            f" **With at most {seeds} seeds per group, no verdict in this report can say better or worse**: run at "
            f"least {family.min_seeds} seeds, or compare fewer things in one report (`--where`, `--by`)."
        )
    return rule


def _metric_table(report: Report, selection: str) -> Table:
    header = ("group", "model", "metric", "n", "raw: mean ± std [95% CI]", "model: mean ± std [95% CI]")
    header += ("Δ model − raw [95% CI]", "Δ %", "p (t)", "p (t) Holm", "p (Wilcoxon)", "p (Wilcoxon) Holm")
    header += ("wins", "verdict")
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
        "raw's paired by seed; lower is steadier. The seed study's stability claim is this number for one run."
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
        f"Groups: runs that differ only in their seed (keys: {groups}); every averaged model is compared with raw "
        "within its group, paired by seed. Runs of different tasks are grouped apart and never compared.",
        "Metrics and which direction of each is better come from each run's task (`config.task`), never from a "
        f"metric's name. {direction_text(report.tasks)}",
        "Means ± std (ddof=1) over seeds; 95% intervals are Student-t intervals of the mean "
        f"(level 1 − α, α = {report.alpha:g}).",
        "Paired tests: scipy `ttest_rel` and `wilcoxon` (two-sided, zero differences dropped) on model − raw.",
        f"Multiple comparisons: Holm–Bonferroni over {report.family.description}; the t-test p-values are adjusted "
        "together and so are the Wilcoxon ones, and a verdict needs both adjusted p-values below α, which keeps the "
        "chance of any false better/worse in this report below α. Comparisons with too few seed pairs to reach α "
        "even alone are not tested and not counted.",
        "Diverged runs are counted per group and excluded (a seed pair goes when either side is not finite); "
        "nothing NaN is ever averaged.",
        f"Stability: std of the validation loss over epochs > {report.burn_in} (`--burn-in`).",
        "Files: report.csv (one row per group), comparison.csv (one row per group × model × selection × metric), "
        "per_run.csv (one row per run × model), the figures fig_*.png.",
        *versus,
    )


def _images(available: Mapping[str, str], *names: str) -> list[Block]:
    return [Image(name, available[name]) for name in names if name in available]
