"""Simulated reports whose truth is known, to measure the verdicts' error rates and power: pure functions of a
random generator. ``benchmarks/verdict_calibration.py`` prints the tables (2,000 reports per cell); the default test
suite runs small versions of the same cells.

A simulated report is a family of ``m`` comparisons with ``n`` seed-paired differences each, drawn from one of
:data:`DISTRIBUTIONS` (every one of mean 0) plus a chosen true mean per comparison. Three rules decide it:

- ``report``: this report's rule (:func:`~emabench.report.decision.family_verdicts`, Holm over the family);
- ``previous``: the rule this report replaced — better/worse only when the paired t-test AND the Wilcoxon
  signed-rank test both reject at α after Holm over the family (each test's p-values adjusted on their own), and
  never below 6 seeds (an exact two-sided Wilcoxon test cannot go below 2/2⁵ = 0.0625);
- ``t``: the plain paired t-test at α/m (Bonferroni), no robustness condition.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from emabench.report import paired
from emabench.report.decision import (
    BETTER,
    EQUIVALENT,
    TOO_FEW,
    VERDICTS,
    WORSE,
    family_verdicts,
    fixed_levels,
    holm_steps,
)
from emabench.report.sequential import look_levels, looks, sequential_verdicts

Sampler = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]
ALPHA = 0.05
RULES = ("report", "previous", "t")
PREVIOUS_MIN_SEEDS = 6  # the previous rule's floor: an exact Wilcoxon test of 5 pairs cannot reach p < 0.05


def _discrete(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Two accuracies on 360 validation samples (correct ~ Binomial(360, 0.9) each), their difference, over its sd
    (a lattice of steps 1/360 scaled: ties and zeros as in a real accuracy)."""
    return (rng.binomial(360, 0.9, shape) - rng.binomial(360, 0.9, shape)) / np.sqrt(2 * 360 * 0.9 * 0.1)


def _lognormal(sigma: float) -> Sampler:
    """``(exp(σZ) − exp(σ²/2))/sd``: mean 0, sd 1, skewness ``(e^{σ²} + 2)·√(e^{σ²} − 1)`` (1.75 at σ = 0.5, 6.18 at
    σ = 1)."""
    sd = np.sqrt((np.exp(sigma**2) - 1.0) * np.exp(sigma**2))
    return lambda rng, shape: (np.exp(sigma * rng.standard_normal(shape)) - np.exp(sigma**2 / 2.0)) / sd


DISTRIBUTIONS: dict[str, Sampler] = {  # every one of mean 0 and sd 1
    "normal": lambda rng, shape: rng.standard_normal(shape),
    "t3": lambda rng, shape: rng.standard_t(3, shape) / np.sqrt(3.0),
    "accuracy on 360": _discrete,
    "lognormal, skewness 1.75": _lognormal(0.5),
    "lognormal, skewness 6.2": _lognormal(1.0),
}


def draw(
    rng: np.random.Generator, distribution: str, reps: int, means: np.ndarray, n: int, scale: float = 1.0
) -> np.ndarray:
    """``(reps, m, n)`` differences: ``scale ×`` draws of ``distribution`` plus ``means[j]`` in comparison ``j``."""
    means = np.asarray(means, dtype=float)
    return scale * DISTRIBUTIONS[distribution](rng, (reps, means.size, n)) + means[None, :, None]


def _flip_where_needed(d: np.ndarray, t_p: np.ndarray, level: float, flips: int, seed: int) -> np.ndarray:
    """Sign-flip p-values where they can matter: a verdict needs ``max(p_t, p_flip) ≤`` a level no larger than
    ``level``, so a comparison whose t-test p exceeds it gets 1 without changing any verdict (and the simulation
    runs 20× faster). Exact up to 20 seeds, ``flips`` random sign vectors beyond."""
    flip = np.ones(t_p.shape)
    needed = t_p <= level
    if needed.any():
        rows = d[needed]
        flip[needed] = paired.sign_flip_p(rows, paired.resolution_of(rows), exact_up_to=20, flips=flips, seed=seed)
    return flip


def verdicts(
    d: np.ndarray, rule: str, *, alpha: float = ALPHA, margin: float = 0.5, flips: int = 20_000, seed: int = 0
) -> np.ndarray:
    """Verdict codes (indices into :data:`~emabench.report.decision.VERDICTS`) of each simulated family of ``d``
    ``(reps, m, n)`` under ``rule`` (module docstring); ``margin``: the equivalence margin (``report`` only)."""
    reps, m, n = d.shape
    test = paired.t_test(d)
    if rule == "t":
        return _directional(test.p <= alpha / m, test.mean)
    if rule == "previous":
        ranks = paired.signed_rank_p(d, paired.resolution_of(d))
        both = _holm(test.p, alpha) & _holm(np.nan_to_num(ranks, nan=1.0), alpha) & (n >= PREVIOUS_MIN_SEEDS)
        return _directional(both, test.mean)
    if rule != "report":
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    flip = _flip_where_needed(d, test.p, alpha, flips, seed)
    tost = paired.tost_p(d, margin)
    codes, _, _ = family_verdicts(test.p, flip, np.full((reps, m), n), tost, test.mean, True, fixed_levels(alpha, m))
    return codes


def _holm(p: np.ndarray, alpha: float) -> np.ndarray:
    return holm_steps(p, fixed_levels(alpha, p.shape[-1]))


def _directional(rejected: np.ndarray, mean: np.ndarray) -> np.ndarray:
    codes = np.full(rejected.shape, VERDICTS.index("inconclusive"), dtype=np.int8)
    codes[rejected & (mean > 0)] = VERDICTS.index(BETTER)
    codes[rejected & (mean < 0)] = VERDICTS.index(WORSE)
    return codes


def family_error(codes: np.ndarray, means: np.ndarray, margin: float) -> float:
    """Share of families with at least one wrong claim: better/worse where the true mean is 0 (or of the other
    sign), equivalent where ``|true mean| ≥ margin``."""
    means = np.asarray(means, dtype=float)[None, :]
    better, worse = codes == VERDICTS.index(BETTER), codes == VERDICTS.index(WORSE)
    equivalent = codes == VERDICTS.index(EQUIVALENT)
    wrong = (better & (means <= 0)) | (worse & (means >= 0)) | (equivalent & (np.abs(means) >= margin))
    return float(wrong.any(-1).mean())


def share(codes: np.ndarray, verdict: str, comparison: int = 0) -> float:
    """Share of families where ``comparison`` got ``verdict``."""
    return float((codes[:, comparison] == VERDICTS.index(verdict)).mean())


def sequential(
    d: np.ndarray, *, alpha: float = ALPHA, margin: float = 0.5, flips: int = 20_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The sequential design on ``d`` ``(reps, m, N)``: looks at :func:`~emabench.report.sequential.looks` ``(N)``
    seeds (each look the first seeds), Lan–DeMets O'Brien–Fleming levels. Returns the verdict codes and the seeds
    at which each comparison was decided (N when it never was)."""
    reps, m, cap = d.shape
    counts = looks(cap)
    levels = look_levels([c / cap for c in counts], alpha, m)
    parts = []
    for k, count in enumerate(counts):
        test = paired.t_test(d[..., :count])
        flip = _flip_where_needed(d[..., :count], test.p, float(levels[k].max()), flips, seed)
        parts.append((test.p, flip, np.full((reps, m), count), paired.tost_p(d[..., :count], margin), test.mean))
    stacked = [np.stack(column) for column in zip(*parts)]
    codes, at = sequential_verdicts(*stacked[:4], stacked[4], True, levels)
    seeds = np.where(at >= 0, np.asarray(counts)[np.clip(at, 0, None)], cap)
    codes[codes == VERDICTS.index(TOO_FEW)] = VERDICTS.index("inconclusive")
    return codes, seeds
