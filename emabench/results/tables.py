"""Tables derived from a run's history: pure functions of data frames.

Which metrics a run has, and which direction of each is better, come from its task
(:class:`~emabench.tasks.base.Task`): never from a metric's name.
"""

from __future__ import annotations

import math

import pandas as pd

from emabench.tasks.base import MetricSpec, Task

STABILITY_FROM_EPOCH = 10  # the seed's progress table starts at epoch 10; earlier epochs are the initial descent


def models_in(history: pd.DataFrame) -> list[str]:
    """Model prefixes present in a history (``raw`` first), read from its ``<model>_val_loss`` columns."""
    models = [c.removesuffix("_val_loss") for c in history.columns if c.endswith("_val_loss")]
    return sorted(models, key=lambda m: (m != "raw", models.index(m)))


def improvement_pct(spec: MetricSpec, baseline: float, value: float) -> float:
    """The seed's table 4.3 "improvement", in percent, POSITIVE = BETTER in ``spec``'s direction: the relative
    change ``(value − baseline) / |baseline|``, negated for a metric where lower is better (MSE, MAE)."""
    if baseline == 0 or not (math.isfinite(baseline) and math.isfinite(value)):
        return float("nan")
    change = (value - baseline) / abs(baseline) * 100.0
    return change if spec.higher_is_better else 0.0 - change  # 0.0 - x: no "-0.0%" for the baseline itself


def final_metrics(history: pd.DataFrame, task: Task, extra: dict[str, dict[str, float]] | None = None) -> pd.DataFrame:
    """``metrics.csv``: one row per model at the last epoch (the seed's final evaluation): ``model, epoch``, the
    task's final metrics (``task.final_metrics``), ``<metric>_improvement_pct`` over raw (positive = better),
    ``val_loss_std``, and ``fit_error`` when ``extra`` is given.

    ``extra`` adds models that only exist after training (post-hoc EMA syntheses, with their ``fit_error``); a metric
    missing from an ``extra`` entry is NaN. ``val_loss_std`` is the std (ddof=1) of that model's validation loss from
    epoch 10 on, the seed's stability figure without the initial descent that would otherwise dominate it (NaN for
    runs shorter than that).
    """
    last = history.iloc[-1]
    epoch = int(last["epoch"])
    baseline = {m: float(last[f"raw_{m}"]) for m in task.final_metrics}
    rows = []
    for model in models_in(history):
        values = {m: float(last[f"{model}_{m}"]) for m in task.final_metrics}
        settled = history.loc[history["epoch"] >= STABILITY_FROM_EPOCH, f"{model}_val_loss"].dropna()
        std = float(settled.std(ddof=1)) if len(settled) > 1 else float("nan")
        rows.append(_row(task, model, epoch, values, baseline, std))
    for model, values in (extra or {}).items():
        row = _row(task, model, epoch, values, baseline, float("nan"))
        row["fit_error"] = float(values.get("fit_error", float("nan")))
        rows.append(row)
    return pd.DataFrame(rows)


def _row(
    task: Task, model: str, epoch: int, values: dict[str, float], baseline: dict[str, float], std: float
) -> dict[str, object]:
    row: dict[str, object] = {"model": model, "epoch": epoch}
    row.update({m: float(values.get(m, float("nan"))) for m in task.final_metrics})
    for m in task.final_metrics:
        row[f"{m}_improvement_pct"] = improvement_pct(task.metric(m), baseline[m], float(values.get(m, math.nan)))
    row["val_loss_std"] = std
    return row
