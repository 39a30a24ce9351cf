"""The report's ``--versus`` section: "<KEY>: each value vs <VALUE>", built from a
:class:`~emabench.report.versus.Versus`. The headline bullets, the verdicts per group × model × value on the primary
measure, the family decided, and every comparison in detail. Pure functions."""

from __future__ import annotations

import pandas as pd

from emabench.report.comparisons import measure_label
from emabench.report.elements import Block, Bullets, Heading, Paragraph, Table
from emabench.report.formats import COMPARISON_HEADER, comparison_cells, diff_text, fmt, p_text, pct, seeds_text
from emabench.report.groups import plain_value, with_groups
from emabench.report.question import Primary
from emabench.report.verdict_blocks import notes
from emabench.report.versus import Versus, key_text
from emabench.tasks.base import Task


def versus_section(versus: Versus, task: Task, primary: Primary, alpha: float) -> list[Block]:
    """The whole section; ``task``: the runs' one task (``--versus`` refuses several)."""
    rows = with_groups(versus.table, versus.by)
    main = rows[rows["role"] == "primary"]
    return [
        Heading(versus.title),
        Paragraph(_intro(versus, primary, task, alpha)),
        Bullets(tuple(_headlines(versus, main, primary, task))),
        _verdict_table(versus, main),
        _detail_table(versus, rows, task),
    ]


def versus_method(versus: Versus) -> str:
    """The Method bullet of ``--versus``."""
    return (
        f"Versus (`--versus {versus.key}={plain_value(versus.baseline)}`): each other value of `{versus.key}` is "
        f"compared with {plain_value(versus.baseline)}, model by model, paired by seed within each group of the other "
        "keys, with the same statistics as the comparisons with the baseline model. Their primary rows are a family "
        "of their own: asking them leaves every other verdict as it was, and each family keeps its chance of any "
        "wrong claim below α (below 2α over both). versus.csv holds one row per group × model × value × selection × "
        "metric."
    )


def _intro(versus: Versus, primary: Primary, task: Task, alpha: float) -> str:
    name, baseline = key_text(versus.key), plain_value(versus.baseline)
    others = ", ".join(f"`{key_text(k)}`" for k in versus.by)
    pairing = f"the same seed and the same {others}" if others else "the same seed"
    return (
        f"Does the setting `{name}` change the results? The runs with `{name}` = {baseline} are the baseline; the runs "
        f"of each other value ({', '.join(plain_value(v) for v in versus.values)}) are compared with them model by "
        f"model (each model with itself), each run paired with the baseline run of {pairing}. Δ = value − {baseline}; "
        f"wins = seeds where the value is strictly better in the metric's direction. Verdicts on "
        f"{primary.label(task)} (margin ±{primary.margin.text}) over {versus.family.description}, as in the section "
        f"above: over both families together the chance of any wrong claim is below {2 * alpha:g}."
    )


def _headlines(versus: Versus, rows: pd.DataFrame, primary: Primary, task: Task) -> list[str]:
    """One sentence per group × model × value on the primary measure."""
    name, label = key_text(versus.key), primary.label(task)
    return [
        f"**{r['group']} · {r['model']}: {name}={plain_value(r['value'])} vs {plain_value(r['baseline_value'])}**, "
        f"{label} {fmt(r['mean'])} vs {fmt(r['baseline_mean'])}: difference {diff_text(r)} "
        f"({pct(r['rel_diff_pct'])} per seed on average); better on {r['wins']}/{r['n']} seeds; "
        f"p = {p_text(r['p_ttest'])} (t) / {p_text(r['p_sign_flip'])} (sign-flip), tested at {p_text(r['level'])}: "
        f"**{r['verdict']}**."
        for r in rows.to_dict("records")
    ]


def _verdict_table(versus: Versus, rows: pd.DataFrame) -> Table:
    baseline = plain_value(versus.baseline)
    header = ("group", "model", "value", "n", f"Δ value − {baseline} [95% CI]", "verdict", "p t / sign-flip")
    header += ("tested at", "seeds for 80% power", "notes")
    body = [
        (
            r["group"],
            r["model"],
            plain_value(r["value"]),
            f"{r['n']}" + (f" ({r['n_diverged']} diverged)" if r["n_diverged"] else ""),
            diff_text(r),
            str(r["verdict"]),
            f"{p_text(r['p_ttest'])} / {p_text(r['p_sign_flip'])}",
            p_text(r["level"]),
            seeds_text(r["seeds_needed"]),
            notes(r),
        )
        for r in rows.to_dict("records")
    ]
    return Table(header, tuple(body))


def _detail_table(versus: Versus, rows: pd.DataFrame, task: Task) -> Table:
    baseline = plain_value(versus.baseline)
    header = ("group", "model", "value", "measure", "n", f"{baseline}: mean ± std [95% CI]")
    header += ("value: mean ± std [95% CI]", f"Δ value − {baseline} [95% CI]", *COMPARISON_HEADER)
    body = []
    for r in rows.to_dict("records"):
        body.append(
            (
                r["group"],
                r["model"],
                plain_value(r["value"]),
                measure_label(task, r["selection"], r["metric"], r["set"]),
                str(r["n"]),
                *comparison_cells(r),
            )
        )
    return Table(header, tuple(body))
