"""How the report writes numbers: significant digits, a paired difference with its interval, p-values. Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers with ``digits`` significant digits; NaN as an em dash."""
    if value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(value)):
        return "—"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}g}"
    return str(value)


def diff_text(row: Mapping[str, Any]) -> str:
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


def pct(value: float) -> str:
    if not math.isfinite(value):
        return "—"
    return f"{value:+.1f}%" if abs(value) >= 0.1 or value == 0 else f"{value:+.2g}%"


def summary_text(row: Mapping[str, Any], prefix: str) -> str:
    """``0.0118 ± 0.0024`` and, on a second line, the t-interval ``[0.0102, 0.0133]`` of the columns
    ``<prefix>mean/std/ci_low/ci_high`` (a line break in HTML, a space in Markdown)."""
    mean, std = row[f"{prefix}mean"], row[f"{prefix}std"]
    low, high = row[f"{prefix}ci_low"], row[f"{prefix}ci_high"]
    text = f"{fmt(mean)} ± {fmt(std, 2)}"
    return text + (f"\n[{fmt(low)}, {fmt(high)}]" if math.isfinite(low) else "")


def wins_text(row: Mapping[str, Any]) -> str:
    """``5/5 [0.48, 1]``: the seeds on which the model is better, and the exact interval of that share."""
    low, high = row.get("win_ci_low", float("nan")), row.get("win_ci_high", float("nan"))
    interval = f" [{low:.2g}, {high:.2g}]" if math.isfinite(low) and math.isfinite(high) else ""
    return f"{row['wins']}/{row['n']}{interval}"


def seeds_text(value: Any) -> str:
    """Seeds needed: ``14``, or ``—`` when none within the search's cap."""
    return f"{int(value)}" if isinstance(value, (int, float, np.floating)) and math.isfinite(value) else "—"


COMPARISON_HEADER = ("Δ %", "p (t)", "p (sign-flip)", "p (Wilcoxon)", "wins [95% CI of the share]", "verdict")


def comparison_cells(row: Mapping[str, Any]) -> tuple[str, ...]:
    """A paired comparison's cells, as every comparison table shows them: baseline and model summaries, the
    difference with its interval, the mean relative change, the unadjusted p-values, wins, and the verdict of a
    primary comparison (``exploratory`` on the others: described, never decided)."""
    verdict = str(row.get("verdict") or "")
    return (
        summary_text(row, "baseline_"),
        summary_text(row, ""),
        diff_text(row).replace(" [", "\n["),
        pct(row["rel_diff_pct"]),
        *(p_text(row[k]) for k in ("p_ttest", "p_sign_flip", "p_wilcoxon")),
        wins_text(row),
        verdict if verdict else "exploratory",
    )
