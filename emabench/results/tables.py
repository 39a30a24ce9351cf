"""Tables derived from a run's history: pure functions of data frames."""

from __future__ import annotations

import pandas as pd

FINAL_METRICS = ("mse", "mae", "r2")
STABILITY_FROM_EPOCH = 10  # the seed's progress table starts at epoch 10; earlier epochs are the initial descent


def models_in(history: pd.DataFrame) -> list[str]:
    """Model prefixes present in a history (``raw`` first), read from its ``<model>_val_loss`` columns."""
    models = [c.removesuffix("_val_loss") for c in history.columns if c.endswith("_val_loss")]
    return sorted(models, key=lambda m: (m != "raw", models.index(m)))


def improvement_pct(metric: str, baseline: float, value: float) -> float:
    """The seed's table 4.3 "improvement": relative reduction of MSE/MAE, relative increase of R², in percent."""
    if baseline == 0:
        return float("nan")
    change = (value - baseline) / abs(baseline) * 100.0
    return change if metric == "r2" else 0.0 - change  # 0.0 - x: no "-0.0%" for the baseline itself


def final_metrics(history: pd.DataFrame, extra: dict[str, dict[str, float]] | None = None) -> pd.DataFrame:
    """One row per model at the last epoch (the seed's final evaluation), with the improvement over raw.

    ``extra`` adds models that only exist after training (post-hoc EMA syntheses, with their ``fit_error``).
    ``val_loss_std`` is the std (ddof=1) of that model's validation loss from epoch 10 on, the seed's stability
    figure without the initial descent that would otherwise dominate it (NaN for runs shorter than that).
    """
    last = history.iloc[-1]
    rows = []
    for model in models_in(history):
        values = {m: float(last[f"{model}_{m}"]) for m in FINAL_METRICS}
        settled = history.loc[history["epoch"] >= STABILITY_FROM_EPOCH, f"{model}_val_loss"].dropna()
        std = float(settled.std(ddof=1)) if len(settled) > 1 else float("nan")
        rows.append(_row(model, int(last["epoch"]), values, last, std))
    for model, values in (extra or {}).items():
        row = _row(model, int(last["epoch"]), values, last, float("nan"))
        row["fit_error"] = values.get("fit_error", float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def _row(model: str, epoch: int, values: dict[str, float], last: pd.Series, std: float) -> dict[str, object]:
    row: dict[str, object] = {"model": model, "epoch": epoch}
    row.update({m: float(values[m]) for m in FINAL_METRICS})
    for m in FINAL_METRICS:
        row[f"{m}_improvement_pct"] = improvement_pct(m, float(last[f"raw_{m}"]), float(values[m]))
    row["val_loss_std"] = std
    return row
