"""Polyak–Juditsky on least squares: each model's excess risk on the held-out test set beside ordinary least squares'.

Reads the finished runs of ``configs/polyak.yaml`` (a linear model trained by constant-step SGD on
``make_regression``; ``swa`` is the uniform average of every iterate from the first step) in the folders given. For
each run it rebuilds the run's data exactly as the run did (:func:`emabench.tasks.data.make_dataset`, the same
holdout and split), fits OLS with an intercept on the run's training samples (numpy's ``lstsq``), and measures every
model's **excess risk** on the test inputs: the mean squared distance of its predictions (``predictions.npz``) from
the noiseless targets ``x·w*`` (``make_regression``'s ``coef``), i.e. its test MSE less the noise. The test MSE itself
(what ``metrics.csv`` and ``emabench report`` hold) adds the noise variance (``data.noise``²) and its sampling error,
which would swamp OLS's excess risk. Prints one row per model: mean, min and max over the seeds, and the ratio to
OLS's excess risk on the same run.

Run: ``.venv/bin/python benchmarks/polyak_ols.py runs/sweep-polyak-*``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import make_regression

from emabench.runs.folder import find_runs
from emabench.tasks.data import make_dataset, split_indices


def excess_risks(folder) -> dict[str, float]:
    """Every model's excess risk on this run's test set, and OLS's (key ``ols``)."""
    config = folder.read_config()
    data = config.data
    if data.source != "make_regression" or data.holdout <= 0 or data.split != "fixed" or data.scale_y:
        raise SystemExit(f"{folder.path}: needs make_regression data, a holdout, split: fixed and scale_y: false")
    dataset = make_dataset(data, "regression")
    x, y, coef = make_regression(
        n_samples=data.n_samples,
        n_features=data.n_features,
        noise=data.noise,
        random_state=data.random_state,
        coef=True,
        **({} if data.n_informative is None else {"n_informative": data.n_informative}),
    )
    _, test = split_indices(data.n_samples, data.holdout, data.split_random_state)
    if not np.allclose(dataset.y_test.numpy().ravel(), y[test].astype(np.float32)):
        raise SystemExit(f"{folder.path}: the rebuilt test set differs from the run's")
    clean = x[test] @ coef  # the noiseless targets of the test samples
    x_train = dataset.x_train.numpy().astype(np.float64)
    design = np.hstack([x_train, np.ones((len(x_train), 1))])
    weights, *_ = np.linalg.lstsq(design, dataset.y_train.numpy().astype(np.float64).ravel(), rcond=None)
    x_test = dataset.x_test.numpy().astype(np.float64)
    risks = {"ols": float(np.mean((x_test @ weights[:-1] + weights[-1] - clean) ** 2))}
    for model, predicted in folder.read_predictions().items():
        risks[model] = float(np.mean((np.asarray(predicted, dtype=np.float64).ravel() - clean) ** 2))
    return risks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="sweep or run folders of configs/polyak.yaml")
    args = parser.parse_args()
    rows = []
    for folder in find_runs(args.folders):
        if folder.is_done:
            risks = excess_risks(folder)
            rows += [{"run": folder.name, "model": m, "risk": r, "ratio": r / risks["ols"]} for m, r in risks.items()]
    if not rows:
        raise SystemExit("no finished runs in the folders given")
    table = pd.DataFrame(rows)
    seeds = table["run"].nunique()
    summary = table.groupby("model", sort=False).agg(
        excess_risk=("risk", "mean"),
        risk_min=("risk", "min"),
        risk_max=("risk", "max"),
        ratio_to_ols=("ratio", "mean"),
        ratio_min=("ratio", "min"),
        ratio_max=("ratio", "max"),
    )
    order = [m for m in ("ols", "swa", "ema", "raw") if m in summary.index]
    print(
        f"Excess risk on the test set (mean over {seeds} seeds, min and max), and its ratio to OLS's on the same run:\n"
    )
    print("| model | excess risk: mean (min–max) | ÷ OLS: mean (min–max) |")
    print("|---|---|---|")
    for model in [*order, *(m for m in summary.index if m not in order)]:
        r = summary.loc[model]
        print(
            f"| {model} | {r['excess_risk']:.3g} ({r['risk_min']:.3g}–{r['risk_max']:.3g}) | "
            f"{r['ratio_to_ols']:.3g} ({r['ratio_min']:.3g}–{r['ratio_max']:.3g}) |"
        )


if __name__ == "__main__":
    main()
