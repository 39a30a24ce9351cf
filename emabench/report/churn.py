"""Churn: how often models trained with different seeds disagree on the same test samples (prediction churn,
Milani Fard et al. 2016; Bhojanapalli et al. 2021). For a model (raw, ema, …) and a group of runs that differ only in
their seed, with ``ŷ_s(i)`` the class seed ``s``'s model predicts for test sample ``i`` (the argmax of its
probabilities in ``predictions.npz``):

    ``churn = mean over seed pairs s < t of (1/n) · Σ_i [ŷ_s(i) ≠ ŷ_t(i)]``

a share in [0, 1], lower is steadier. Averaging is expected to lower it. It is defined only when the seeds share one
test set: under ``data.split: per_seed`` with a holdout every seed drew its own, and the table says so instead of a
number. Descriptive: the pairs share seeds, so no interval is given. Pure functions of arrays and frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from emabench.report.groups import iter_groups, model_order

CHURN_COLUMNS = ("group", "model", "n_seeds", "n_pairs", "test_samples", "churn", "churn_min", "churn_max", "note")
PER_SEED_NOTE = "each seed drew its own test set: data.split is per_seed"


def pairwise_disagreement(labels: np.ndarray) -> np.ndarray:
    """The share of samples on which each pair of rows of ``labels`` ``(seeds, n)`` differs, pairs ``s < t`` in
    order: ``(seeds·(seeds − 1)/2,)``."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (seeds, samples), got shape {labels.shape}")
    first, second = np.triu_indices(labels.shape[0], k=1)
    return (labels[first] != labels[second]).mean(axis=1) if first.size else np.zeros(0)


def shares_test_set(group: pd.DataFrame) -> bool:
    """Whether the runs of ``group`` were measured on one test set: not when they drew their own splits
    (``data.split: per_seed``) and a holdout from them (a source's own test part is every seed's)."""
    if "data.split" not in group.columns:
        return True
    per_seed = group["data.split"].astype(str).eq("per_seed")
    holdout = pd.to_numeric(group.get("data.holdout", pd.Series(0.0, index=group.index)), errors="coerce").fillna(0)
    return not bool((per_seed & (holdout > 0)).any())


def churn_table(
    per_run: pd.DataFrame, predictions: Mapping[str, Mapping[str, np.ndarray]], by: Sequence[str]
) -> pd.DataFrame:
    """Per group and model with test-set predictions: the seeds and pairs used, the test samples, ``churn`` (the
    mean over pairs) and its smallest and largest pair; NaN with a ``note`` where the seeds do not share a test set.
    Diverged runs are left out. Columns: the ``by`` keys, then :data:`CHURN_COLUMNS`."""
    rows = []
    for label, group in iter_groups(per_run, by):
        runs = group.drop_duplicates("run_id")
        runs = runs[(runs["status"] != "diverged") & runs["run_id"].isin(list(predictions))]
        if runs.empty:
            continue
        keys = {k: runs.iloc[0][k] for k in by}
        shared = shares_test_set(runs)
        for model in model_order(group):
            labels = [predictions[run][model] for run in runs["run_id"] if model in predictions[run]]
            if labels:
                rows.append(keys | {"group": label, "model": model} | _churn(labels, shared))
    return pd.DataFrame(rows, columns=[*by, *CHURN_COLUMNS])


def _churn(labels: list[np.ndarray], shared: bool) -> dict[str, object]:
    """One row's numbers from the seeds' predicted classes (NaN and a note when they were not on one test set)."""
    sizes = {len(a) for a in labels}
    row: dict[str, object] = {"n_seeds": len(labels), "test_samples": max(sizes), "note": ""}
    if not shared or len(sizes) > 1:
        note = PER_SEED_NOTE if not shared else "the seeds' test sets differ in size"
        return row | {"n_pairs": 0, "churn": np.nan, "churn_min": np.nan, "churn_max": np.nan, "note": note}
    shares = pairwise_disagreement(np.stack(labels))
    if not shares.size:
        return row | {"n_pairs": 0, "churn": np.nan, "churn_min": np.nan, "churn_max": np.nan}
    return (
        row
        | {"n_pairs": int(shares.size), "churn": float(shares.mean())}
        | {
            "churn_min": float(shares.min()),
            "churn_max": float(shares.max()),
        }
    )
