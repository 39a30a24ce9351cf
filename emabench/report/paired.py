"""Tests of seed-paired differences, as pure vectorized functions of arrays.

Every function takes differences ``d`` (other − baseline, one per seed) with the seeds on the LAST axis; any leading
axes are independent comparisons (a report's rows, or a simulation's reports × comparisons) and come back as the
shape of the result. Values must be finite: the report drops a pair when either side is not. Every choice (the
resolution, how many sign flips, the random seed of a Monte Carlo test) is an argument.

- :func:`t_test`: the paired t-test, ``t = mean(d) / (sd(d)/√n)`` on ``n − 1`` degrees of freedom, two-sided.
- :func:`sign_flip_p`: the randomization test of the same mean: under the null, each difference's sign is a fair
  coin (exact when the differences are symmetric about 0), ``p = P(|Σ sᵢ|dᵢ|| ≥ |Σ dᵢ|)`` over the 2ⁿ sign vectors
  (counted exactly up to ``exact_up_to`` seeds, else over ``flips`` random ones). Its
  smallest p-value is ``2/2ⁿ``: :func:`reachable_level`.
- :func:`signed_rank_p`: Wilcoxon's signed-rank test (zeros dropped, tied magnitudes given their mid-rank), its
  exact conditional null distribution counted over the sign vectors; a test of the median-like centre, not the mean.
- :func:`tost_p`: two one-sided t-tests (TOST) of ``|mean| ≥ margin``; rejecting says the mean lies within
  ``±margin`` (Schuirmann 1987; statsmodels' ``ttost_paired``). :func:`smallest_margin` inverts it.
- :func:`skewness`: the adjusted Fisher–Pearson sample skewness ``G1`` (``scipy.stats.skew(bias=False)``).

**Resolution.** Differences are rounded to a grid (:func:`on_grid`) before anything compares them with each other:
two accuracies on 360 samples that differ by one sample differ by 1/360 in exact arithmetic, but by
0.002777…768 or …879 in floating point, and a rank test must see those as a tie. :func:`resolution_of` picks the
grid: 10⁻⁹ of the values' magnitude, far below any real difference of a metric (an accuracy on n samples moves in
steps of 1/n ≥ 10⁻⁶ for n ≤ 10⁶) and far above floating-point noise (10⁻¹⁶ of it).
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np
from scipy import stats as st

RELATIVE_RESOLUTION = 1e-9  # the grid differences are rounded to, relative to the values' magnitude
EXACT_UP_TO = 30  # sign-flip tests are exact up to this many seeds (two halves of up to 2¹⁵ sums each)
FLIPS = 20_000  # random sign vectors beyond it
_CHUNK_CELLS = 1 << 22  # rows × sign vectors evaluated at once (32 MiB of float64)


class TTest(NamedTuple):
    """The paired t-test of each comparison: ``mean``, ``sd`` (ddof=1), ``se = sd/√n``, ``df = n − 1``, ``t``
    and the two-sided ``p``. A constant difference has ``se = 0``: ``t = ±inf`` (p = 0), or 0 (p = 1) when it is 0."""

    mean: np.ndarray
    sd: np.ndarray
    se: np.ndarray
    df: int
    t: np.ndarray
    p: np.ndarray


def resolution_of(values: np.ndarray) -> float:
    """The grid for differences of ``values`` (module docstring): ``1e-9 · max|values|``, 1e-9 when all are 0."""
    scale = float(np.max(np.abs(values))) if np.size(values) else 0.0
    return RELATIVE_RESOLUTION * (scale if scale > 0 and np.isfinite(scale) else 1.0)


def on_grid(d: np.ndarray, resolution: float) -> np.ndarray:
    """``d`` in whole multiples of ``resolution`` (floats holding integers): equal after rounding means tied."""
    if not resolution > 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    return np.rint(np.asarray(d, dtype=float) / resolution)


def _seeds(d: np.ndarray, least: int) -> int:
    n = np.shape(d)[-1] if np.ndim(d) else 0
    if n < least:
        raise ValueError(f"need at least {least} paired differences on the last axis, got {n}")
    return n


def t_test(d: np.ndarray) -> TTest:
    """The paired (one-sample) t-test of ``mean(d) = 0`` over the last axis (as ``scipy.stats.ttest_1samp``)."""
    d = np.asarray(d, dtype=float)
    n = _seeds(d, 2)
    mean, sd = d.mean(-1), d.std(-1, ddof=1)
    se = sd / np.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, mean / np.where(se > 0, se, 1.0), np.where(mean == 0, 0.0, np.sign(mean) * np.inf))
    return TTest(mean, sd, se, n - 1, t, 2.0 * st.t.sf(np.abs(t), n - 1))


def reachable_level(n: np.ndarray | int) -> np.ndarray:
    """The smallest two-sided p-value an exact sign-flip or signed-rank test of ``n`` non-zero pairs can give:
    ``2/2ⁿ`` (all signs alike). Below the level a verdict needs, no outcome of such a test could support it."""
    return np.exp2(1.0 - np.asarray(n, dtype=float))


def sign_flip_p(
    d: np.ndarray,
    resolution: float,
    *,
    exact_up_to: int = EXACT_UP_TO,
    flips: int = FLIPS,
    seed: int = 0,
) -> np.ndarray:
    """Two-sided sign-flip (randomization) p-value of ``mean(d) = 0`` over the last axis (module docstring), on the
    differences rounded to ``resolution`` so equal magnitudes compare equal. Exact up to ``exact_up_to`` seeds
    (:func:`_exact_hits`); beyond, ``flips`` random sign vectors drawn from ``seed`` (``(1 + hits)/(1 + flips)``, a
    valid p-value, never below ``1/(1 + flips)``). 1 where the differences sum to 0."""
    units = on_grid(d, resolution)
    n = _seeds(units, 1)
    magnitudes = np.abs(units).reshape(-1, n)
    observed = np.abs(units.sum(-1)).reshape(-1)
    if n <= exact_up_to:
        p = _exact_hits(magnitudes, observed) / 2.0**n
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(flips, n))
        hits = np.zeros(magnitudes.shape[0])
        step = max(1, _CHUNK_CELLS // max(1, magnitudes.shape[0]))
        for start in range(0, flips, step):
            hits += (np.abs(magnitudes @ signs[start : start + step].T) >= observed[:, None]).sum(-1)
        p = (hits + 1.0) / (flips + 1.0)
    return np.where(observed == 0, 1.0, p).reshape(units.shape[:-1])


def _all_signs(n: int) -> np.ndarray:
    return np.array(list(itertools.product((1.0, -1.0), repeat=n))).reshape(2**n, n)


def _exact_hits(magnitudes: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """How many of the 2ⁿ sign vectors give ``|Σ sᵢ·aᵢ| ≥ observed`` (> 0), per row of integer-valued
    ``magnitudes``, meeting in the middle: the sorted 2^⌊n/2⌋ sums of the first half against the sorted sums of the
    second, the rows of a chunk in one sorted array (each row's sums offset by a multiple of more than their range)."""
    rows, n = magnitudes.shape
    half = n // 2
    signs_first, signs_second = _all_signs(half).T, _all_signs(n - half).T
    width = signs_second.shape[1]
    span = 4.0 * float(magnitudes.sum(-1).max()) + 4.0  # every sum and target of a row lies within ±span/2
    per_chunk = max(1, min(int(2.0**52 // span), _CHUNK_CELLS // max(width, signs_first.shape[1])))
    hits = np.zeros(rows)
    for start in range(0, rows, per_chunk):
        part = slice(start, min(rows, start + per_chunk))
        index = np.arange(part.stop - part.start)[:, None]
        keys = (np.sort(magnitudes[part, half:] @ signs_second, axis=-1) + span * index).ravel()
        descending = np.sort(magnitudes[part, :half] @ signs_first, axis=-1)[:, ::-1] - span * index
        need = observed[part, None]
        at_least = width * (index + 1) - np.searchsorted(keys, need - descending, side="left")
        at_most = np.searchsorted(keys, -need - descending, side="right") - width * index
        hits[part] = (at_least + at_most).sum(-1)
    return hits


def signed_rank_p(d: np.ndarray, resolution: float) -> np.ndarray:
    """Two-sided Wilcoxon signed-rank p-value over the last axis: zero differences dropped (``zero_method='wilcox'``),
    tied magnitudes given their mid-rank, and the statistic ``|Σ sign(dᵢ)·rankᵢ|`` compared with its exact
    distribution over the 2ⁿ sign vectors given those ranks (scipy's exact test when nothing ties or is 0; its
    permutation version when something does). NaN where every difference is 0."""
    units = on_grid(d, resolution)
    n = _seeds(units, 1)
    flat = units.reshape(-1, n)
    magnitudes = np.abs(flat)
    zeros = (magnitudes == 0).sum(-1)
    ranks = np.where(magnitudes > 0, st.rankdata(magnitudes, axis=-1) - zeros[:, None], 0.0)
    doubled = np.rint(2.0 * ranks).astype(np.int64)  # mid-ranks are halves: twice them are integers
    statistic = np.abs((np.sign(flat).astype(np.int64) * doubled).sum(-1))
    p = np.full(flat.shape[0], np.nan)
    plain = (zeros == 0) & np.all(np.diff(np.sort(magnitudes, -1), axis=-1) > 0, axis=-1)
    if plain.any():  # ranks 1…n: one distribution serves every such row
        p[plain] = _tail(_sum_distribution(2 * np.arange(1, n + 1)[None, :])[0])[statistic[plain]]
    rest = np.flatnonzero(~plain & (zeros < n))
    for start in range(0, rest.size, 4096):
        rows = rest[start : start + 4096]
        counts = _sum_distribution(doubled[rows])
        p[rows] = [_tail(row)[s] for row, s in zip(counts, statistic[rows])]
    return p.reshape(units.shape[:-1])


def _tail(counts: np.ndarray) -> np.ndarray:
    """``P(|S| ≥ s)`` for ``s = 0 … total`` from the counts of each sum ``S = −total … total``."""
    total = (counts.size - 1) // 2
    by_size = counts[total:].copy()
    by_size[1:] += counts[:total][::-1]
    return np.cumsum(by_size[::-1])[::-1] / counts.sum()


def _sum_distribution(weights: np.ndarray) -> np.ndarray:
    """For each row of non-negative integer ``weights``, how many of the 2ⁿ sign vectors give each value of
    ``Σ sᵢ·wᵢ`` (index 0 is −total): the product of the polynomials ``x^−w + x^w``, as counts (float64)."""
    rows, n = weights.shape
    total = int(weights.sum(-1).max()) if weights.size else 0
    counts = np.zeros((rows, 2 * total + 1))
    counts[:, total] = 1.0
    for i in range(n):
        shifted = np.zeros_like(counts)
        for w in np.unique(weights[:, i]):
            at = weights[:, i] == w
            part = counts[at]
            # sums stay within ±total, so nothing rolls around the ends
            shifted[at] = np.roll(part, int(w), axis=1) + np.roll(part, -int(w), axis=1) if w else 2.0 * part
        counts = shifted
    return counts


def tost_p(d: np.ndarray, margin: np.ndarray | float) -> np.ndarray:
    """TOST p-value of ``|mean| ≥ margin`` over the last axis: the larger of the one-sided t-tests of
    ``mean ≤ −margin`` (``t₁ = (mean + margin)/se``, upper tail) and ``mean ≥ margin`` (``t₂ = (mean − margin)/se``,
    lower tail), on ``n − 1`` degrees of freedom. ``margin`` (> 0) broadcasts over the leading axes. A constant
    difference (se = 0) gives 0 inside the margin, 1 outside."""
    test = t_test(d)
    margin = np.asarray(margin, dtype=float)
    if np.any(~(margin > 0)):
        raise ValueError(f"an equivalence margin must be positive, got {margin[~(margin > 0)].ravel()[:3].tolist()}")
    inside = np.abs(test.mean) < margin
    with np.errstate(divide="ignore", invalid="ignore"):
        low = st.t.sf((test.mean + margin) / test.se, test.df)
        high = st.t.cdf((test.mean - margin) / test.se, test.df)
    return np.where(test.se > 0, np.maximum(low, high), np.where(inside, 0.0, 1.0))


def smallest_margin(d: np.ndarray, level: np.ndarray | float) -> np.ndarray:
    """The smallest margin TOST at ``level`` could have called equivalent: it rejects for every margin above
    ``|mean| + t_{1−level, n−1}·se`` (the far end of the ``1 − 2·level`` interval)."""
    test = t_test(d)
    return np.abs(test.mean) + st.t.isf(np.asarray(level, dtype=float), test.df) * test.se


def skewness(d: np.ndarray) -> np.ndarray:
    """Adjusted Fisher–Pearson skewness ``G1 = √(n(n−1))/(n−2) · m₃/m₂^{3/2}`` over the last axis (``m_k`` central
    moments); 0 for a constant sample. Needs three values."""
    d = np.asarray(d, dtype=float)
    n = _seeds(d, 3)
    centred = d - d.mean(-1, keepdims=True)
    m2, m3 = (centred**2).mean(-1), (centred**3).mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        g1 = np.where(m2 > 0, m3 / np.where(m2 > 0, m2, 1.0) ** 1.5, 0.0)
    return g1 * np.sqrt(n * (n - 1)) / (n - 2)
