"""A task's metrics and the direction of each, without torch: what the tables and the report read of a task.

:class:`MetricSet` is a task as the results see it (its name, its metrics, its figure's metric);
:class:`~emabench.tasks.base.Task` adds the loss and the evaluation the engine trains with. Kept free of torch so a
run folder written by a user's own loop (:mod:`emabench.track`) gets the built-in tasks' directions without it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """A validation metric: its column name, which direction is better, and how to label it for people."""

    name: str
    higher_is_better: bool
    label: str

    def better(self, new: float, old: float) -> bool:
        """``new`` beats ``old`` in this metric's direction."""
        return new > old if self.higher_is_better else new < old


VAL_LOSS = MetricSpec("val_loss", higher_is_better=False, label="validation loss")

REGRESSION_METRICS = (
    VAL_LOSS,
    MetricSpec("mse", higher_is_better=False, label="MSE"),
    MetricSpec("mae", higher_is_better=False, label="MAE"),
    MetricSpec("r2", higher_is_better=True, label="R²"),
)
CLASSIFICATION_METRICS = (
    VAL_LOSS,
    MetricSpec("accuracy", higher_is_better=True, label="accuracy"),
    MetricSpec("f1_macro", higher_is_better=True, label="macro-F1"),
    MetricSpec("ece", higher_is_better=False, label="ECE"),
)
BUILTIN_METRICS = {"regression": REGRESSION_METRICS, "classification": CLASSIFICATION_METRICS}
# The built-in tasks' equivalence margins (see MetricSet), kept by a task declared with the same headline metric.
BUILTIN_MARGINS: dict[str, float | str] = {"regression": "1%", "classification": 0.005}  # 0.005: half a point


class MetricSet:
    """A task's name, its metrics (``val_loss`` first; the metrics.csv and report columns, in order) and the metric
    of its per-epoch figure."""

    name: str
    metrics: tuple[MetricSpec, ...]
    plot_metric: str  # the per-epoch figure beside the loss (r2.png, accuracy.png)
    # The report's primary question: this metric at the final epoch (``report.primary`` overrides it), and the
    # difference from the baseline within which two models count as equivalent: a number in the metric's units, or
    # a percentage of the baseline's mean such as "1%" (``report.margin`` overrides it).
    primary_metric: str
    equivalence_margin: float | str = "1%"

    def metric(self, name: str) -> MetricSpec:
        for spec in self.metrics:
            if spec.name == name:
                return spec
        raise KeyError(f"task {self.name!r} has no metric {name!r} (it has {', '.join(m.name for m in self.metrics)})")

    @property
    def final_metrics(self) -> tuple[str, ...]:
        """The metrics of the final table (``metrics.csv``): every metric but the loss."""
        return tuple(m.name for m in self.metrics if m.name != VAL_LOSS.name)
