"""The report's ``--versus`` section: "<KEY>: each value vs <VALUE>", built from a
:class:`~emabench.report.versus.Versus`. The headline bullets, the verdicts per group × model × value, the family
corrected, and every comparison in detail. Pure functions."""

from __future__ import annotations

import pandas as pd

from emabench.report.elements import Block, Bullets, Heading, Paragraph, Table
from emabench.report.formats import comparison_cells, diff_text, fmt, p_text, pct
from emabench.report.groups import plain_value, with_groups
from emabench.report.specs import SELECTION_LABELS, STABILITY, compared_columns, headline, spec
from emabench.report.versus import Versus, key_text
from emabench.tasks.base import Task


def versus_section(versus: Versus, task: Task, alpha: float) -> list[Block]:
    """The whole section; ``task``: the runs' one task (``--versus`` refuses several)."""
    rows = with_groups(versus.table, versus.by)
    return [
        Heading(versus.title),
        Paragraph(_intro(versus, alpha)),
        Bullets(tuple(_headlines(versus, rows, task))),
        _verdict_table(rows, task),
        Paragraph(_rule(versus, rows, alpha)),
        _detail_table(versus, rows, task),
    ]


def versus_method(versus: Versus) -> str:
    """The Method bullet of ``--versus``."""
    return (
        f"Versus (`--versus {versus.key}={plain_value(versus.baseline)}`): each other value of `{versus.key}` is "
        f"compared with {plain_value(versus.baseline)}, model by model, paired by seed within each group of the other "
        "keys, with the same statistics as the averaged-vs-raw comparisons. These comparisons are a Holm family of "
        "their own: asking them leaves every averaged-vs-raw verdict as it was, and each family keeps its chance of "
        "any false better/worse below α (below 2α over both). versus.csv holds one row per group × model × value × "
        "selection × metric."
    )


def _intro(versus: Versus, alpha: float) -> str:
    name, baseline = key_text(versus.key), plain_value(versus.baseline)
    others = ", ".join(f"`{key_text(k)}`" for k in versus.by)
    pairing = f"the same seed and the same {others}" if others else "the same seed"
    return (
        f"Does the setting `{name}` change the results? The runs with `{name}` = {baseline} are the baseline; the runs "
        f"of each other value ({', '.join(plain_value(v) for v in versus.values)}) are compared with them model by "
        f"model (raw with raw, each averaged model with itself), each run paired with the baseline run of {pairing}. "
        f"Δ = value − {baseline}; wins = seeds where the value is strictly better in the metric's direction. "
        f"Verdicts at the {alpha:.0%} level after Holm–Bonferroni over {versus.family.description}: the "
        "averaged-vs-raw verdicts above are corrected over their own family, so over both families together the "
        f"chance of any false better/worse is below {2 * alpha:g}."
    )


def _headlines(versus: Versus, rows: pd.DataFrame, task: Task) -> list[str]:
    """One sentence per group × model × value on the task's headline metric (final epoch)."""
    name, label = key_text(versus.key), spec(task, headline(task)).label
    final = rows[(rows["selection"] == "final") & (rows["metric"] == headline(task))]
    return [
        f"**{r['group']} · {r['model']}: {name}={plain_value(r['value'])} vs {plain_value(r['baseline_value'])}**, "
        f"final {label} {fmt(r['mean'])} vs {fmt(r['baseline_mean'])}: difference {diff_text(r)} "
        f"({pct(r['rel_diff_pct'])} per seed on average); better on {r['wins']}/{r['n']} seeds; Holm-adjusted "
        f"p = {p_text(r['p_ttest_holm'])} (t) / {p_text(r['p_wilcoxon_holm'])} (Wilcoxon): **{r['verdict']}**."
        for r in final.to_dict("records")
    ]


def _columns(task: Task) -> list[tuple[str, str, str]]:
    """(selection, metric, column title) of every compared measure of ``task``."""
    columns = [
        (selection, column.removeprefix("best_"))
        for selection, directions in compared_columns(task).items()
        for column in directions
    ]
    return [
        (s, m, STABILITY.label if s == "stability" else f"{SELECTION_LABELS[s]} {spec(task, m).label}")
        for s, m in columns
    ]


def _verdict_table(rows: pd.DataFrame, task: Task) -> Table:
    columns = _columns(task)
    body = []
    for (group, model, _), part in rows.groupby(["group", "model", "value"], sort=False, dropna=False):
        cells = {(r["selection"], r["metric"]): r for r in part.to_dict("records")}
        first = part.iloc[0].to_dict()
        n = f"{first['n']}" + (f" ({first['n_diverged']} diverged)" if first["n_diverged"] else "")
        verdicts = (str(cells[(s, m)]["verdict"]) if (s, m) in cells else "—" for s, m, _ in columns)
        body.append((group, model, plain_value(first["value"]), n, *verdicts))
    return Table(("group", "model", "value", "n", *(title for _, _, title in columns)), tuple(body))


def _rule(versus: Versus, rows: pd.DataFrame, alpha: float) -> str:
    family = versus.family
    rule = (
        "**better** / **worse**: the value beats (loses to) the baseline in the metric's direction, the paired t-test "
        f"and the Wilcoxon test both at p < {alpha:g} after the correction over {family.tests} tests; **insufficient "
        f"data**: fewer than {family.min_seeds} seed pairs."
    )
    pairs = int(rows["n"].max()) if len(rows) else 0
    if pairs < family.min_seeds:
        rule += (
            f" **With at most {pairs} seed pairs per comparison, no versus verdict can say better or worse**: run at "
            f"least {family.min_seeds} seeds, or compare fewer things at once (`--where`); the differences and their "
            "intervals still show which way things point."
        )
    return rule


def _detail_table(versus: Versus, rows: pd.DataFrame, task: Task) -> Table:
    baseline = plain_value(versus.baseline)
    header = ("group", "model", "value", "measure", "n", f"{baseline}: mean ± std [95% CI]")
    header += ("value: mean ± std [95% CI]", f"Δ value − {baseline} [95% CI]", "Δ %", "p (t)", "p (t) Holm")
    header += ("p (Wilcoxon)", "p (Wilcoxon) Holm", "wins", "verdict")
    titles = {(s, m): title for s, m, title in _columns(task)}
    body = []
    for r in rows.to_dict("records"):
        body.append(
            (
                r["group"],
                r["model"],
                plain_value(r["value"]),
                titles.get((r["selection"], r["metric"]), r["metric"]),
                str(r["n"]),
                *comparison_cells(r),
            )
        )
    return Table(header, tuple(body))
