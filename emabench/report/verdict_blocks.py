"""The report's verdict section: the question asked (hypothesis, what the seeds randomized, the family), one table of
primary comparisons per task, the rule, and how many more seeds would settle what is open; and the "at a glance"
bullets. Pure functions of a :class:`~emabench.report.frames.Report`."""

from __future__ import annotations

import math

import pandas as pd

from emabench.report.elements import Block, Paragraph, Table
from emabench.report.formats import diff_text, fmt, p_text, pct, seeds_text, wins_text
from emabench.report.frames import Report
from emabench.report.groups import with_groups
from emabench.report.protocol_blocks import PROTOCOL_TITLES, protocol_words
from emabench.report.specs import TEST, direction_text
from emabench.report.verdicts import open_summary
from emabench.tasks.base import Task

DROPOUT_KEYS = ("model.dropout",)  # a model with dropout > 0 draws its masks from the run's seed


def primary_rows(report: Report, task: Task | None = None) -> pd.DataFrame:
    """The report's primary comparisons (of ``task``), with a ``group`` label column."""
    rows = report.comparison
    if rows.empty:
        return rows.assign(group=[])
    rows = with_groups(rows[rows["role"] == "primary"], report.by)
    return rows if task is None else rows[rows["task"] == task.name]


def verdict_section(report: Report) -> list[Block]:
    """The question, a table per task, the rule and the seeds line."""
    blocks: list[Block] = [Paragraph(question_text(report))]
    for task in report.tasks:
        blocks += (
            [Paragraph(f"**{task.name}**: {report.question.of(task).label(task)}")] if len(report.tasks) > 1 else []
        )
        blocks.append(verdict_table(report, task))
    blocks.append(Paragraph(rule_text(report)))
    if report.looks is not None:
        blocks.append(Paragraph(looks_text(report)))
    settle = open_summary(report.comparison) if len(report.comparison) else ""
    return blocks + ([Paragraph(f"**How many more seeds.** {settle}")] if settle else [])


def question_text(report: Report) -> str:
    baseline = report.question.baseline
    measures = "; ".join(
        f"{report.question.of(t).label(t)}, margin ±{report.question.of(t).margin.text}" for t in report.tasks
    )
    return (
        f"**Hypothesis.** For each model and group: the mean over seeds of the paired difference (model − "
        f"{baseline}, one difference per seed) on the primary measure is 0 — and, for *equivalent*, lies within the "
        f"margin. Primary measure: {measures}.{_protocol(report)} {randomized(report.per_run)} "
        f"**Family**: {report.family.description}; "
        f"the chance of any wrong better, worse or equivalent among them is at most α = {report.alpha:g}. Every other "
        "metric, selection and the stability below are **exploratory**: unadjusted intervals and p-values, no verdict."
    )


def _protocol(report: Report) -> str:
    """The primary protocol in words, for runs with a test set."""
    baseline = report.question.baseline
    selections = [report.question.of(t).selection for t in report.tasks if report.question.of(t).source == TEST]
    said = [
        f" **Protocol: {PROTOCOL_TITLES[s].format(baseline=baseline).lower()}**: {protocol_words(s, baseline)}"
        for s in selections
    ]
    return "".join(dict.fromkeys(said))


def randomized(per_run: pd.DataFrame) -> str:
    """What the seeds varied and what they held fixed, from the runs' config; and the label noise, if any."""
    varied = ["weight initialization", "batch order"]
    if any(k in per_run.columns and (pd.to_numeric(per_run[k], errors="coerce") > 0).any() for k in DROPOUT_KEYS):
        varied.append("dropout masks")
    fixed = []
    source = _one(per_run, "data.source")
    if source in ("make_regression", "make_classification") and _one(per_run, "data.random_state") is not None:
        fixed.append(f"the data set ({source}, data.random_state={_one(per_run, 'data.random_state')})")
    elif source:
        fixed.append(f"the data set ({source})")
    holdout = _number(per_run, "data.holdout")
    test, share = (" and the held-out test set", f", data.holdout={holdout:g}") if holdout > 0 else ("", "")
    split = _one(per_run, "data.split_random_state")
    if _one(per_run, "data.split") == "per_seed":
        varied.append(f"the train/validation split{test} (data.split: per_seed: each run's seed draws them{share})")
    elif split is not None:
        fixed.append(f"its train/validation split{test} (data.split_random_state={split}{share})")
    elif "data.split_random_state" in per_run.columns:
        varied.append(f"the train/validation split{test} (data.split_random_state differs between runs{share})")
    held = f"; fixed: {', '.join(fixed)}" if fixed else ""
    return f"**Randomized by the seeds**: {', '.join(varied)}{held}.{label_noise(per_run)}"


def label_noise(per_run: pd.DataFrame) -> str:
    """`` **Label noise**: …`` naming the training labels' noise (empty without)."""
    fraction, std = _number(per_run, "data.label_noise.fraction"), _number(per_run, "data.label_noise.std")
    if not (fraction > 0 or std > 0):
        return ""
    which = (
        "the noisy labels are drawn anew for each seed, with its split"
        if _one(per_run, "data.split") == "per_seed"
        else "the noisy labels are the same for every seed (drawn from the fixed split's stream)"
    )
    if fraction > 0:
        what = (
            f"{fraction * 100:g}% of the training labels (exactly round({fraction:g} · n_train) of them) each moved to "
            "another class, uniformly"
        )
    else:
        what = f"N(0, {std:g}²) added to every training target"
    return (
        f" **Label noise** on the training set only: {what}; which ones is {which}; validation and test labels clean."
    )


def _number(per_run: pd.DataFrame, key: str) -> float:
    """The one numeric value of ``key`` among the runs (0 when absent, null or not one value)."""
    value = pd.to_numeric(pd.Series([_one(per_run, key)]), errors="coerce").iloc[0]
    return float(value) if pd.notna(value) else 0.0


def _one(per_run: pd.DataFrame, key: str) -> object:
    if key not in per_run.columns:
        return None
    values = per_run[key].dropna().unique()
    return values[0] if len(values) == 1 else None


def verdict_table(report: Report, task: Task) -> Table:
    baseline = report.question.baseline
    # the verdict beside the difference it judges: on a narrow screen the columns after it scroll out of view first
    header = ("group", "model", "n", baseline, "model", "Δ [95% CI]", "verdict", "wins [95% CI]", "p t / sign-flip")
    header += ("tested at", "seeds for 80% power", "smallest margin", "notes")
    body = []
    for r in primary_rows(report, task).to_dict("records"):
        n = f"{r['n']}" + (f" ({r['n_diverged']} diverged)" if r["n_diverged"] else "")
        body.append(
            (
                r["group"],
                r["model"],
                n,
                fmt(r["baseline_mean"]),
                fmt(r["mean"]),
                diff_text(r).replace(" [", "\n["),
                str(r["verdict"]),
                wins_text(r),
                f"{p_text(r['p_ttest'])} / {p_text(r['p_sign_flip'])}",
                p_text(r["level"]),
                seeds_text(r["seeds_needed"]),
                fmt(r["smallest_margin"], 2),
                notes(r),
            )
        )
    return Table(header, tuple(body))


def notes(row: dict) -> str:
    """What a reader must know to trust a primary row: t alone, a skewed sample, an identical comparison."""
    parts = []
    decided = row.get("decided_at")
    if isinstance(decided, float) and math.isfinite(decided):
        parts.append(f"decided at {int(decided)} seeds")
    if row.get("identical_to"):
        parts.append(f"identical to {row['identical_to']}: tested once")
    if str(row.get("evidence", "")).startswith("t-test alone"):
        parts.append(str(row["evidence"]).removeprefix("t-test alone: "))
    if row.get("skewed") is True:
        parts.append(f"skewed differences (skewness {row['skewness']:+.1f}): the mean rests on a few seeds")
    return "; ".join(parts)


def rule_text(report: Report) -> str:
    family = report.family
    level = f"α/{family.tests} = {family.level:.3g}" if family.tests else "α"
    return (
        "**better** / **worse**: the mean difference is not 0, in the metric's direction: the paired t-test "
        f"rejects at {level} (Bonferroni over the family; a comparison shown both non-zero and within its margin "
        "frees its share for the others), and so does the exact sign-flip test of the same mean from the seeds at "
        "which it can reach that level at all (2/2ⁿ ≤ level); below them the t-test decides alone, assuming normal "
        "differences (said in the row). **equivalent**: not better or worse, and both one-sided t-tests of TOST "
        "reject a difference as large as the margin at that level. **inconclusive**: neither; *seeds for 80% power* "
        "is how many seeds in all would settle it with 80% power if its observed mean and spread were the truth, "
        "*smallest margin* the smallest margin it could have been called equivalent within at these seeds. "
        "**too few seeds**: fewer than two seed pairs. Wins: the seeds on which the model is strictly better, with "
        f"the exact 95% interval of that share (the probability of improvement). {direction_text(report.tasks)}"
    )


def looks_text(report: Report) -> str:
    looks = report.looks
    seeds = ", ".join(map(str, looks.seeds)) if looks is not None else ""
    cap = looks.max_seeds if looks is not None else 0
    return (
        f"**Sequential study** (`sweep --until-decided`): looks at {seeds} seeds of at most {cap}. Each look tested "
        "the first seeds at the nominal level of Lan–DeMets O'Brien–Fleming alpha spending (early looks spend almost "
        "nothing), so the chance of any wrong claim over all looks stays at most α; a comparison keeps the verdict "
        "of the look that decided it (*decided at*, in the notes), its numbers here are over every seed trained."
    )


def glance(report: Report) -> list[str]:
    """One sentence per primary comparison."""
    items = []
    baseline = report.question.baseline
    for task in report.tasks:
        label = report.question.of(task).label(task)
        for r in primary_rows(report, task).to_dict("records"):
            extra = f" ({notes(r)})" if notes(r) else ""
            items.append(
                f"**{r['group']} · {r['model']} vs {baseline}**, {label} {fmt(r['mean'])} vs "
                f"{fmt(r['baseline_mean'])}: difference {diff_text(r)} ({pct(r['rel_diff_pct'])} per seed on "
                f"average); {r['model']} better on {wins_text(r)} seeds; p = {p_text(r['p_ttest'])} (t) / "
                f"{p_text(r['p_sign_flip'])} (sign-flip), "
                f"tested at {p_text(r['level'])}: **{r['verdict']}**{_after(r)}{extra}."
            )
    return items


def _after(row: dict) -> str:
    if row["verdict"] != "inconclusive":
        return ""
    seeds = row["seeds_needed"]
    more = (
        f"about {int(seeds)} seeds in all would settle it"
        if math.isfinite(seeds)
        else "no seed count in reach settles it"
    )
    return f" ({more}; it could have been called equivalent within ±{fmt(row['smallest_margin'], 2)})"
