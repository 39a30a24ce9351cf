"""Tasks declared by their metrics: the task of a run whose loop, loss and metrics are the user's own
(:mod:`emabench.track`), known only by which metrics it logged and which direction of each is better.

Its name says all of it, so the report rebuilds it from the name alone (:func:`parse_declared`), like a built-in
task from ``regression``:

- ``classification`` (``regression``): the run logged exactly the built-in task's metrics, in its order;
- ``classification(accuracy)``: a subset (or another order) of the built-in task's metrics, directions the task's;
- ``classification(accuracy, top5:higher)``, ``custom(bleu:higher, ter:lower)``: metrics of the user's own, each
  with its direction (``custom``: no built-in task).

``val_loss`` (lower is better) is every such task's loss and is not listed; the first metric listed is the headline
of the report. Torch-free, like :mod:`.metric_specs`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from emabench.tasks.metric_specs import BUILTIN_MARGINS, BUILTIN_METRICS, VAL_LOSS, MetricSet, MetricSpec

CUSTOM = "custom"  # the base of a task with no built-in metrics
DIRECTIONS = {"higher": True, "lower": False}
METRIC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
# Columns the run folder and the report already use: a metric of that name would overwrite one of them.
RESERVED_METRICS = frozenset(
    {
        "decay",
        "epoch",
        "epochs",
        "fit_error",
        "group",
        "half_life",
        "half_life_epochs",
        "half_life_updates",
        "decay_reached",
        "lr",
        "model",
        "name",
        "run_id",
        "run_path",
        "seed",
        "status",
        "stop_reason",
        "sweep_mode",
        "task",
        "train_loss",
        "val_loss_std",
    }
)
_DECLARED = re.compile(r"^(?P<base>[a-z]+)\((?P<items>[^()]+)\)$")


class DeclaredTask(MetricSet):
    """A task known by its metrics (``val_loss`` first) and a base (a built-in task's name, or ``custom``)."""

    def __init__(self, base: str, metrics: Sequence[MetricSpec]) -> None:
        self.base = base
        self.metrics = (VAL_LOSS, *(m for m in metrics if m.name != VAL_LOSS.name))
        if len(self.metrics) < 2:
            raise ValueError("a task needs a metric besides val_loss (the report compares final metrics)")
        self.plot_metric = self.primary_metric = self.metrics[1].name  # the first metric listed is the headline
        builtin = BUILTIN_METRICS.get(base)
        if builtin is not None and self.metrics[1] == builtin[1]:  # the built-in task's headline: its margin too
            self.equivalence_margin = BUILTIN_MARGINS[base]
        if builtin == self.metrics:
            self.name = base
        else:
            known = {m.name for m in builtin or ()}
            items = [m.name if m.name in known else f"{m.name}:{direction(m)}" for m in self.metrics[1:]]
            self.name = f"{base}({', '.join(items)})"

    def __repr__(self) -> str:
        return f"DeclaredTask({self.name!r})"


def direction(spec: MetricSpec) -> str:
    return "higher" if spec.higher_is_better else "lower"


def declare(task: str | None, directions: Mapping[str, str], logged: Sequence[str]) -> DeclaredTask:
    """The task of a run that logged the metrics ``logged`` (``val_loss`` among them), in that order: each one's
    direction from the built-in ``task`` (``regression``, ``classification``; ``None``: none) or from
    ``directions`` (``{"bleu": "higher"}``). A ``ValueError`` names a metric without a direction, a direction that
    contradicts the task's, a direction given for a metric never logged, and a name the run folder cannot hold."""
    builtin = _builtin(task)
    check_directions(directions)
    known = {VAL_LOSS.name: VAL_LOSS} | {m.name: m for m in builtin}
    if VAL_LOSS.name not in logged:
        raise ValueError(f"every model must log {VAL_LOSS.name!r} (the validation loss), got {', '.join(logged)}")
    unused = [name for name in directions if name not in logged]
    if unused:
        raise ValueError(f"metrics: {', '.join(map(repr, unused))} given a direction but never logged")
    specs = []
    for name in logged:
        check_metric_name(name)
        given = directions.get(name)
        if name in known:
            if given is not None and DIRECTIONS[given] != known[name].higher_is_better:
                owner = "the validation loss" if name == VAL_LOSS.name else f"in task {task!r}"
                raise ValueError(f"metrics: {name!r} is {direction(known[name])}-is-better ({owner}), not {given}")
            specs.append(known[name])
        elif given is not None:
            specs.append(MetricSpec(name, DIRECTIONS[given], name))
        else:
            where = f"task {task!r} has {', '.join(m.name for m in builtin[1:])}" if task else "no task given"
            raise ValueError(
                f"metric {name!r}: no direction ({where}); give it, e.g. metrics={{{name!r}: 'higher'}} or 'lower'"
            )
    return DeclaredTask(task or CUSTOM, specs)


def check_directions(directions: Mapping[str, str]) -> None:
    for name, value in directions.items():
        if value not in DIRECTIONS:
            raise ValueError(f"metrics[{name!r}]: must be 'higher' or 'lower' (which is better), got {value!r}")


def check_metric_name(name: str) -> None:
    """A metric's name is a column suffix (``raw_<name>``): a letter, then letters, digits and ``_``; not a column
    the run folder or the report uses already."""
    if not isinstance(name, str) or not METRIC_NAME.match(name):
        raise ValueError(f"metric name {name!r}: must start with a letter and use letters, digits and '_' (at most 40)")
    if name in RESERVED_METRICS or name.startswith("best_") or name.endswith("_improvement_pct"):
        raise ValueError(f"metric name {name!r} is a column emabench uses already; rename it")


def declared_metrics(task: str, directions: Mapping[str, bool]) -> tuple[MetricSpec, ...]:
    """The metrics of a runner's run with metrics of its own: the built-in ``task`` 's (``val_loss`` first), then
    each of ``directions`` (``{name: higher_is_better}``) in order. A ``ValueError`` names a name the run folder
    cannot hold."""
    builtin = _builtin(task)
    logged = [m.name for m in builtin] + list(directions)
    return declare(task, {k: "higher" if v else "lower" for k, v in directions.items()}, logged).metrics


def config_task_name(document: Any) -> str:
    """The task a runner's config (parsed ``config.yaml``) names: its ``task`` (``regression`` when it names none),
    declared with its ``metrics`` when it has metrics of its own — ``classification(accuracy, f1_macro, ece,
    top2:higher)`` — so the report compares them in their direction. A config that contradicts itself keeps its
    ``task``."""
    if not isinstance(document, Mapping):
        return "regression"
    task, metrics = str(document.get("task", "regression")), document.get("metrics")
    if task not in BUILTIN_METRICS or not isinstance(metrics, Mapping) or not metrics:
        return task
    directions = {k: v.get("higher_is_better") for k, v in metrics.items() if isinstance(v, Mapping)}
    if not all(isinstance(v, bool) for v in directions.values()):
        return task
    try:
        return DeclaredTask(task, declared_metrics(task, directions)).name
    except ValueError:
        return task


def parse_declared(name: str) -> DeclaredTask | None:
    """The task a name like ``classification(accuracy)`` or ``custom(bleu:higher)`` declares; ``None`` when ``name``
    is not of that form. A ``ValueError`` when it is, but contradicts itself or its base."""
    match = _DECLARED.match(name)
    if match is None:
        return None
    base = match["base"]
    if base != CUSTOM:
        _builtin(base)
    directions, logged = {}, [VAL_LOSS.name]
    for item in (part.strip() for part in match["items"].split(",")):
        metric, _, given = item.partition(":")
        logged.append(metric.strip())
        if given:
            directions[metric.strip()] = given.strip()
    return declare(None if base == CUSTOM else base, directions, logged)


def _builtin(task: str | None) -> tuple[MetricSpec, ...]:
    if task is None:
        return ()
    if task not in BUILTIN_METRICS:
        raise ValueError(f"task must be one of {', '.join(BUILTIN_METRICS)} (or None), got {task!r}")
    return BUILTIN_METRICS[task]
