"""How many seeds a paired comparison needs, and the probability of improvement: pure vectorized functions.

- :func:`t_power`: the power of the two-sided paired t-test at level ``level`` with ``n`` pairs when the true
  standardized effect is ``effect = |mean|/sd``: ``P(|T| > c)`` with ``T`` noncentral t on ``n − 1`` degrees of
  freedom, noncentrality ``effect·√n``, ``c = t_{1−level/2, n−1}`` (statsmodels' ``TTestPower``).
- :func:`tost_power`: the power of TOST (two one-sided tests at ``level``) within ``±margin`` when the true mean
  difference is ``diff`` and its sd ``sd``: ``P(T₁ > c) + P(T₂ > c) − 1`` with ``T₁, T₂`` noncentral t of
  noncentrality ``(margin ∓ diff)·√n/sd`` and ``c = t_{1−level, n−1}`` (the usual approximation that treats the two
  one-sided rejections as complementary; it errs low, so the seeds it asks for are enough).
- :func:`seeds_for_power`: the fewest seeds at which either reaches a target power, searched up to a cap.
- :func:`improvement_ci`: the exact (Clopper–Pearson) interval of a binomial share, e.g. the seeds on which a
  model beats the baseline.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats as st

POWER = 0.8  # the power "how many seeds" is computed for
MAX_SEEDS = 10_000  # the search for seeds stops here: beyond, "more than 10,000"


def t_power(effect: np.ndarray | float, n: np.ndarray | int, level: np.ndarray | float) -> np.ndarray:
    """Power of the two-sided paired t-test (module docstring); broadcasts its arguments; ``n ≥ 2``."""
    effect, n, level = np.asarray(effect, float), np.asarray(n, float), np.asarray(level, float)
    df = n - 1.0
    critical = st.t.isf(level / 2.0, df)
    noncentrality = np.abs(effect) * np.sqrt(n)
    return _upper(critical, df, noncentrality) + _upper(critical, df, -noncentrality)


def _upper(critical: np.ndarray, df: np.ndarray, noncentrality: np.ndarray) -> np.ndarray:
    """``P(T > critical)`` for ``T`` noncentral t; where scipy's series gives up (far tails at many seeds: NaN), the
    normal limit ``Φ(noncentrality − critical)``, which those tails have reached."""
    with np.errstate(all="ignore"):
        exact = st.nct.sf(critical, df, noncentrality)
    return np.where(np.isnan(exact), st.norm.cdf(noncentrality - critical), exact)


def tost_power(
    diff: np.ndarray | float,
    sd: np.ndarray | float,
    margin: np.ndarray | float,
    n: np.ndarray | int,
    level: np.ndarray | float,
) -> np.ndarray:
    """Power of TOST within ``±margin`` (module docstring); broadcasts; 0 where ``|diff| ≥ margin``."""
    diff, sd, margin = np.abs(np.asarray(diff, float)), np.asarray(sd, float), np.asarray(margin, float)
    n, level = np.asarray(n, float), np.asarray(level, float)
    df = n - 1.0
    critical = st.t.isf(level, df)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.sqrt(n) / sd
    lower = _upper(critical, df, (margin + diff) * scale)
    upper = _upper(critical, df, (margin - diff) * scale)
    power = np.clip(lower + upper - 1.0, 0.0, 1.0)
    return np.where(diff < margin, power, 0.0)


def seeds_for_power(
    power_at: Callable[[np.ndarray], np.ndarray], *, target: float = POWER, least: int = 2, cap: int = MAX_SEEDS
) -> int | None:
    """The fewest seeds ``n`` in ``[least, cap]`` with ``power_at(n) ≥ target``, or None when even ``cap`` is not
    enough. ``power_at`` must grow with ``n`` (both powers above do); it is evaluated on arrays of seed counts:
    doubling from ``least`` until the target is passed, then bisecting."""
    low = max(2, least)

    def reached(n: int) -> bool:
        with np.errstate(all="ignore"):
            return bool(np.nan_to_num(power_at(np.array([n])))[0] >= target)

    if low > cap or not reached(cap):
        return None
    high = low
    while not reached(high):
        low, high = high + 1, min(cap, 2 * high)
    while low < high:  # reached(high) holds; the answer lies in [low, high]
        middle = (low + high) // 2
        low, high = (low, middle) if reached(middle) else (middle + 1, high)
    return high


def improvement_ci(
    wins: np.ndarray | int, n: np.ndarray | int, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Clopper–Pearson interval of the share ``wins/n`` (``scipy.stats.binomtest(...).proportion_ci('exact')``):
    ``[B_{a/2}(k, n−k+1), B_{1−a/2}(k+1, n−k)]`` with ``B`` beta quantiles and ``a = 1 − confidence``; the bounds
    are 0 and 1 at ``k = 0`` and ``k = n``. NaN where ``n = 0``."""
    k, n = np.asarray(wins, float), np.asarray(n, float)
    tail = (1.0 - confidence) / 2.0
    with np.errstate(all="ignore"):
        low = np.where(k > 0, st.beta.ppf(tail, k, n - k + 1.0), 0.0)
        high = np.where(k < n, st.beta.isf(tail, k + 1.0, n - k), 1.0)
    empty = n <= 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)
