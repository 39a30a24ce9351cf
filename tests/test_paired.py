"""emabench.report.paired and .power against scipy, brute-force enumeration and statsmodels' golden values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as st

from emabench.report import paired, power

pytestmark = pytest.mark.filterwarnings("error")

RNG = np.random.default_rng(20)
# two models' accuracies on 8 seeds, and statsmodels 0.15's ttost_paired(X1, X0, -margin, margin) on them
X1 = np.array([0.912, 0.905, 0.921, 0.899, 0.917, 0.909, 0.925, 0.903])
X0 = np.array([0.901, 0.904, 0.910, 0.897, 0.902, 0.911, 0.913, 0.899])
STATSMODELS_TOST = {0.005: 0.7735794110043734, 0.02: 0.00026641085623708977}
# statsmodels 0.15: TTestPower().power(effect_size, nobs, alpha, alternative="two-sided") and .solve_power(power=0.8)
STATSMODELS_POWER = [(2.0, 5, 0.05, 0.9088848681009402), (1.0, 10, 0.05 / 6, 0.46939872563902235)]
STATSMODELS_POWER += [(0.5, 20, 0.01, 0.2973460776751171), (0.3, 40, 0.05, 0.4565221127061356)]
STATSMODELS_NOBS = [(2.0, 0.05, 4.22071858501904), (1.0, 0.05 / 6, 15.662876193391977)]
STATSMODELS_NOBS += [(0.5, 0.05, 33.36713118431779), (0.25, 0.002, 252.1278084230509)]


def brute_flip_p(row: np.ndarray) -> float:
    """Every sign vector, counted: P(|Σ sᵢ|dᵢ|| ≥ |Σ dᵢ|)."""
    signs = np.array(list(itertools.product((1, -1), repeat=row.size)))
    return float(np.mean(np.abs(signs @ np.abs(row)) >= abs(row.sum()))) if row.sum() != 0 else 1.0


def brute_rank_p(row: np.ndarray) -> float:
    """Every sign vector of the non-zero differences, with their mid-ranks."""
    nonzero = row[row != 0]
    ranks = st.rankdata(np.abs(nonzero))
    signs = np.array(list(itertools.product((1, -1), repeat=nonzero.size)))
    return float(np.mean(np.abs(signs @ ranks) >= abs(np.sign(nonzero) @ ranks) - 1e-9))


def test_t_test_matches_scipy_and_handles_constant_differences():
    d = RNG.normal(size=(30, 9))
    test = paired.t_test(d)
    reference = st.ttest_1samp(d, 0.0, axis=-1)
    np.testing.assert_allclose(test.t, reference.statistic, rtol=1e-12)
    np.testing.assert_allclose(test.p, reference.pvalue, rtol=1e-10)
    assert test.df == 8
    np.testing.assert_allclose(paired.t_test(X1 - X0).p, st.ttest_rel(X1, X0).pvalue, rtol=1e-12)
    constant = paired.t_test(np.array([[0.01, 0.01, 0.01], [0.0, 0.0, 0.0], [-0.25, -0.25, -0.25]]))
    assert constant.p.tolist() == [0.0, 1.0, 0.0] and constant.t[0] == np.inf and constant.t[2] == -np.inf
    with pytest.raises(ValueError, match="at least 2"):
        paired.t_test(np.array([0.3]))


@pytest.mark.parametrize("n", [1, 2, 5, 8, 11])
def test_sign_flip_p_is_the_enumerated_randomization_test(n):
    d = RNG.normal(size=(40, n))
    d[:10] = np.round(d[:10])  # ties and zeros
    expected = [brute_flip_p(np.rint(row / 1e-9)) for row in d]
    np.testing.assert_array_equal(paired.sign_flip_p(d, 1e-9), expected)


def test_sign_flip_p_beyond_the_exact_range_is_a_monte_carlo_estimate():
    d = RNG.normal(size=(6, 22)) + 0.4
    exact = paired.sign_flip_p(d, 1e-9)
    sampled = paired.sign_flip_p(d, 1e-9, exact_up_to=10, flips=40_000, seed=3)
    np.testing.assert_allclose(sampled, exact, atol=0.01)
    assert np.all(sampled >= 1 / 40_001)
    assert paired.reachable_level(5) == 2 / 32 and paired.reachable_level(10) == pytest.approx(0.001953125)


def test_signed_rank_p_matches_scipy_without_ties_and_enumeration_with_them():
    d = RNG.normal(size=(25, 10))
    np.testing.assert_allclose(paired.signed_rank_p(d, 1e-9), [st.wilcoxon(row).pvalue for row in d], rtol=1e-12)
    tied = np.round(RNG.normal(size=(25, 8)) * 2) / 2
    expected = [brute_rank_p(row) if np.any(row) else np.nan for row in tied]
    np.testing.assert_allclose(paired.signed_rank_p(tied, 1e-9), expected, rtol=1e-12)
    assert np.isnan(paired.signed_rank_p(np.zeros(5), 1e-9))


def test_float_noise_ties_are_ties_after_rounding():
    """Accuracies on 360 samples: three differences of one sample each, two of two, one of three. In floating point
    the three one-sample differences are not equal; on the grid they are, and the rank test ranks them as a tie."""
    correct = np.array([300, 309, 320, 311, 305, 290])
    before, after = correct / 360, (correct + [1, 1, 1, 2, -2, 3]) / 360
    d = after - before
    assert len(set(np.abs(d[:3]).tolist())) > 1  # floating point: not tied
    grid = paired.on_grid(d, paired.resolution_of(np.concatenate([before, after])))
    assert len(set(np.abs(grid[:3]).tolist())) == 1
    tied = paired.signed_rank_p(d, paired.resolution_of(np.concatenate([before, after])))
    assert tied == pytest.approx(brute_rank_p(np.array([1, 1, 1, 2, -2, 3.0])))
    assert tied != pytest.approx(st.wilcoxon(d).pvalue)  # what ranking the float noise gives


def test_tost_matches_statsmodels_and_inverts_to_the_smallest_margin():
    for margin, expected in STATSMODELS_TOST.items():
        assert paired.tost_p(X1 - X0, margin) == pytest.approx(expected, rel=1e-10)
    smallest = paired.smallest_margin(X1 - X0, 0.05)
    assert paired.tost_p(X1 - X0, smallest * 1.0001) < 0.05 < paired.tost_p(X1 - X0, smallest * 0.9999)
    zeros = np.zeros((2, 6))
    assert paired.tost_p(zeros, 0.01).tolist() == [0.0, 0.0]
    assert paired.tost_p(np.full(4, 0.02), 0.01) == 1.0
    with pytest.raises(ValueError, match="positive"):
        paired.tost_p(X1 - X0, 0.0)


def test_skewness_matches_scipy():
    d = RNG.lognormal(size=(12, 9))
    np.testing.assert_allclose(paired.skewness(d), st.skew(d, axis=-1, bias=False), rtol=1e-12)
    assert paired.skewness(np.ones(5)) == 0.0


def test_power_and_seeds_match_statsmodels():
    for effect, n, level, expected in STATSMODELS_POWER:
        assert power.t_power(effect, n, level) == pytest.approx(expected, rel=1e-8)
    for effect, level, nobs in STATSMODELS_NOBS:
        seeds = power.seeds_for_power(lambda n, e=effect, a=level: power.t_power(e, n, a))
        assert seeds == int(np.ceil(nobs))
    assert power.seeds_for_power(lambda n: power.t_power(0.001, n, 0.05), cap=500) is None


def test_tost_power_against_simulation():
    diff, sd, margin, n, level = 0.1, 1.0, 0.6, 30, 0.05
    draws = np.random.default_rng(1).normal(diff, sd, size=(40_000, n))
    simulated = float(np.mean(paired.tost_p(draws, margin) <= level))
    assert power.tost_power(diff, sd, margin, n, level) == pytest.approx(simulated, abs=0.015)
    assert power.tost_power(0.7, sd, margin, n, level) == 0.0


@pytest.mark.parametrize(("wins", "n"), [(0, 5), (5, 5), (3, 10), (7, 12)])
def test_improvement_ci_is_clopper_pearson(wins, n):
    low, high = power.improvement_ci(wins, n)
    reference = st.binomtest(wins, n).proportion_ci(method="exact")
    assert (float(low), float(high)) == pytest.approx((reference.low, reference.high), rel=1e-10)
