"""Tables derived from a run's history: pure functions of its rows (or of a data frame with those columns).

Which metrics a run has, and which direction of each is better, come from its task
(:class:`~emabench.tasks.base.Task`): never from a metric's name.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from emabench.tasks.metric_specs import MetricSet, MetricSpec

STABILITY_FROM_EPOCH = 10  # the seed's progress table starts at epoch 10; earlier epochs are the initial descent
BEST_ROW = "@best"  # metrics.csv's row of a model at its best validation epoch: ``raw@best``, ``ema@best``


def models_in(history: Any) -> list[str]:
    """Model prefixes present in a history (``raw`` first), read from its ``<model>_val_loss`` columns (a data frame,
    or the rows themselves)."""
    columns: Iterable[str] = history.columns if hasattr(history, "columns") else history[0].keys()
    models = [c.removesuffix("_val_loss") for c in columns if c.endswith("_val_loss")]
    return sorted(models, key=lambda m: (m != "raw", models.index(m)))


def improvement_pct(spec: MetricSpec, baseline: float, value: float) -> float:
    """The seed's table 4.3 "improvement", in percent, POSITIVE = BETTER in ``spec``'s direction: the relative
    change ``(value − baseline) / |baseline|``, negated for a metric where lower is better (MSE, MAE)."""
    if baseline == 0 or not (math.isfinite(baseline) and math.isfinite(value)):
        return float("nan")
    change = (value - baseline) / abs(baseline) * 100.0
    return change if spec.higher_is_better else 0.0 - change  # 0.0 - x: no "-0.0%" for the baseline itself


def final_metrics(
    history: Sequence[Mapping[str, float]], task: MetricSet, extra: Mapping[str, Any] | None = None
) -> list[dict[str, object]]:
    """``metrics.csv``: one row per model at the last epoch (the seed's final evaluation): ``model, epoch``, the
    task's final metrics on the validation set (``task.final_metrics``), ``<metric>_improvement_pct`` over raw
    (positive = better), ``val_loss_std``, and with a test set the same metrics measured on it, ``test_loss`` and
    ``test_<metric>``. ``history``: the run's rows, oldest first.

    ``extra`` (:class:`~emabench.train.loop.EpochRecord`'s ``final_extra``) adds what exists only at the end:
    ``posthoc`` models (post-hoc EMA syntheses, with their ``fit_error``), ``test`` metrics of every model, and
    ``best``: each model at its best validation epoch as a row ``<model>@best`` (that epoch, its validation metrics
    from the history, its test metrics). A metric missing from an entry is NaN. ``val_loss_std`` is the std (ddof=1)
    of that model's validation loss from epoch 10 on, the seed's stability figure without the initial descent that
    would otherwise dominate it (NaN for runs shorter than that).
    """
    extra = extra or {}
    last = history[-1]
    epoch = int(last["epoch"])
    baseline = {m: float(last.get(f"raw_{m}", math.nan)) for m in task.final_metrics}  # NaN: a run before metric m
    tested = extra.get("test", {})
    rows = []
    for model in models_in(history):
        values = {m: float(last.get(f"{model}_{m}", math.nan)) for m in task.final_metrics}
        settled = [float(row[f"{model}_val_loss"]) for row in history if row["epoch"] >= STABILITY_FROM_EPOCH]
        settled = [v for v in settled if not math.isnan(v)]
        std = statistics.stdev(settled) if len(settled) > 1 else float("nan")
        rows.append(_row(task, model, epoch, values, baseline, std) | _tested(task, tested.get(model)))
    for model, values in extra.get("posthoc", {}).items():
        row = _row(task, model, epoch, values, baseline, float("nan")) | _tested(task, tested.get(model))
        row["fit_error"] = float(values.get("fit_error", float("nan")))
        rows.append(row)
    by_epoch = {int(row["epoch"]): row for row in history}
    for model, values in extra.get("best", {}).items():
        at = by_epoch.get(int(values["epoch"]), {})
        chosen = {m: float(at.get(f"{model}_{m}", math.nan)) for m in task.final_metrics}
        rows.append(
            _row(task, f"{model}{BEST_ROW}", int(values["epoch"]), chosen, baseline, math.nan) | _tested(task, values)
        )
    return rows


def _tested(task: MetricSet, values: Mapping[str, float] | None) -> dict[str, float]:
    """A model's test-set metrics as ``test_loss`` and ``test_<metric>`` columns (none without a test set)."""
    if values is None:
        return {}
    return {f"test_{'loss' if spec.name == 'val_loss' else spec.name}": float(values.get(spec.name, math.nan))
            for spec in task.metrics}  # fmt: skip


def metrics_columns(rows: Sequence[Mapping[str, object]]) -> list[str]:
    """The columns of ``metrics.csv``: every key of every row, in order of first appearance."""
    return list(dict.fromkeys(key for row in rows for key in row))


def _row(
    task: MetricSet, model: str, epoch: int, values: dict[str, float], baseline: dict[str, float], std: float
) -> dict[str, object]:
    row: dict[str, object] = {"model": model, "epoch": epoch}
    row.update({m: float(values.get(m, float("nan"))) for m in task.final_metrics})
    for m in task.final_metrics:
        row[f"{m}_improvement_pct"] = improvement_pct(task.metric(m), baseline[m], float(values.get(m, math.nan)))
    row["val_loss_std"] = std
    return row
