"""emabench.report.stats against independent numpy/scipy computations: summaries, paired comparisons (descriptive,
unadjusted), Holm."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from emabench.report.stats import (
    bootstrap_ci,
    compare_models,
    holm,
    paired_comparison,
    percentile_of,
    stability,
    summarize,
)

# Any warning (a RuntimeWarning from a degenerate case above all) fails the test.
pytestmark = pytest.mark.filterwarnings("error")

BASE = np.array([0.0055, 0.0061, 0.0049, 0.0058, 0.0052, 0.0066, 0.0057, 0.0050])
METRICS = {"mse": False, "mae": False, "r2": True}  # metric → higher is better, as the regression task says
OTHER = np.array([0.0044, 0.0059, 0.0047, 0.0049, 0.0053, 0.0055, 0.0046, 0.0048])


def t_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    half = st.t.ppf((1 + confidence) / 2, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values))
    return values.mean() - half, values.mean() + half


# --- summarize / bootstrap_ci ---------------------------------------------------------------------------------


def test_summarize_matches_numpy_and_scipy() -> None:
    s = summarize(BASE)
    assert s["n"] == 8 and s["n_dropped"] == 0
    assert s["mean"] == pytest.approx(np.mean(BASE), rel=1e-12)
    assert s["std"] == pytest.approx(np.std(BASE, ddof=1), rel=1e-12)
    low, high = t_ci(BASE)
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((low, high), rel=1e-12)
    scipy_low, scipy_high = st.t.interval(0.95, 7, loc=np.mean(BASE), scale=st.sem(BASE))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((scipy_low, scipy_high), rel=1e-12)


def test_summarize_other_confidence() -> None:
    s = summarize(BASE, confidence=0.9)
    assert (s["ci_low"], s["ci_high"]) == pytest.approx(t_ci(BASE, 0.9), rel=1e-12)


def test_summarize_drops_non_finite() -> None:
    s = summarize([1.0, np.nan, 2.0, np.inf, 4.0, -np.inf])
    assert s["n"] == 3 and s["n_dropped"] == 3
    assert s["mean"] == pytest.approx(7 / 3)
    assert s["std"] == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))


@pytest.mark.parametrize("values", [[], [np.nan], [0.3], [np.nan, 0.3]])
def test_summarize_below_two_values_is_nan_without_warning(values: list[float]) -> None:
    s = summarize(values)
    finite = [v for v in values if np.isfinite(v)]
    assert s["n"] == len(finite)
    assert s["mean"] == pytest.approx(finite[0]) if finite else np.isnan(s["mean"])
    assert np.isnan(s["std"]) and np.isnan(s["ci_low"]) and np.isnan(s["ci_high"])


def test_summarize_two_values() -> None:
    s = summarize([1.0, 3.0])
    assert s["std"] == pytest.approx(np.sqrt(2))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx(t_ci(np.array([1.0, 3.0])))


def test_summarize_bootstrap_option_uses_bootstrap_ci() -> None:
    s = summarize(BASE, ci="bootstrap", seed=3)
    assert (s["ci_low"], s["ci_high"]) == bootstrap_ci(BASE, seed=3)
    with pytest.raises(ValueError, match="ci must be"):
        summarize(BASE, ci="bca")  # type: ignore[arg-type]


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    data = np.random.default_rng(7).normal(size=30)
    assert bootstrap_ci(data, seed=0) == bootstrap_ci(data, seed=0)
    assert bootstrap_ci(data, seed=0) != bootstrap_ci(data, seed=1)


def test_bootstrap_agrees_with_normal_theory_on_a_large_sample() -> None:
    data = np.random.default_rng(11).normal(loc=2.0, scale=1.5, size=400)
    low, high = bootstrap_ci(data, n_resamples=20000, seed=0)
    half = st.norm.ppf(0.975) * np.std(data, ddof=1) / np.sqrt(data.size)
    assert low == pytest.approx(data.mean() - half, abs=0.03 * half + 0.01)
    assert high == pytest.approx(data.mean() + half, abs=0.03 * half + 0.01)
    assert low < data.mean() < high


def test_bootstrap_other_statistic_and_quantiles() -> None:
    data = np.array([1.0, 2.0, 3.0, 10.0, 11.0])
    low, high = bootstrap_ci(data, statistic=np.median, n_resamples=5000, seed=0)
    # reproduce the documented recipe independently: index resampling with default_rng(seed), percentile bounds
    idx = np.random.default_rng(0).integers(0, 5, size=(5000, 5))
    medians = np.median(data[idx], axis=1)
    assert (low, high) == pytest.approx(tuple(np.quantile(medians, [0.025, 0.975])))
    assert bootstrap_ci([4.0, 4.0, 4.0]) == (4.0, 4.0)


def test_bootstrap_edge_cases() -> None:
    assert all(np.isnan(bootstrap_ci([1.0])))
    assert all(np.isnan(bootstrap_ci([1.0, np.nan])))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(BASE, confidence=1.0)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci(BASE, n_resamples=0)


# --- paired_comparison ----------------------------------------------------------------------------------------


def test_paired_comparison_matches_scipy() -> None:
    r = paired_comparison(BASE, OTHER, higher_is_better=False)
    diff = OTHER - BASE
    assert r["n"] == 8 and r["n_dropped"] == 0
    assert r["diff_mean"] == pytest.approx(diff.mean(), rel=1e-12)
    assert (r["diff_ci_low"], r["diff_ci_high"]) == pytest.approx(t_ci(diff), rel=1e-12)
    assert r["rel_diff_pct"] == pytest.approx(np.mean(diff / BASE) * 100, rel=1e-12)
    assert r["p_ttest"] == pytest.approx(st.ttest_rel(OTHER, BASE).pvalue, rel=1e-12)
    assert r["p_wilcoxon"] == pytest.approx(st.wilcoxon(OTHER, BASE).pvalue, rel=1e-12)
    assert r["wins"] == int(np.sum(OTHER < BASE)) == 7
    assert r["win_rate"] == pytest.approx(7 / 8)
    share = st.binomtest(7, 8).proportion_ci(method="exact")
    assert (r["win_ci_low"], r["win_ci_high"]) == pytest.approx((share.low, share.high), rel=1e-10)
    assert r["skewness"] == pytest.approx(st.skew(diff, bias=False), rel=1e-10)
    signs = np.array(list(itertools.product((1, -1), repeat=8)))
    assert r["p_sign_flip"] == pytest.approx(np.mean(np.abs(signs @ np.abs(diff)) >= abs(diff.sum()) - 1e-15))


def test_ci_level_follows_alpha() -> None:
    r = paired_comparison(BASE, OTHER, alpha=0.1, higher_is_better=False)
    assert (r["diff_ci_low"], r["diff_ci_high"]) == pytest.approx(t_ci(OTHER - BASE, 0.9), rel=1e-12)
    # the 1 − alpha interval excludes 0 exactly when the paired t-test is significant at alpha
    assert (r["diff_ci_high"] < 0) == (r["p_ttest"] < 0.1)


def seeded_pair(shift: float, noise: float, n: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    baseline = 0.0055 + 0.001 * rng.standard_normal(n)
    return baseline, baseline + shift + noise * rng.standard_normal(n)


def test_known_improvement_has_small_p_values_and_every_win() -> None:
    baseline, other = seeded_pair(shift=-0.001, noise=0.0002)
    r = paired_comparison(baseline, other, higher_is_better=False)
    assert r["p_ttest"] < 1e-6 and r["p_wilcoxon"] < 1e-4 and r["p_sign_flip"] < 1e-5 and r["wins"] == 20
    assert r["win_ci_low"] > 0.8 and r["win_ci_high"] == 1.0


def test_symmetric_noise_has_large_p_values() -> None:
    baseline = 0.0055 + 0.001 * np.random.default_rng(1).standard_normal(20)
    noise = 0.0003 * np.random.default_rng(2).standard_normal(10)
    r = paired_comparison(baseline, baseline + np.r_[noise, -noise], higher_is_better=False)
    assert r["diff_mean"] == pytest.approx(0.0, abs=1e-15)
    assert r["p_ttest"] > 0.9 and r["p_wilcoxon"] > 0.5 and r["p_sign_flip"] > 0.9 and r["wins"] == 10


def test_higher_is_better_direction_for_r2() -> None:
    baseline, other = seeded_pair(shift=+0.001, noise=0.0002)
    assert paired_comparison(baseline, other, higher_is_better=True)["wins"] == 20
    assert paired_comparison(baseline, other, higher_is_better=False)["wins"] == 0


def test_relative_difference_sign_follows_difference_for_negative_baseline() -> None:
    r = paired_comparison([-2.0, -4.0], [-1.0, -3.0], higher_is_better=True)
    assert r["rel_diff_pct"] == pytest.approx((50.0 + 25.0) / 2)
    assert np.isnan(paired_comparison([0.0, 0.0], [1.0, 2.0], higher_is_better=False)["rel_diff_pct"])


@pytest.mark.parametrize("n", [0, 1, 2])
def test_tiny_samples_give_nan_and_no_warning(n: int) -> None:
    r = paired_comparison(BASE[:n], OTHER[:n], higher_is_better=False)
    assert r["n"] == n
    assert np.isnan(r["diff_ci_low"]) == (n < 2) and np.isnan(r["p_ttest"]) == (n < 2)
    if n == 0:
        assert np.isnan(r["diff_mean"]) and np.isnan(r["win_rate"]) and np.isnan(r["p_wilcoxon"])
    if n == 1:
        assert r["diff_mean"] == pytest.approx(OTHER[0] - BASE[0])
        assert r["p_wilcoxon"] == pytest.approx(st.wilcoxon(OTHER[:1], BASE[:1]).pvalue)
    if n == 2:
        assert r["p_ttest"] == pytest.approx(st.ttest_rel(OTHER[:2], BASE[:2]).pvalue)
        assert r["p_wilcoxon"] == pytest.approx(st.wilcoxon(OTHER[:2], BASE[:2]).pvalue)


def test_all_zero_differences() -> None:
    r = paired_comparison(BASE, BASE.copy(), higher_is_better=False)
    assert np.isnan(r["p_ttest"]) and np.isnan(r["p_wilcoxon"])
    assert r["diff_mean"] == 0 and r["wins"] == 0 and r["rel_diff_pct"] == 0
    assert (r["diff_ci_low"], r["diff_ci_high"]) == (0.0, 0.0)
    assert r["p_sign_flip"] == 1.0


def test_constant_nonzero_difference() -> None:
    baseline = np.arange(1.0, 11.0)
    r = paired_comparison(baseline, baseline - 0.5, higher_is_better=False)
    assert r["p_ttest"] == 0.0
    assert r["p_wilcoxon"] == pytest.approx(2 / 2**10) and r["p_sign_flip"] == pytest.approx(2 / 2**10)


def test_nan_pairs_are_dropped_and_counted() -> None:
    baseline, other = BASE.copy(), OTHER.copy()
    baseline[1], other[4], other[6] = np.nan, np.inf, np.nan
    r = paired_comparison(baseline, other, higher_is_better=False)
    keep = np.ones(8, bool)
    keep[[1, 4, 6]] = False
    clean = paired_comparison(BASE[keep], OTHER[keep], higher_is_better=False)
    assert r["n"] == 5 and r["n_dropped"] == 3
    assert {k: v for k, v in r.items() if k not in ("n_dropped",)} == {
        k: v for k, v in clean.items() if k not in ("n_dropped",)
    }


def test_paired_comparison_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        paired_comparison([1.0, 2.0], [1.0], higher_is_better=False)
    with pytest.raises(ValueError, match="alpha"):
        paired_comparison([1.0, 2.0], [1.0, 2.0], alpha=0.0, higher_is_better=False)
    with pytest.raises(ValueError, match="one-dimensional"):
        paired_comparison([[1.0, 2.0]], [[1.0, 2.0]], higher_is_better=False)


# --- percentile_of --------------------------------------------------------------------------------------------


def test_percentile_of_matches_scipy() -> None:
    dist = np.array([0.0041, 0.0044, 0.0047, 0.0050, 0.0050, 0.0053, 0.0058, 0.0062])
    for value in (0.0030, 0.0044, 0.0050, 0.0055, 0.0070):
        assert percentile_of(value, dist) == pytest.approx(st.percentileofscore(dist, value, kind="mean"))
    assert percentile_of(0.0030, dist) == 0.0 and percentile_of(0.0070, dist) == 100.0
    assert percentile_of(0.0050, dist) == pytest.approx(50.0)


def test_percentile_of_ignores_nan_and_handles_empty() -> None:
    assert percentile_of(2.5, [1.0, 2.0, np.nan, 3.0, 4.0]) == pytest.approx(50.0)
    assert np.isnan(percentile_of(2.5, []))
    assert np.isnan(percentile_of(np.nan, [1.0, 2.0]))


# --- stability ------------------------------------------------------------------------------------------------


def make_history(n_epochs: int = 10) -> pd.DataFrame:
    epochs = np.arange(1, n_epochs + 1)
    return pd.DataFrame({"epoch": epochs, "raw_val_loss": 1.0 / epochs + 0.01 * np.sin(epochs)})


def test_stability_after_burn_in() -> None:
    history = make_history()
    values = history["raw_val_loss"].to_numpy()
    assert stability(history, "raw_val_loss", burn_in=3) == pytest.approx(np.std(values[3:], ddof=1))
    assert stability(history, "raw_val_loss", burn_in=0) == pytest.approx(np.std(values, ddof=1))
    assert np.isnan(stability(history, "raw_val_loss", burn_in=9))
    assert np.isnan(stability(history, "raw_val_loss", burn_in=20))


def test_stability_ignores_nan_and_validates() -> None:
    history = make_history()
    history.loc[5, "raw_val_loss"] = np.nan
    expected = np.std(history["raw_val_loss"].to_numpy()[[2, 3, 4, 6, 7, 8, 9]], ddof=1)
    assert stability(history, "raw_val_loss", burn_in=2) == pytest.approx(expected)
    with pytest.raises(ValueError, match="ema_val_loss"):
        stability(history, "ema_val_loss", burn_in=0)
    with pytest.raises(ValueError, match="burn_in"):
        stability(history, "raw_val_loss", burn_in=-1)


# --- compare_models -------------------------------------------------------------------------------------------


def make_runs() -> pd.DataFrame:
    """Two betas × three models × seeds 0–6; beta 0.999 lacks swa's seed 6 and has one NaN ema MSE (seed 2)."""
    rows = []
    for beta in (0.999, 0.99):
        for seed in range(7):
            raw = 0.0050 + 0.0002 * seed + (0.0001 if beta == 0.99 else 0.0)
            values = {"raw": raw, "ema": raw - 0.0008 - 0.00003 * seed, "swa": raw + 0.00001 * (-1) ** seed}
            for model, mse in values.items():
                if beta == 0.999 and model == "swa" and seed == 6:
                    continue
                row = {"run_id": f"b{beta}-s{seed}", "seed": seed, "beta": beta, "model": model}
                row.update(mse=mse, mae=10 * mse, r2=1.0 - mse)
                rows.append(row)
    frame = pd.DataFrame(rows)
    frame.loc[(frame.beta == 0.999) & (frame.seed == 2) & (frame.model == "ema"), "mse"] = np.nan
    return frame


def test_compare_models_layout() -> None:
    table = compare_models(make_runs(), group_by=["beta"], models=["raw", "ema", "swa"], metrics=METRICS)
    assert list(table[["beta", "model"]].itertuples(index=False, name=None)) == [
        (0.99, "ema"),
        (0.99, "swa"),
        (0.999, "ema"),
        (0.999, "swa"),
    ]
    expected_mse = ["mse_n"] + [
        f"{p}_{k}" for p in ("baseline_mse", "mse") for k in ("mean", "std", "ci_low", "ci_high")
    ]
    expected_mse += [
        f"mse_{k}"
        for k in (
            "diff_mean",
            "diff_ci_low",
            "diff_ci_high",
            "rel_diff_pct",
            "p_ttest",
            "p_sign_flip",
            "p_wilcoxon",
            "wins",
            "win_rate",
            "win_ci_low",
            "win_ci_high",
            "skewness",
        )
    ]
    assert list(table.columns[:5]) == ["beta", "model", "baseline", "n_seeds", "n_unpaired"]
    assert list(table.columns[5 : 5 + len(expected_mse)]) == expected_mse
    assert len(table.columns) == 5 + 3 * len(expected_mse)
    assert set(table["baseline"]) == {"raw"}


def test_compare_models_cells() -> None:
    runs = make_runs()
    table = compare_models(runs, group_by=["beta"], models=["ema", "swa"], metrics=METRICS).set_index(["beta", "model"])
    seeds = np.arange(7)
    raw99 = 0.0050 + 0.0002 * seeds + 0.0001
    ema99 = raw99 - 0.0008 - 0.00003 * seeds
    row = table.loc[(0.99, "ema")]
    assert row["n_seeds"] == 7 and row["n_unpaired"] == 0 and row["mse_n"] == 7
    assert row["mse_diff_mean"] == pytest.approx(np.mean(ema99 - raw99), rel=1e-12)
    assert row["baseline_mse_mean"] == pytest.approx(raw99.mean(), rel=1e-12)
    assert row["mse_std"] == pytest.approx(np.std(ema99, ddof=1), rel=1e-12)
    assert row["mse_p_ttest"] == pytest.approx(st.ttest_rel(ema99, raw99).pvalue, rel=1e-9)
    assert row["mse_p_wilcoxon"] == pytest.approx(st.wilcoxon(ema99, raw99).pvalue, rel=1e-12)
    assert row["mse_rel_diff_pct"] == pytest.approx(np.mean((ema99 - raw99) / raw99) * 100, rel=1e-12)
    assert row["mse_wins"] == 7 and row["mse_win_rate"] == 1.0
    assert row["r2_wins"] == 7  # r2 = 1 − mse: higher is better
    assert row["mae_diff_mean"] == pytest.approx(10 * row["mse_diff_mean"], rel=1e-9)
    assert row["mse_mean"] - row["baseline_mse_mean"] == pytest.approx(row["mse_diff_mean"], rel=1e-9)


def test_compare_models_unpaired_seeds_and_nan_metrics() -> None:
    table = compare_models(make_runs(), group_by=["beta"], models=["ema", "swa"], metrics=METRICS).set_index(
        ["beta", "model"]
    )
    swa = table.loc[(0.999, "swa")]
    assert swa["n_seeds"] == 6 and swa["n_unpaired"] == 1 and swa["mse_n"] == 6
    assert swa["mse_wins"] == 3
    ema = table.loc[(0.999, "ema")]
    assert ema["n_seeds"] == 7 and ema["mse_n"] == 6 and ema["mae_n"] == 7
    seeds = np.array([0, 1, 3, 4, 5, 6])
    raw = 0.0050 + 0.0002 * seeds
    assert ema["baseline_mse_mean"] == pytest.approx(raw.mean(), rel=1e-12)  # baseline over the same pairs
    assert ema["mse_diff_mean"] == pytest.approx(np.mean(-0.0008 - 0.00003 * seeds), rel=1e-9)


def test_compare_models_without_groups_and_missing_baseline() -> None:
    runs = make_runs()
    one = compare_models(runs[runs.beta == 0.99], group_by=[], models=["ema"], metrics=METRICS)
    grouped = compare_models(runs, group_by=["beta"], models=["ema"], metrics=METRICS)
    pd.testing.assert_series_equal(
        one.iloc[0].drop(["model"]), grouped.iloc[0].drop(["beta", "model"]), check_names=False
    )
    no_raw = compare_models(runs[runs.model != "raw"], group_by=["beta"], models=["ema"], metrics=METRICS)
    assert list(no_raw["n_seeds"]) == [0, 0] and list(no_raw["n_unpaired"]) == [7, 7]
    assert list(no_raw["mse_n"]) == [0, 0] and no_raw["mse_p_ttest"].isna().all()


def test_compare_models_rejects_bad_frames() -> None:
    runs = make_runs()
    with pytest.raises(ValueError, match="lacks column"):
        compare_models(runs.drop(columns="mae"), group_by=["beta"], models=["ema"], metrics=METRICS)
    with pytest.raises(ValueError, match="several rows for seed"):
        compare_models(runs, group_by=[], models=["ema"], metrics=METRICS)  # both betas pooled: seeds repeat
    with pytest.raises(ValueError, match="group_by"):
        compare_models(runs, group_by=["model"], models=["ema"], metrics=METRICS)


def test_compare_models_empty_result_keeps_columns() -> None:
    table = compare_models(make_runs(), group_by=["beta"], models=["polyak"], metrics={"mse": False})
    assert table.empty and "mse_p_sign_flip" in table.columns


# --- Holm–Bonferroni ------------------------------------------------------------------------------------------


def holm_statsmodels_formula(p: np.ndarray) -> np.ndarray:
    """statsmodels' ``multipletests(method="holm")`` restated (statsmodels/stats/multitest.py): sort, multiply the
    i-th smallest by ``m − i`` (0-based), running maximum, clip at 1, back to the input order."""
    order = np.argsort(p)
    corrected = np.maximum.accumulate(p[order] * np.arange(p.size, 0, -1))
    corrected[corrected > 1] = 1
    return corrected[order.argsort()]


def test_holm_hand_computed_case() -> None:
    # m = 5, sorted 0.001 0.01 0.02 0.03 0.2 → ×5, ×4, ×3, ×2, ×1 = 0.005 0.04 0.06 0.06 0.2; the running maximum
    # keeps them (0.06 ≥ 0.06): 0.005, 0.04, 0.06, 0.06, 0.2 — in the input's order.
    p = np.array([0.02, 0.001, 0.2, 0.03, 0.01])
    np.testing.assert_allclose(holm(p), [0.06, 0.005, 0.2, 0.06, 0.04], rtol=1e-12)
    # step-down monotonicity: a later p whose own product is smaller takes the earlier maximum
    np.testing.assert_allclose(holm([0.01, 0.012, 0.5]), [0.03, 0.03, 0.5], rtol=1e-12)
    # capped at 1, and a single test is left as it is
    np.testing.assert_allclose(holm([0.4, 0.6]), [0.8, 0.8], rtol=1e-12)
    assert holm([0.3]).tolist() == [0.3]


def test_holm_matches_statsmodels_formula_on_random_families() -> None:
    rng = np.random.default_rng(5)
    for m in (1, 2, 7, 40, 168):
        p = np.concatenate([rng.uniform(0, 1, m - m // 4), rng.uniform(0, 1e-3, m // 4)])
        np.testing.assert_allclose(holm(p), holm_statsmodels_formula(p), rtol=1e-12, atol=0)
    ties = np.array([0.01, 0.01, 0.04, 0.04, 0.5])
    np.testing.assert_allclose(holm(ties), holm_statsmodels_formula(ties), rtol=1e-12)


def test_holm_controls_family_wise_error_under_the_null() -> None:
    # 2000 families of 20 true nulls (uniform p-values): Holm rejects anything in at most ~5% of them
    rng = np.random.default_rng(0)
    families = rng.uniform(size=(2000, 20))
    any_rejected = np.mean([np.any(holm(row) < 0.05) for row in families])
    uncorrected = np.mean(np.any(families < 0.05, axis=1))
    assert any_rejected <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 2000)  # within 3 standard errors of α
    assert uncorrected > 0.6  # 1 − 0.95**20 ≈ 0.64 without the correction


def test_holm_leaves_nan_out_of_the_family() -> None:
    adjusted = holm([0.01, np.nan, 0.04])
    assert np.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2]], [0.02, 0.04])  # m = 2, not 3
    assert holm([]).size == 0
    with pytest.raises(ValueError, match="p-values"):
        holm([0.5, 1.5])
