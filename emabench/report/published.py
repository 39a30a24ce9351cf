"""The blog's published single run beside our seeds: only for runs of the seed study itself (regression on seed
001's ``make_regression`` data with the MLP). Pure functions of the per-run frame; nothing here applies elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from emabench.report import stats
from emabench.report.groups import iter_groups

# The blog's published single-run numbers. Source: the seed-001 blog post's section 4 tables, restated at the bottom
# of shared/REFERENCE.md ("Blog's reported result (one unseeded run)"): ONE unseeded run of the seed study at
# beta 0.999 that early stopping ended at epoch 97. The blog does not say over which epochs its validation-loss std
# was taken; ours is after the burn-in. Read-only.
PUBLISHED_RUN = MappingProxyType(
    {
        "source": "seed-001 blog post, section 4 (restated in shared/REFERENCE.md)",
        "beta": 0.999,
        "epochs": 97,
        "raw": MappingProxyType({"mse": 0.0055, "mae": 0.0581, "r2": 0.9946, "val_loss_std": 0.0023}),
        "ema": MappingProxyType({"mse": 0.0044, "mae": 0.0526, "r2": 0.9957, "val_loss_std": 0.0015}),
    }
)

# What makes a run part of the seed study: its task, data and model (config keys; a key a config predates takes the
# value shown, the engine's defaults). The blog's numbers say nothing about any other task, data set or model.
SEED_STUDY = MappingProxyType(
    {
        "task": "regression",
        "data.source": "make_regression",
        "model.name": "mlp",
        "data.n_samples": 2000,
        "data.n_features": 20,
        "data.noise": 0.1,
        "data.random_state": 42,
    }
)
DEFAULTS = MappingProxyType({"task": "regression", "data.source": "make_regression", "model.name": "mlp"})


def is_seed_study(per_run: pd.DataFrame) -> pd.Series:
    """Per row: the run is the seed study (:data:`SEED_STUDY`); a data key the config lacks counts as different."""
    mask = pd.Series(True, index=per_run.index)
    for key, wanted in SEED_STUDY.items():
        if key in per_run.columns:
            values = per_run[key].where(per_run[key].notna(), DEFAULTS.get(key))
        elif key in DEFAULTS:
            values = pd.Series(DEFAULTS[key], index=per_run.index)
        else:
            return pd.Series(False, index=per_run.index)
        if isinstance(wanted, str):
            mask &= values.astype(str) == wanted
        else:
            mask &= np.isclose(pd.to_numeric(values, errors="coerce").to_numpy(float), float(wanted))
    return mask


def reference_table(per_run: pd.DataFrame, by: Sequence[str], published: Any = PUBLISHED_RUN) -> pd.DataFrame:
    """The blog's single run beside our distribution, per seed-study group with ``raw`` and ``ema``: one row per
    quantity with the published value, our n/mean/CI/min/median/max and the percentile of the published value in ours.

    Only runs of the seed study (:func:`is_seed_study`); of those, the groups at the blog's beta when there are any
    (``ema.beta`` = 0.999), else every group. Empty when no run is the seed study."""
    per_run = per_run[is_seed_study(per_run)]
    if "ema.beta" in per_run.columns and len(per_run):
        at_beta = np.isclose(pd.to_numeric(per_run["ema.beta"], errors="coerce"), published["beta"])
        per_run = per_run[at_beta] if at_beta.any() else per_run
    rows: list[dict[str, Any]] = []
    for label, group in iter_groups(per_run, by) if len(per_run) else []:
        if {"raw", "ema"} <= set(group["model"]):
            rows += _group_rows(label, group, published)
    return pd.DataFrame(rows)


def _group_rows(label: str, group: pd.DataFrame, published: Any) -> list[dict[str, Any]]:
    runs = group.drop_duplicates("run_id")
    quantities = [("stop epoch", "", published["epochs"], runs.loc[runs["status"] != "diverged", "epochs"])]
    for model in ("raw", "ema"):
        values = group[group["model"] == model]
        for metric, value in published[model].items():
            quantities.append((metric, model, value, values[metric]))
    wide = group.pivot_table(index="seed", columns="model", values="mse", dropna=False)
    change = (wide["ema"] - wide["raw"]) / wide["raw"] * 100.0
    claimed = (published["ema"]["mse"] - published["raw"]["mse"]) / published["raw"]["mse"] * 100.0
    quantities.append(("MSE change %", "ema vs raw", claimed, change))
    rows = []
    for quantity, model, value, ours in quantities:
        data = pd.to_numeric(ours, errors="coerce").to_numpy(float)
        finite = data[np.isfinite(data)]
        summary = stats.summarize(finite)
        rows.append(
            {"group": label, "quantity": quantity, "model": model, "published": float(value)}
            | {k: summary[k] for k in ("n", "mean", "ci_low", "ci_high")}
            | {"min": _q(finite, 0), "median": _q(finite, 0.5), "max": _q(finite, 1)}
            | {"percentile": stats.percentile_of(float(value), finite)}
        )
    return rows


def _q(values: np.ndarray, q: float) -> float:
    return float(np.quantile(values, q)) if values.size else float("nan")
