"""The family's verdicts (emabench.report.decision) and the sequential design (emabench.report.sequential): constructed
families with known answers, Holm against its definition, and the spending boundaries against a simulated Brownian
motion."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from emabench.report import stats
from emabench.report.decision import VERDICTS, family_verdicts, fixed_levels, holm_steps
from emabench.report.sequential import boundaries, look_levels, looks, nominal_levels, sequential_verdicts, spent

pytestmark = pytest.mark.filterwarnings("error")


def names(codes: np.ndarray) -> list[str]:
    return [VERDICTS[c] for c in np.ravel(codes)]


def test_holm_steps_agree_with_holm_adjusted_p_values():
    p = np.random.default_rng(0).uniform(0, 0.03, size=(200, 7))
    p[:, 3] = np.nan  # outside the family
    expected = np.array([stats.holm(row) < 0.05 for row in p])
    # holm() rejects where p̃ < α; the step-down rejects where p ≤ α/k: equal but for exact ties with the level
    np.testing.assert_array_equal(holm_steps(p, fixed_levels(0.05, 7)), expected & ~np.isnan(p))


def family(t_p, flip_p, n, tost, mean, higher=True, alpha=0.05):
    t_p = np.asarray(t_p, dtype=float)
    return family_verdicts(
        t_p,
        np.asarray(flip_p, float),
        np.asarray(n),
        np.asarray(tost, float),
        np.asarray(mean),
        higher,
        fixed_levels(alpha, t_p.size),
    )


def test_five_verdicts_of_one_family():
    codes, robust, both = family(
        t_p=[0.001, 0.001, 0.5, 0.5, np.nan, 0.001],
        flip_p=[0.002, 0.002, 1.0, 1.0, np.nan, 0.2],
        n=[10, 10, 10, 10, 1, 10],
        tost=[0.9, 0.9, 0.001, 0.2, np.nan, 0.9],
        mean=[0.02, -0.02, 0.0, 0.01, 0.0, 0.03],
    )
    # 5 comparisons in the family: level 0.01; the last one's sign-flip test does not pass, so no verdict
    assert names(codes) == ["better", "worse", "equivalent", "inconclusive", "too few seeds", "inconclusive"]
    assert robust.tolist() == [True, True, True, True, False, True] and not both.any()
    lower_is_better, _, _ = family([0.001], [0.002], [10], [0.9], [-0.02], higher=False)
    assert names(lower_is_better) == ["better"]


def test_below_the_reachable_seeds_the_t_test_decides_alone():
    # 5 pairs: an exact sign-flip test cannot go below 2/32 = 0.0625 > 0.05, so the t-test decides alone
    codes, robust, _ = family([0.01], [0.0625], [5], [1.0], [0.3])
    assert names(codes) == ["better"] and not robust[0]
    codes, robust, _ = family([0.01], [0.0625], [6], [1.0], [0.3])  # 2/64 reaches 0.05: both must reject
    assert names(codes) == ["inconclusive"] and robust[0]


def test_only_a_comparison_with_both_nulls_rejected_frees_its_share_of_alpha():
    # two comparisons: 0.04 passes only at level α/1 = 0.05, reached once the other is settled (non-zero AND within
    # the margin); a "better" alone does not free it
    settled, _, both = family([0.001, 0.04], [0.001, 0.04], [10, 10], [0.001, 0.9], [0.01, 0.02])
    assert names(settled) == ["better", "better"] and both.tolist() == [True, False]
    unsettled, _, _ = family([0.001, 0.04], [0.001, 0.04], [10, 10], [0.9, 0.9], [0.01, 0.02])
    assert names(unsettled) == ["better", "inconclusive"]


def test_looks_and_spending():
    assert looks(40) == [5, 10, 20, 40] and looks(30) == [5, 10, 20, 30] and looks(12) == [5, 10, 12]
    assert looks(5) == [5] and looks(3) == [3]
    assert spent(1.0, 0.05) == pytest.approx(0.05)
    assert boundaries([1.0], 0.05)[0] == pytest.approx(st.norm.isf(0.025))
    assert boundaries([0.25, 1.0], 0.05)[0] == pytest.approx(st.norm.isf(0.025) / 0.5)  # all of α(t₁) at look 1
    levels = nominal_levels([0.25, 0.5, 1.0], 0.05)
    assert np.all(np.diff(levels) > 0) and levels[-1] < 0.05


def test_boundaries_spend_alpha_as_promised_on_a_brownian_motion():
    t = np.array([0.125, 0.25, 0.5, 1.0])
    c = boundaries(t, 0.05)
    rng = np.random.default_rng(4)
    paths = np.cumsum(rng.standard_normal((400_000, 4)) * np.sqrt(np.diff(np.concatenate([[0.0], t]))), axis=1)
    crossed = np.cumsum(np.abs(paths / np.sqrt(t)) >= c, axis=1) > 0
    np.testing.assert_allclose(crossed.mean(0), spent(t, 0.05), atol=0.0012)


def test_sequential_verdicts_keep_what_an_early_look_decided():
    # 2 comparisons, 2 looks; the first is decided at look 1 (p far below its level), the second only at look 2
    levels = look_levels([0.5, 1.0], 0.05, 2)
    t_p = np.array([[1e-9, 0.3], [0.9, 0.001]])
    codes, at = sequential_verdicts(t_p, t_p, np.full((2, 2), 10), np.ones((2, 2)), np.ones((2, 2)), True, levels)
    assert names(codes) == ["better", "better"] and at.tolist() == [0, 1]
    assert levels.shape == (2, 3) and levels[1, 2] < levels[1, 1] < 0.05
