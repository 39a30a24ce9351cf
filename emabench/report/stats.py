"""Statistics across seeds: summaries, paired comparisons and the multi-seed report table.

Pure functions of arrays and data frames (numpy, scipy, pandas); no I/O, no printing.

Conventions shared by every function:

- **Non-finite values are dropped and counted.** NaN or ±inf (a diverged run) are removed before any statistic;
  in a paired comparison the whole pair goes. The count comes back as ``n_dropped`` (``{m}_n`` in the table), so a
  method that diverges more often cannot hide behind a cleaner mean: report the drop count with the mean.
- **Differences are ``other − baseline``.** Their sign is raw, not "improvement": for MSE a negative difference is
  better, for R² a positive one. Which direction is better is always passed in (``higher_is_better``, from the
  run's task: :class:`~emabench.tasks.base.MetricSpec`), never guessed from a metric's name. The relative
  difference uses ``|baseline|`` so its sign always matches the difference's.
- **Too little data gives NaN, never a warning**: a std needs n ≥ 2, a t-interval n ≥ 2, a Wilcoxon test at least
  one non-zero difference.

Columns of :func:`compare_models` (one row per group and compared model; ``{m}`` is each metric):

- the ``group_by`` columns, ``model`` (the compared model), ``baseline`` (the baseline model's name);
- ``n_seeds``: seeds that both models ran in this group; ``n_unpaired``: seeds only one of them ran (dropped);
- ``{m}_n``: pairs used for metric ``m`` (``n_seeds`` minus pairs with a non-finite value);
- ``baseline_{m}_mean/_std/_ci_low/_ci_high`` and ``{m}_mean/_std/_ci_low/_ci_high``: :func:`summarize` of each
  model over those same pairs (so ``{m}_mean − baseline_{m}_mean == {m}_diff_mean``);
- ``{m}_diff_mean/_diff_ci_low/_diff_ci_high``, ``{m}_rel_diff_pct``, ``{m}_p_ttest``, ``{m}_p_sign_flip``,
  ``{m}_p_wilcoxon``, ``{m}_wins``, ``{m}_win_rate``, ``{m}_win_ci_low/_win_ci_high``, ``{m}_skewness``:
  :func:`paired_comparison` of the model against the baseline.

Every interval in the table is at level ``1 − alpha`` (95% by default) and every p-value is that of ONE comparison,
unadjusted: which comparisons a report decides, and how it keeps its error rate over them, is
:mod:`emabench.report.verdicts`'.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as st

from emabench.report import paired, power

_COMPARISON_KEYS = ("diff_mean", "diff_ci_low", "diff_ci_high", "rel_diff_pct", "p_ttest", "p_sign_flip", "p_wilcoxon")
_COMPARISON_KEYS += ("wins", "win_rate", "win_ci_low", "win_ci_high", "skewness")


def _as_1d(values: Sequence[float] | np.ndarray | pd.Series, name: str = "values") -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _check_level(level: float, name: str) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {level}")


def _t_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Student-t interval for the mean of finite ``values``: ``mean ± t_{(1+c)/2, n−1} · s / √n``."""
    n = values.size
    if n < 2:
        return float("nan"), float("nan")
    mean = float(values.mean())
    half = float(st.t.ppf((1.0 + confidence) / 2.0, n - 1) * values.std(ddof=1) / np.sqrt(n))
    return mean - half, mean + half


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[..., np.ndarray] = np.mean,
    n_resamples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over the finite ``values``; deterministic for a given ``seed``.

    ``statistic`` must be vectorized like ``np.mean``: called as ``statistic(resamples, axis=1)`` on an
    ``(n_resamples, n)`` array. Fewer than two finite values give ``(nan, nan)``.
    """
    _check_level(confidence, "confidence")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    data = _as_1d(values)
    data = data[np.isfinite(data)]
    if data.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    resamples = data[rng.integers(0, data.size, size=(n_resamples, data.size))]
    estimates = np.asarray(statistic(resamples, axis=1), dtype=float)
    low, high = np.quantile(estimates, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    return float(low), float(high)


def summarize(
    values: Sequence[float] | np.ndarray | pd.Series,
    *,
    confidence: float = 0.95,
    ci: Literal["t", "bootstrap"] = "t",
    seed: int = 0,
) -> dict[str, float | int]:
    """``n``, ``n_dropped`` (non-finite values removed), ``mean``, ``std`` (ddof=1) and a CI for the mean.

    ``ci="t"`` gives the Student-t interval, ``ci="bootstrap"`` the percentile bootstrap of :func:`bootstrap_ci`
    (10 000 resamples, ``seed``). ``std`` and the interval are NaN below two values, ``mean`` NaN at zero.
    """
    _check_level(confidence, "confidence")
    if ci not in ("t", "bootstrap"):
        raise ValueError(f"ci must be 't' or 'bootstrap', got {ci!r}")
    data = _as_1d(values)
    finite = data[np.isfinite(data)]
    n = finite.size
    if ci == "t":
        low, high = _t_interval(finite, confidence)
    else:
        low, high = bootstrap_ci(finite, confidence=confidence, seed=seed)
    return {
        "n": n,
        "n_dropped": data.size - n,
        "mean": float(finite.mean()) if n else float("nan"),
        "std": float(finite.std(ddof=1)) if n >= 2 else float("nan"),
        "ci_low": low,
        "ci_high": high,
    }


def _finite_pairs(baseline: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if baseline.shape != other.shape:
        raise ValueError(f"paired arrays differ in length: {baseline.size} baseline vs {other.size} other")
    keep = np.isfinite(baseline) & np.isfinite(other)
    return baseline[keep], other[keep]


def _p_ttest(baseline: np.ndarray, other: np.ndarray) -> float:
    """Paired t-test p-value; a constant difference gives 0 (non-zero) or NaN (all zero) without scipy's warning."""
    diff = other - baseline
    if diff.size < 2:
        return float("nan")
    if np.all(diff == diff[0]):
        return 0.0 if diff[0] != 0 else float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # precision loss on nearly equal data; the p stays valid
        return float(st.ttest_rel(other, baseline).pvalue)


def _rel_diff_pct(baseline: np.ndarray, other: np.ndarray) -> float:
    usable = baseline != 0
    if not usable.any():
        return float("nan")
    return float(np.mean((other[usable] - baseline[usable]) / np.abs(baseline[usable])) * 100.0)


def holm(pvalues: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the input's order; NaN entries stay NaN and are not counted as tests.

    From the definition (Holm 1979): with the ``m`` finite p-values sorted, ``p_(1) <= … <= p_(m)``, hypothesis
    ``(i)`` is rejected at level α when ``p_(j) <= α / (m − j + 1)`` for every ``j <= i``; the adjusted p-value is
    the smallest α at which that happens, ``p̃_(i) = max_{j <= i} min(1, (m − j + 1) · p_(j))``. Rejecting where
    ``p̃ < α`` keeps the family-wise error rate (any false rejection among the ``m``) at most α, whatever the
    dependence between the tests.
    """
    p = _as_1d(pvalues, "pvalues")
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p[(p < 0) | (p > 1)][:3].tolist()}")
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    running = 0.0
    for rank, index in enumerate(sorted(finite, key=lambda i: p[i])):  # rank j − 1, ties in input order
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def paired_comparison(
    baseline: Sequence[float] | np.ndarray | pd.Series,
    other: Sequence[float] | np.ndarray | pd.Series,
    *,
    higher_is_better: bool,
    alpha: float = 0.05,
) -> dict[str, float | int]:
    """Compare ``other`` against ``baseline``, element i of each coming from the same seed: descriptive, unadjusted.

    Pairs where either value is non-finite are dropped (``n_dropped``); ``n`` pairs remain. Returned keys:
    ``diff_mean`` = mean of ``other − baseline`` with its ``1 − alpha`` t-interval ``diff_ci_low/high`` (it excludes
    0 exactly when the paired t-test has ``p < alpha``); ``rel_diff_pct`` = mean over pairs of
    ``(other − baseline) / |baseline|`` in percent (pairs with a zero baseline skipped); ``p_ttest``
    (``scipy.stats.ttest_rel``; a constant non-zero difference gives 0); ``p_sign_flip``
    (:func:`~emabench.report.paired.sign_flip_p`, the randomization test of the same mean) and ``p_wilcoxon``
    (:func:`~emabench.report.paired.signed_rank_p`, zeros dropped; NaN when every difference is 0), both on the
    differences rounded to the values' resolution (:func:`~emabench.report.paired.resolution_of`) so that ties stay
    tied; ``wins`` = pairs where ``other`` is strictly better in the direction ``higher_is_better`` says,
    ``win_rate = wins / n`` with its exact ``1 − alpha`` interval ``win_ci_low/high`` (the probability of
    improvement); ``skewness`` of the differences (:func:`~emabench.report.paired.skewness`, NaN below 3 pairs).
    """
    _check_level(alpha, "alpha")
    base_all, other_all = _as_1d(baseline, "baseline"), _as_1d(other, "other")
    base, oth = _finite_pairs(base_all, other_all)
    n = base.size
    diff = oth - base
    low, high = _t_interval(diff, 1.0 - alpha)
    resolution = paired.resolution_of(np.concatenate([base, oth]))
    wins = int(np.sum(oth > base if higher_is_better else oth < base))
    win_low, win_high = power.improvement_ci(wins, n, 1.0 - alpha)
    return {
        "n": n,
        "n_dropped": base_all.size - n,
        "diff_mean": float(diff.mean()) if n else float("nan"),
        "diff_ci_low": low,
        "diff_ci_high": high,
        "rel_diff_pct": _rel_diff_pct(base, oth),
        "p_ttest": _p_ttest(base, oth),
        "p_sign_flip": float(paired.sign_flip_p(diff, resolution)) if n else float("nan"),
        "p_wilcoxon": float(paired.signed_rank_p(diff, resolution)) if n else float("nan"),
        "wins": wins,
        "win_rate": wins / n if n else float("nan"),
        "win_ci_low": float(win_low),
        "win_ci_high": float(win_high),
        "skewness": float(paired.skewness(diff)) if n >= 3 else float("nan"),
    }


def percentile_of(value: float, distribution: Sequence[float] | np.ndarray | pd.Series) -> float:
    """Where ``value`` (e.g. a published single-run number) falls in ``distribution``, 0–100.

    ``scipy.stats.percentileofscore(kind="mean")`` over the finite entries: the mean of the strict (<) and weak
    (<=) percentages, so a value equal to the median of distinct values scores 50. NaN for a non-finite value or
    an empty distribution.
    """
    data = _as_1d(distribution, "distribution")
    data = data[np.isfinite(data)]
    if data.size == 0 or not np.isfinite(value):
        return float("nan")
    return float(st.percentileofscore(data, value, kind="mean"))


def stability(history: pd.DataFrame, column: str, burn_in: int) -> float:
    """Std (ddof=1) of ``history[column]`` over epochs ``> burn_in`` (``epoch`` is 1-based); NaN below two values.

    The seed study's stability claim is "std of validation loss over epochs" (raw 0.0023 vs EMA 0.0015); a
    ``burn_in`` keeps the initial descent, common to every model, from dominating that number. Non-finite
    entries are ignored.
    """
    if burn_in < 0:
        raise ValueError(f"burn_in must be >= 0, got {burn_in}")
    missing = [c for c in ("epoch", column) if c not in history.columns]
    if missing:
        raise ValueError(f"history lacks column(s) {missing}; it has {list(history.columns)}")
    values = history.loc[history["epoch"] > burn_in, column].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if values.size >= 2 else float("nan")


def _metric_columns(
    metric: str, higher_is_better: bool, base: np.ndarray, oth: np.ndarray, alpha: float
) -> dict[str, object]:
    """The ``{m}_*`` and ``baseline_{m}_*`` cells of one compare_models row."""
    kept_base, kept_oth = _finite_pairs(base, oth)
    row: dict[str, object] = {f"{metric}_n": kept_base.size}
    for prefix, values in ((f"baseline_{metric}", kept_base), (metric, kept_oth)):
        summary = summarize(values, confidence=1.0 - alpha)
        row.update({f"{prefix}_{k}": summary[k] for k in ("mean", "std", "ci_low", "ci_high")})
    comparison = paired_comparison(base, oth, higher_is_better=higher_is_better, alpha=alpha)
    row.update({f"{metric}_{k}": comparison[k] for k in _COMPARISON_KEYS})
    return row


def _by_seed(frame: pd.DataFrame, model: str, metrics: Sequence[str]) -> pd.DataFrame:
    rows = frame.loc[frame["model"] == model]
    duplicated = rows["seed"][rows["seed"].duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"model {model!r} has several rows for seed(s) {duplicated} in one group")
    return rows.set_index("seed")[list(metrics)]


def paired_frame(frame: pd.DataFrame, model: str, baseline: str, metrics: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """``model``'s and ``baseline``'s rows of ``frame`` joined by seed (index ``seed``, sorted; columns
    ``<m>__base`` and ``<m>__other`` per metric), and how many seeds only one of them ran."""
    base, oth = _by_seed(frame, baseline, metrics), _by_seed(frame, model, metrics)
    joined = base.add_suffix("__base").join(oth.add_suffix("__other"), how="inner").sort_index()
    return joined, len(set(base.index) ^ set(oth.index))


def _compare_group(
    frame: pd.DataFrame, model: str, baseline: str, metrics: Mapping[str, bool], alpha: float
) -> dict[str, object]:
    paired, unpaired = paired_frame(frame, model, baseline, list(metrics))
    row: dict[str, object] = {
        "model": model,
        "baseline": baseline,
        "n_seeds": len(paired),
        "n_unpaired": unpaired,
    }
    for m, higher in metrics.items():
        b, o = paired[f"{m}__base"].to_numpy(float), paired[f"{m}__other"].to_numpy(float)
        row.update(_metric_columns(m, higher, b, o, alpha))
    return row


def compare_models(
    runs: pd.DataFrame,
    *,
    group_by: Sequence[str],
    models: Sequence[str],
    metrics: Mapping[str, bool],
    baseline: str = "raw",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Every model in ``models`` (the baseline skipped) against ``baseline``, paired by ``seed`` within each group.

    ``metrics``: metric column → whether higher is better (from the runs' task, e.g.
    ``{m.name: m.higher_is_better for m in task.metrics}``).

    ``runs`` is tidy: one row per (run, model) with ``seed``, the ``group_by`` columns, ``model`` and the metric
    columns. Output: one row per group and model that has rows in that group, groups sorted, models in the
    given order; columns as listed in the module docstring. Intervals are at level ``1 − alpha``.
    """
    required = ["seed", "model", *group_by, *metrics]
    missing = [c for c in required if c not in runs.columns]
    if missing:
        raise ValueError(f"runs lacks column(s) {missing}; it has {list(runs.columns)}")
    if "model" in group_by:
        raise ValueError("group_by must not contain 'model': models are compared within a group")
    groups = runs.groupby(list(group_by), sort=True, dropna=False) if group_by else [((), runs)]
    rows = []
    for key, frame in groups:
        present = set(frame["model"])
        for model in (m for m in models if m != baseline and m in present):
            rows.append({**dict(zip(group_by, key)), **_compare_group(frame, model, baseline, metrics, alpha)})
    return pd.DataFrame(rows, columns=_output_columns(group_by, metrics))


def _output_columns(group_by: Sequence[str], metrics: Iterable[str]) -> list[str]:
    columns = [*group_by, "model", "baseline", "n_seeds", "n_unpaired"]
    for m in metrics:
        columns.append(f"{m}_n")
        for prefix in (f"baseline_{m}", m):
            columns += [f"{prefix}_{k}" for k in ("mean", "std", "ci_low", "ci_high")]
        columns += [f"{m}_{k}" for k in _COMPARISON_KEYS]
    return columns
