"""The verdict of every comparison in a family, from its p-values: pure vectorized functions.

A family is ``m`` comparisons (the last axis; leading axes are independent families, e.g. simulated reports), each a
mean paired difference with two null hypotheses: ``H: mean = 0`` and ``K: |mean| ≥ margin``. Five verdicts
(:data:`VERDICTS`):

- **better / worse**: ``H`` rejected; the sign of the mean, in the metric's direction, says which of the two;
- **equivalent**: ``H`` not rejected and ``K`` rejected by TOST (:func:`~emabench.report.paired.tost_p`): the mean
  lies within ``±margin``;
- **inconclusive**: neither; **too few seeds**: fewer than two pairs (NaN p-values): no outcome could decide.

**Levels.** Both hypotheses of a comparison are tested at ``levels[k]`` — ``α/k`` for a fixed design
(:func:`fixed_levels`), a look's nominal level for ``α/k`` in a sequential one (:mod:`.sequential`) — where ``k``
counts the comparisons that may still hold a true null. At most one of ``H`` and ``K`` is true (``margin > 0``), and
either claim of a comparison tested at level ``a`` is wrong only when its one-sided ``1 − a`` bound misses the true
mean, an event of probability ``≤ a``; so ``k = m`` keeps the family-wise error of all claims ≤ α (Bonferroni). A
comparison leaves the count only when BOTH its nulls are rejected (a difference shown to be non-zero and smaller
than the margin): then neither can be true, and the others are tested again at the larger level, until nothing
changes (Shaffer 1986; Holm's step-down applies only this way: a "better" alone leaves ``|mean| ≥ margin`` possible,
and counting it out would let the others' false "equivalent" claims add up beyond α — measured in
``benchmarks/verdict_calibration.py``).

**The p-value of H** is the paired t-test's, and — from the seeds at which an exact sign-flip test can reach the
family's level at all (``2/2ⁿ ≤ level``, :func:`~emabench.report.paired.reachable_level`) — the larger of it and the
sign-flip test's: both must reject. Below those seeds the verdict rests on the t-test alone, which assumes normally
distributed differences. Why this rule, with the error rates it keeps: docs/statistics.md.
"""

from __future__ import annotations

import numpy as np

from emabench.report.paired import reachable_level

BETTER, WORSE, EQUIVALENT, INCONCLUSIVE, TOO_FEW = "better", "worse", "equivalent", "inconclusive", "too few seeds"
VERDICTS = (BETTER, WORSE, EQUIVALENT, INCONCLUSIVE, TOO_FEW)  # codes 0…4 of the arrays below
DECIDED = (0, 1, 2)  # codes of the verdicts that end a comparison


def fixed_levels(alpha: float, m: int) -> np.ndarray:
    """The levels of a fixed design: ``levels[k] = α/k`` with ``k`` comparisons standing (``levels[0]`` unused, 0)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    return np.concatenate([[0.0], alpha / np.arange(1, max(m, 0) + 1)])


def holm_steps(p: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Which hypotheses Holm's step-down (Holm 1979) rejects, over the last axis: sorted ascending, the ``j``-th
    smallest p-value (from 0) is rejected when it and every smaller one pass ``levels[members − j]`` (``α/(m − j)``
    for :func:`fixed_levels`). ``p``: NaN = not in the family. Valid for one kind of hypothesis per comparison (the
    rule this report replaced used it on its t-test and its Wilcoxon p-values, each on their own)."""
    p = np.asarray(p, dtype=float)
    members = (~np.isnan(p)).sum(-1, keepdims=True)
    order = np.argsort(np.where(np.isnan(p), np.inf, p), axis=-1, kind="stable")
    ranked = np.take_along_axis(np.where(np.isnan(p), np.inf, p), order, -1)
    standing = members - np.arange(p.shape[-1])
    thresholds = np.where(standing > 0, np.asarray(levels)[np.clip(standing, 0, len(levels) - 1)], -1.0)
    passed = np.cumprod(ranked <= thresholds, axis=-1).astype(bool)
    rejected = np.zeros(p.shape, dtype=bool)
    np.put_along_axis(rejected, order, passed, -1)
    return rejected


def family_verdicts(
    t_p: np.ndarray,
    flip_p: np.ndarray,
    n: np.ndarray,
    tost: np.ndarray,
    mean: np.ndarray,
    higher_is_better: np.ndarray | bool,
    levels: np.ndarray,
    settled: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Verdict codes (indices into :data:`VERDICTS`) of every comparison of the family on the last axis, whether
    the sign-flip test was required, and which comparisons had both nulls rejected (module docstring).

    ``t_p``/``flip_p``/``tost``: NaN = too few seeds (outside the family); +inf = counted in the family but not
    tested (decided at an earlier look). ``n``: pairs per comparison. ``settled``: comparisons whose both nulls were
    rejected at an earlier look (they no longer count)."""
    t_p, tost = np.asarray(t_p, dtype=float), np.asarray(tost, dtype=float)
    levels = np.asarray(levels)
    members = (~np.isnan(t_p)).sum(-1, keepdims=True)
    both = np.zeros(t_p.shape, dtype=bool) if settled is None else np.asarray(settled, dtype=bool).copy()
    robust = reachable_level(n) <= _level(levels, members - both.sum(-1, keepdims=True))
    p = np.where(robust, np.maximum(t_p, flip_p), t_p)
    differs = within = np.zeros(t_p.shape, dtype=bool)
    while True:  # the level only grows, so what was rejected stays rejected
        level = _level(levels, members - both.sum(-1, keepdims=True))
        differs, within = differs | (p <= level), within | (tost <= level)
        if np.array_equal(both | (differs & within), both):
            break
        both = both | (differs & within)
    up = np.asarray(mean) > 0
    codes = np.full(t_p.shape, VERDICTS.index(INCONCLUSIVE), dtype=np.int8)
    codes[within & ~differs] = VERDICTS.index(EQUIVALENT)
    codes[differs & (up == np.asarray(higher_is_better))] = VERDICTS.index(BETTER)
    codes[differs & (up != np.asarray(higher_is_better))] = VERDICTS.index(WORSE)
    codes[np.isnan(t_p)] = VERDICTS.index(TOO_FEW)
    return codes, robust & ~np.isnan(t_p), both


def _level(levels: np.ndarray, standing: np.ndarray) -> np.ndarray:
    """``levels[standing]``, and −1 (nothing passes) where no comparison stands."""
    return np.where(standing > 0, levels[np.clip(standing, 0, len(levels) - 1)], -1.0)
