"""The verdicts of a report: its primary comparisons, one family, decided by
:func:`~emabench.report.decision.family_verdicts`; every other row of the comparison table stays descriptive
(``role`` exploratory, no verdict).

**Hypothesis.** Each primary comparison asks whether the mean paired difference (model − baseline, one difference per
seed) on the primary column (:mod:`.question`: a protocol, a metric and the set it is measured on) is 0, and whether
it lies within ``±margin``.

**Family.** The primary comparisons of the report (models × groups), each counted once: comparisons whose paired
differences are identical seed by seed (β groups whose runs are bit-identical, several averagers that all equal the
baseline) are ONE test; the others of such a set get its verdict and name it (``identical_to``). Comparisons with
fewer than two pairs are not tested (``too few seeds``) and not counted.

Columns added to the comparison table (primary rows; NaN or empty on the exploratory ones): ``role``,
``identical_to``, ``margin`` (absolute), ``level`` (the level its claims were tested at), ``evidence`` (which tests
had to reject), ``p_tost``, ``smallest_margin`` (the smallest margin TOST could have called equivalent at this
level), ``seeds_needed`` (inconclusive rows: the seeds in all for 80% power to decide, :func:`seeds_needed`),
``skewed`` (``|skewness| ≥`` :data:`SKEWED`: the mean rests on a few seeds) and ``verdict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from emabench.report import paired, power
from emabench.report.decision import TOO_FEW, VERDICTS, family_verdicts, fixed_levels
from emabench.report.groups import group_label
from emabench.report.paired import reachable_level
from emabench.report.question import Question
from emabench.report.sequential import look_levels, sequential_verdicts
from emabench.tasks.registry import get_task

SKEWED = 1.5  # |G1| from which a row is flagged: under normal differences ~3% of 10-seed samples reach it
Pair = tuple[np.ndarray, np.ndarray, np.ndarray]  # seeds, baseline values, model values (finite pairs, by seed)
ADDED = ("role", "identical_to", "margin", "level", "evidence", "p_tost", "smallest_margin", "seeds_needed")
ADDED += ("skewed", "decided_at", "verdict")
_COPIED = ("verdict", "level", "evidence", "p_tost", "smallest_margin", "seeds_needed", "decided_at")


@dataclass(frozen=True)
class Family:
    """The comparisons decided together: ``tests`` distinct primary comparisons, each tested at ``level`` = α/tests
    (more once some are settled), ``merged`` identical ones counted once, and a sentence that says which."""

    tests: int
    alpha: float
    level: float
    merged: int
    description: str


def is_primary(table: pd.DataFrame, question: Question) -> np.ndarray:
    """Which rows of a long comparison table are primary comparisons (their task's primary column)."""
    wanted = {name: (p.selection, p.metric, p.source) for name, p in question.primary.items()}
    rows = zip(table["task"], table["selection"], table["metric"], table["set"])
    return np.array([wanted.get(t) == (s, m, on) for t, s, m, on in rows], dtype=bool)


@dataclass(frozen=True)
class Looks:
    """A sequential study (``sweep --until-decided``): the seeds it may take in all and those at each look so far."""

    max_seeds: int
    seeds: tuple[int, ...]


def judge(
    table: pd.DataFrame,
    pairs: Sequence[Pair],
    question: Question,
    alpha: float,
    by: Sequence[str],
    looks: Looks | None = None,
) -> tuple[pd.DataFrame, Family]:
    """``table`` (long comparisons, descriptive) with the verdict columns (module docstring) and its family.
    ``pairs[i]``: the seeds and paired values of row ``i``. With ``looks``, the verdicts of a sequential study
    (:func:`_decide_looks`)."""
    table = table.reset_index(drop=True)
    primary = is_primary(table, question) if len(table) else np.zeros(0, dtype=bool)
    text = ("role", "identical_to", "evidence", "verdict")
    added: dict[str, list] = {c: ["" if c in text else np.nan for _ in range(len(table))] for c in ADDED}
    added["role"] = ["primary" if p else "exploratory" for p in primary]
    rows = np.flatnonzero(primary)
    first = _merge_identical(table, rows, pairs, by, added)
    tested = [i for i in rows if first[i] == i]
    for i in rows:
        added["margin"][i] = _margin(table, i, question)
    decide = _decide if looks is None else lambda *args: _decide_looks(*args, looks)
    tests, level = decide(table, tested, pairs, alpha, added)
    for i in rows:
        for column in _COPIED:
            added[column][i] = added[column][first[i]]
        added["skewed"][i] = bool(abs(table.at[i, "skewness"]) >= SKEWED)
    table = table.assign(**added)
    merged = int(sum(first[i] != i for i in rows))
    return table, Family(tests, alpha, level, merged, describe_family(table[primary], tests, merged, by))


def _merge_identical(
    table: pd.DataFrame, rows: np.ndarray, pairs: Sequence[Pair], by: Sequence[str], added: dict[str, list]
) -> dict[int, int]:
    """Row → the first row with the same seeds and the same paired differences; ``identical_to`` filled in."""
    seen: dict[tuple, int] = {}
    first = {}
    for i in rows:
        seeds, base, other = pairs[i]
        key = (table.at[i, "task"], tuple(seeds.tolist()), tuple((other - base).tolist()))
        first[i] = seen.setdefault(key, i)
        if first[i] != i:
            j = first[i]
            added["identical_to"][i] = f"{_row_label(table, j, by)} · {table.at[j, 'model']}"
    return first


def _row_label(table: pd.DataFrame, i: int, by: Sequence[str]) -> str:
    return group_label(list(by), [table.at[i, k] for k in by])


def _margin(table: pd.DataFrame, i: int, question: Question) -> float:
    return question.of(get_task(str(table.at[i, "task"]))).margin.absolute(float(table.at[i, "baseline_mean"]))


def _testable(rows: Sequence[int], pairs: Sequence[Pair], added: dict[str, list]) -> list[int]:
    """The ``rows`` with at least two seed pairs; the others get :data:`TOO_FEW` in ``added``."""
    testable = [i for i in rows if pairs[i][0].size >= 2]
    for i in rows:
        if i not in testable:
            added["verdict"][i] = TOO_FEW
    return testable


def _decide(
    table: pd.DataFrame, rows: Sequence[int], pairs: Sequence[Pair], alpha: float, added: dict[str, list]
) -> tuple[int, float]:
    """Verdicts of the distinct primary ``rows`` as one family, written into ``added``; returns (tests, α/tests)."""
    testable = _testable(rows, pairs, added)
    if not testable:
        return 0, float("nan")
    levels = fixed_levels(alpha, len(testable))
    diffs = [pairs[i][2] - pairs[i][1] for i in testable]
    tests = [paired.t_test(d) for d in diffs]
    margin = np.array([added["margin"][i] for i in testable], dtype=float)
    tost = np.array([paired.tost_p(d, m) if np.isfinite(m) else 1.0 for d, m in zip(diffs, margin)], dtype=float)
    codes, robust, both = family_verdicts(
        np.array([t.p for t in tests], dtype=float),
        table.loc[testable, "p_sign_flip"].to_numpy(float),
        np.array([d.size for d in diffs]),
        tost,
        np.array([t.mean for t in tests], dtype=float),
        table.loc[testable, "higher_is_better"].to_numpy(bool),
        levels,
    )
    standing = len(testable) - int(both.sum())
    level = float(levels[standing]) if standing else float(levels[1])
    for i, d, code, strict, p_tost, m in zip(testable, diffs, codes, robust, tost, margin):
        added["verdict"][i] = VERDICTS[code]
        added["level"][i] = level
        added["evidence"][i] = _evidence(bool(strict), d.size)
        added["p_tost"][i] = float(p_tost)
        added["smallest_margin"][i] = float(paired.smallest_margin(d, level))
        if VERDICTS[code] == "inconclusive":
            added["seeds_needed"][i] = seeds_needed(d, float(m), float(levels[-1]))
    return len(testable), float(levels[-1])


def _decide_looks(
    table: pd.DataFrame, rows: Sequence[int], pairs: Sequence[Pair], alpha: float, added: dict[str, list], looks: Looks
) -> tuple[int, float]:
    """The verdicts of a sequential study (:func:`~emabench.report.sequential.sequential_verdicts`): look ``k`` sees
    the pairs of the study's first ``looks.seeds[k]`` seeds, at the nominal levels of Lan–DeMets O'Brien–Fleming
    spending over ``looks.max_seeds``; a comparison keeps the verdict of the look that decided it (``decided_at``:
    the seeds it had then)."""
    testable = _testable(rows, pairs, added)
    if not testable:
        return 0, float("nan")
    every = np.unique(np.concatenate([pairs[i][0] for i in testable]))
    counts = sorted({min(c, every.size) for c in looks.seeds})
    levels = look_levels([c / max(looks.max_seeds, counts[-1]) for c in counts], alpha, len(testable))
    stacked = [_at_look(table, testable, pairs, added, every[count - 1]) for count in counts]
    t_p, flip, n, tost, mean = (np.stack([look[j] for look in stacked]) for j in range(5))
    higher = table.loc[testable, "higher_is_better"].to_numpy(bool)
    codes, at = sequential_verdicts(t_p, flip, n, tost, mean, higher, levels)
    m = len(testable)
    for j, i in enumerate(testable):
        look = int(at[j]) if at[j] >= 0 else len(counts) - 1
        d = pairs[i][2] - pairs[i][1]
        added["verdict"][i] = VERDICTS[codes[j]]
        added["level"][i] = float(levels[look][m])
        added["evidence"][i] = _evidence(bool(reachable_level(n[look][j]) <= levels[look][m]), int(n[look][j]))
        added["p_tost"][i] = float(tost[-1][j])
        added["smallest_margin"][i] = float(paired.smallest_margin(d, levels[-1][m]))
        added["decided_at"][i] = float(counts[look]) if at[j] >= 0 else np.nan
        if VERDICTS[codes[j]] == "inconclusive":
            added["seeds_needed"][i] = seeds_needed(d, float(added["margin"][i]), alpha / m)
    return m, float(levels[-1][m])


def _at_look(
    table: pd.DataFrame, rows: Sequence[int], pairs: Sequence[Pair], added: dict[str, list], last_seed: float
) -> tuple[np.ndarray, ...]:
    """t-test p, sign-flip p, pairs, TOST p and mean of each row over its pairs of seeds up to ``last_seed`` (NaN
    p-values below two pairs)."""
    columns: list[list[float]] = [[], [], [], [], []]
    for i in rows:
        seeds, base, other = pairs[i]
        d = (other - base)[seeds <= last_seed]
        margin = float(added["margin"][i])
        if d.size < 2:
            values = [np.nan, np.nan, float(d.size), np.nan, float(d.mean()) if d.size else np.nan]
        else:
            resolution = paired.resolution_of(np.concatenate([base, other]))
            tost = float(paired.tost_p(d, margin)) if np.isfinite(margin) else 1.0
            flip = float(paired.sign_flip_p(d, resolution))
            values = [float(paired.t_test(d).p), flip, float(d.size), tost, float(d.mean())]
        for column, value in zip(columns, values):
            column.append(value)
    return tuple(np.array(column, dtype=float) for column in columns)


def _evidence(robust: bool, n: int) -> str:
    if robust:
        return "t-test and sign-flip test"
    return f"t-test alone: assumes normal differences ({n} seeds cannot test without it)"


def seeds_needed(d: np.ndarray, margin: float, level: float, cap: int = power.MAX_SEEDS) -> float:
    """The seeds in all (more than now) at which a comparison with differences like ``d`` — their mean and sd taken
    as the truth — would be decided with 80% power at ``level``: better/worse at the observed effect
    (:func:`~emabench.report.power.t_power`) or equivalent within ``margin``
    (:func:`~emabench.report.power.tost_power`), whichever needs fewer. NaN when neither is reached by ``cap`` (or
    the spread is 0)."""
    mean, sd, n = float(np.mean(d)), float(np.std(d, ddof=1)), d.size
    if not sd > 0:
        return float("nan")
    found = []
    if mean != 0:
        found.append(power.seeds_for_power(lambda k: power.t_power(abs(mean) / sd, k, level), least=n + 1, cap=cap))
    if np.isfinite(margin) and abs(mean) < margin:
        tost = power.seeds_for_power(lambda k: power.tost_power(mean, sd, margin, k, level), least=n + 1, cap=cap)
        found.append(tost)
    reached = [k for k in found if k is not None]
    return float(min(reached)) if reached else float("nan")


def describe_family(rows: pd.DataFrame, tests: int, merged: int, by: Sequence[str]) -> str:
    """``4 primary comparisons (final accuracy of 1 model vs raw in 4 groups), each counted once``."""
    if not tests:
        return "no primary comparison has two seed pairs to test"
    groups = len(rows[list(by)].drop_duplicates()) if by and len(rows) else 1
    models = rows["model"].nunique()
    same = f"; {merged} identical comparison(s) counted once" if merged else ""
    baseline = ", ".join(dict.fromkeys(rows["baseline"]))
    return (
        f"{tests} primary comparison(s): {models} model(s) vs {baseline} in {groups} group(s), each on its task's "
        f"primary measure{same}"
    )


def open_summary(table: pd.DataFrame, cap: int = power.MAX_SEEDS) -> str:
    """One line on the inconclusive primary comparisons: ``about 14 seeds in all would settle 3 of 4 open
    comparisons (the others need more than 10000)``; empty when none is open."""
    rows = table[(table["role"] == "primary") & (table["verdict"] == "inconclusive") & (table["identical_to"] == "")]
    if rows.empty:
        return ""
    needed = rows["seeds_needed"].to_numpy(float)
    reachable = needed[np.isfinite(needed)]
    if not reachable.size:
        return f"None of the {len(rows)} open comparison(s) would be settled by {cap} seeds (80% power)."
    most = int(reachable.max())
    rest = len(rows) - reachable.size
    tail = f"; the other {rest} would need more than {cap}" if rest else ""
    return (
        f"About {most} seeds in all would settle {reachable.size} of {len(rows)} open comparison(s) with 80% power"
        f"{tail} (from each one's observed mean and spread)."
    )
