"""The report's sections for runs with a held-out test set: the three protocols, each stated in words with its table
of every model against the baseline on the test set, and the churn between seeds. Pure functions of a
:class:`~emabench.report.frames.Report`; nothing here is written for runs without a test set.
"""

from __future__ import annotations

import pandas as pd

from emabench.report.elements import Block, Heading, Paragraph, Table
from emabench.report.formats import COMPARISON_HEADER, comparison_cells, fmt
from emabench.report.frames import Report
from emabench.report.groups import with_groups
from emabench.report.specs import TEST, spec

PROTOCOLS = ("final", "early_stopped", "best")  # the selections compared on the test set, in reading order
PROTOCOL_SHORT = {"final": "final vs final", "early_stopped": "early-stopped vs final", "best": "best vs best"}
PROTOCOL_TITLES = {
    "final": "Final vs final",
    "early_stopped": "Early-stopped averaged model vs final {baseline}",
    "best": "Best vs best",
}


def protocol_words(selection: str, baseline: str) -> str:
    """What a protocol compares, in words."""
    return {
        "final": f"each model's weights at the end of training against {baseline}'s, both measured on the held-out "
        "test set. Nothing about the test set chose either.",
        "early_stopped": "each model's weights at its own best validation epoch (its lowest validation loss, kept "
        f"during training) against {baseline}'s weights at the end of training, measured on the test set: does the "
        f"model one would stop early beat the last iterate one would otherwise keep (Morales-Brotons, Vogels & "
        "Hendrikx, TMLR 2024)? The two sides are selected differently, so this protocol credits the early stopping "
        "as much as the averaging; best vs best tells them apart.",
        "best": f"each model and {baseline} at their own best validation epochs, both chosen on the validation set, "
        "measured on the test set: the best-epoch comparison without the optimism of judging on the set that chose.",
    }[selection]


def protocol_sections(report: Report) -> list[Block]:
    """The three protocols on the test set (the primary one marked), or nothing without a test set."""
    rows = report.comparison
    if rows.empty or "set" not in rows.columns or not (rows["set"] == TEST).any():
        return []
    baseline = report.question.baseline
    primary = {report.question.of(t).selection for t in report.tasks if report.question.of(t).source == TEST}
    blocks: list[Block] = [Heading("Three protocols on the held-out test set"), Paragraph(_intro(report))]
    for selection in PROTOCOLS:
        part = with_groups(rows[(rows["selection"] == selection) & (rows["set"] == TEST)], report.by)
        part = part[part["n"] > 0]  # a model without a best state (a post-hoc synthesis) has nothing to pair
        if part.empty:
            continue
        role = "the primary question" if selection in primary else "exploratory: described, no verdict"
        title = PROTOCOL_TITLES[selection].format(baseline=baseline)
        blocks += [Heading(f"{title} ({role})", 3), Paragraph(f"**{title}**: {protocol_words(selection, baseline)}")]
        blocks.append(_table(report, part))
    return blocks


def _intro(report: Report) -> str:
    names = ", ".join(f"`{c}`" for c in ("accuracy", "early_stopped_accuracy", "best_accuracy"))
    return (
        "These runs held out a test set, split off before anything else and read only at the end: no decision of "
        "training or of this report (early stopping, schedules, each model's best epoch) could depend on it. Every "
        "number below is measured on it; the validation-set tables further down are kept for reference. Three "
        "protocols compare each model with the baseline, each paired by seed; the primary question is one of them "
        f"(`--primary` or `report.primary` chooses which, by a column name such as {names}), the others are "
        "exploratory. Calibration is compared like any metric: the expected calibration error (ECE, 15 equal-width "
        "bins) and the NLL (the test loss), lower is better for both."
    )


def _table(report: Report, rows: pd.DataFrame) -> Table:
    baseline = report.question.baseline
    tasks = {t.name: t for t in report.tasks}
    header = ("group", "model", "metric", "n", f"{baseline}: mean ± std [95% CI]", "model: mean ± std [95% CI]")
    header += (f"Δ model − {baseline} [95% CI]", *COMPARISON_HEADER)
    body = tuple(
        (r["group"], r["model"], spec(tasks[r["task"]], r["metric"]).label, str(r["n"]), *comparison_cells(r))
        for _, r in rows.iterrows()
    )
    return Table(header, body)


def churn_section(report: Report) -> list[Block]:
    """The churn table (descriptive), or nothing when no run saved test-set predictions."""
    churn = report.churn
    if churn.empty:
        return []
    header = ("group", "model", "seeds", "pairs", "test samples", "churn: mean over pairs", "smallest–largest pair")
    body = tuple(
        (
            r["group"],
            r["model"],
            str(r["n_seeds"]),
            str(r["n_pairs"]),
            str(r["test_samples"]),
            fmt(r["churn"], 3) if not r["note"] else f"— ({r['note']})",
            f"{fmt(r['churn_min'], 3)}–{fmt(r['churn_max'], 3)}" if not r["note"] else "—",
        )
        for r in churn.to_dict("records")
    )
    note = (
        "For each model, the share of test samples on which two seeds' models predict different classes, averaged "
        "over every pair of seeds (prediction churn; lower is steadier). It needs the seeds to share one test set: "
        "under `data.split: per_seed` each seed drew its own, and no number is given. Descriptive: the pairs share "
        "seeds, so no interval or test is attached."
    )
    return [
        Heading("Churn: how often seeds disagree on the test set (descriptive)"),
        Paragraph(note),
        Table(header, body),
    ]
