"""Group-sequential looks at a growing number of seeds: Lan–DeMets alpha spending of O'Brien–Fleming type, and the
verdicts of a family over looks. Pure functions of arrays.

A study that adds seeds until it can decide (``emabench sweep --until-decided``) looks at the data several times;
testing each look at α would spend α at every look. Instead each look may spend only part of it: with ``t`` the
information fraction (seeds so far / the most seeds the study may take), the two-sided error spent by ``t`` is

    α(t) = 2 − 2·Φ(z_{1−α/2} / √t)       (Lan & DeMets 1983, O'Brien–Fleming type)

so early looks spend almost nothing and the last look almost the whole α.
``c_k`` with ``P(|Z_j| < c_j for j < k, |Z_k| ≥ c_k) = α(t_k) − α(t_{k−1})`` for the cumulative z-statistics of a
Brownian motion observed at ``t_1 < … < t_K`` (``Z_k = B(t_k)/√t_k``), by numerical integration of the density of
``B(t_k)`` on the region not yet stopped (Armitage, McPherson & Rowe 1969). A look's nominal level is
``2·(1 − Φ(c_k))``: the paired t-test's p-value at that look is compared with it.

:func:`sequential_verdicts` runs a family through its looks: at each look the comparisons still open get the
verdicts of :func:`~emabench.report.decision.family_verdicts` with the fixed design's levels ``α/k`` replaced by the
look's nominal levels for ``α/k`` (:func:`look_levels`); a decided comparison keeps its verdict and stays counted
(unless both its nulls were rejected, as in a fixed design). The family-wise error over all looks is measured in
``benchmarks/verdict_calibration.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import optimize
from scipy import stats as st

from emabench.report.decision import DECIDED, INCONCLUSIVE, TOO_FEW, VERDICTS, family_verdicts

FIRST_LOOK = 5  # seeds at the first look; each later look doubles them, up to the cap
GRID = 801  # points of the numerical integration on the not-yet-stopped region (odd: Simpson's rule)


def looks(max_seeds: int, first: int = FIRST_LOOK) -> list[int]:
    """Seeds at each look: ``first``, doubling, capped by ``max_seeds`` (5, 10, 20, 40 for 40; 5, 10, 20, 30 for 30)."""
    if max_seeds < 2:
        raise ValueError(f"a sequential study needs at least 2 seeds, got a cap of {max_seeds}")
    counts = [min(first, max_seeds)]
    while counts[-1] < max_seeds:
        counts.append(min(2 * counts[-1], max_seeds))
    return counts


def spent(t: np.ndarray | float, alpha: float) -> np.ndarray:
    """The two-sided error spent by information fraction ``t`` (module docstring); α at ``t = 1``."""
    t = np.asarray(t, dtype=float)
    with np.errstate(divide="ignore"):
        return 2.0 * st.norm.sf(st.norm.isf(alpha / 2.0) / np.sqrt(t))


def boundaries(fractions: Sequence[float], alpha: float) -> np.ndarray:
    """The z-boundaries ``c_k`` at information ``fractions`` (increasing, in (0, 1]) for two-sided level ``alpha``
    (module docstring)."""
    t = np.asarray(fractions, dtype=float)
    if t.size == 0 or np.any(np.diff(t) <= 0) or t[0] <= 0 or t[-1] > 1:
        raise ValueError(f"information fractions must increase within (0, 1], got {list(fractions)}")
    budget = np.diff(np.concatenate([[0.0], spent(t, alpha)]))
    c = [float(st.norm.isf(budget[0] / 2.0))]
    grid = np.linspace(-c[0] * np.sqrt(t[0]), c[0] * np.sqrt(t[0]), GRID)
    density = st.norm.pdf(grid, scale=np.sqrt(t[0]))  # of B(t₁) where no boundary was crossed
    for k in range(1, t.size):
        step = float(np.sqrt(t[k] - t[k - 1]))
        mass = density * _simpson(grid)
        bound = _crossing_bound(grid, mass, step, float(budget[k]))
        c.append(bound / np.sqrt(t[k]))
        grid, previous = np.linspace(-bound, bound, GRID), grid
        density = st.norm.pdf(grid[:, None], previous[None, :], step) @ mass
    return np.array(c)


def _crossing_bound(grid: np.ndarray, mass: np.ndarray, step: float, budget: float) -> float:
    """The bound ``b`` on ``B(t_k)`` with ``P(|B(t_k)| ≥ b, not stopped before) = budget``, given the mass of
    ``B(t_{k−1})`` on ``grid`` and the increment's sd ``step``."""

    def crossing(b: float) -> float:
        return float(mass @ (st.norm.cdf((-b - grid) / step) + st.norm.sf((b - grid) / step)))

    if budget <= 0 or crossing(40.0) >= budget:
        return 40.0  # nothing (representable) to spend at this look
    return float(optimize.brentq(lambda b: crossing(b) - budget, 0.0, 40.0, xtol=1e-12))


def _simpson(grid: np.ndarray) -> np.ndarray:
    """Simpson's weights on an evenly spaced grid of odd length."""
    weights = np.ones(grid.size)
    weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
    return weights * (grid[1] - grid[0]) / 3.0


def nominal_levels(fractions: Sequence[float], alpha: float) -> np.ndarray:
    """The two-sided nominal level of each look, ``2·(1 − Φ(c_k))``."""
    return 2.0 * st.norm.sf(boundaries(fractions, alpha))


def look_levels(fractions: Sequence[float], alpha: float, m: int) -> np.ndarray:
    """The levels of every look: row ``k`` holds, for ``j`` comparisons standing, the nominal level of look
    ``k`` for ``α/j`` (column 0 unused). Shape ``(looks, m + 1)``."""
    table = np.zeros((len(fractions), m + 1))
    for j in range(1, m + 1):
        table[:, j] = nominal_levels(fractions, alpha / j)
    return table


def sequential_verdicts(
    t_p: np.ndarray,
    flip_p: np.ndarray,
    n: np.ndarray,
    tost: np.ndarray,
    mean: np.ndarray,
    higher_is_better: np.ndarray | bool,
    levels: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Verdict codes after the last look and the look (0-based) each was decided at (−1: never). Every array but
    ``higher_is_better`` has the looks first: ``(looks, …, m)``; ``levels`` is :func:`look_levels`' table."""
    codes = np.full(np.shape(t_p)[1:], VERDICTS.index(INCONCLUSIVE), dtype=np.int8)
    decided_at = np.full(codes.shape, -1, dtype=np.int64)
    settled = np.zeros(codes.shape, dtype=bool)
    for k in range(np.shape(t_p)[0]):
        open_ = decided_at < 0
        p = np.where(open_ | np.isnan(t_p[k]), t_p[k], np.inf)
        verdict, _, both = family_verdicts(
            p, flip_p[k], n[k], np.where(open_, tost[k], np.inf), mean[k], higher_is_better, levels[k], settled
        )
        newly = open_ & np.isin(verdict, DECIDED)
        codes[newly], decided_at[newly], settled = verdict[newly], k, both
        if k == np.shape(t_p)[0] - 1:
            codes[open_ & (verdict == VERDICTS.index(TOO_FEW))] = VERDICTS.index(TOO_FEW)
    return codes, decided_at
