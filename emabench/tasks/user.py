"""A loss and metrics of your own around a built-in task (``loss:`` and ``metrics:`` beside ``task:``).

- ``loss: "pkg.module:fn"``: ``fn(outputs, targets)`` → a 0-d tensor, in place of the task's MSE or cross-entropy,
  for training and as the validation loss (``val_loss``, on the whole validation set at once). In a stack it is
  called once per replica on that replica's rows, so a replica's gradient is its run's alone (what the stacked loss,
  the sum of the per-replica losses, requires).
- ``metrics: {name: {fn: "pkg.module:fn", higher_is_better: bool}}``: each ``fn(outputs, targets)`` → a number, per
  run on each evaluation set, after the task's own metrics: columns ``<model>_<name>`` in the history, ``<name>``
  in ``metrics.csv``, compared by the report in the direction given (the run's task is declared with them:
  :func:`emabench.tasks.declared.config_task_name`).

``outputs`` are one run's ``(B, outputs)`` (float32; classification: one score per class, as the model gives them),
``targets`` as the task keeps them: class indices int64 ``(B,)``, or regression targets float32 ``(B, 1)``.
:func:`check_on_batch` calls each function once on a batch before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from emabench.errors import ConfigError
from emabench.tasks.base import Task
from emabench.tasks.declared import declared_metrics
from emabench.tasks.registry import get_task
from emabench.tasks.sources import import_callable

Function = Callable[[torch.Tensor, torch.Tensor], Any]


class UserTask(Task):
    """A built-in ``base`` task with the user's ``loss`` (``None``: the task's own) and ``metrics``
    (``{name: function}``, their :class:`~emabench.tasks.metric_specs.MetricSpec` s after the task's own)."""

    def __init__(self, base: Task, loss: Function | None, metrics: dict[str, Function], config: Any) -> None:
        self.base, self._loss, self._metrics, self.loss_path = base, loss, metrics, config.loss
        self.name = base.name  # the engine's kind of task; the report's name declares the metrics too
        self.metrics = declared_metrics(base.name, {k: v.higher_is_better for k, v in config.metrics.items()})
        self.plot_metric, self.primary_metric = base.plot_metric, base.primary_metric
        self.equivalence_margin = base.equivalence_margin

    def outputs(self, n_classes: int | None) -> int:
        return self.base.outputs(n_classes)

    def loss(self, out: torch.Tensor, target: torch.Tensor, smoothing: torch.Tensor | None = None) -> torch.Tensor:
        """Per replica ``(R,)``: the user's loss on each replica's rows, or the task's own."""
        if self._loss is None:
            return self.base.loss(out, target, smoothing)
        return torch.stack([_scalar(self._loss(out[r].float(), target[r]), "loss") for r in range(out.shape[0])])

    def evaluate(self, out: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The task's metrics (``val_loss`` the user's loss when there is one), then the user's, per replica."""
        results = self.base.evaluate(out, target)
        shared = target.dim() == (1 if self.base.name == "classification" else 2)  # one set for every replica
        targets = [target if shared else target[r] for r in range(out.shape[0])]
        named = ({"val_loss": self._loss} if self._loss is not None else {}) | self._metrics
        for name, function in named.items():
            key = "loss" if name == "val_loss" else f"metrics.{name}.fn"
            values = [_scalar(function(out[r].float(), y), key).double() for r, y in enumerate(targets)]
            results[name] = torch.stack(values)
        return results


def task_of(config: Any) -> Task:
    """The task ``config`` trains and scores with: the built-in ``config.task``, with the user's ``loss`` and
    ``metrics`` when it names some (imported here; a one-line :class:`ConfigError` for a bad path or name)."""
    base = get_task(config.task, smoothing_kind=config.train.label_smoothing_kind)
    if config.loss is None and not config.metrics:
        return base
    loss = import_callable(config.loss, "loss") if config.loss is not None else None
    known = {m.name for m in base.metrics}
    metrics = {}
    for name, spec in config.metrics.items():
        if name in known:
            raise ConfigError(f"metrics.{name}: task {base.name!r} has a metric {name!r} of its own; rename yours")
        metrics[name] = import_callable(spec.fn, f"metrics.{name}.fn")
    try:
        return UserTask(base, loss, metrics, config)
    except ValueError as err:  # a name the run folder cannot hold (declared.check_metric_name)
        raise ConfigError(f"metrics: {err}") from None


def check_on_batch(task: Task, outputs: int, targets: torch.Tensor) -> None:
    """Call the user's loss and metrics once (outputs of zeros ``(B, outputs)`` that require a gradient, the first
    ``B`` evaluation targets): each must return one number, the loss a tensor with a gradient."""
    if not isinstance(task, UserTask):
        return
    out = torch.zeros(1, targets.shape[0], outputs, requires_grad=True)
    try:
        loss = task.loss(out, targets.unsqueeze(0))
    except ConfigError:
        raise
    except Exception as err:  # the user's code: one line naming the key
        raise ConfigError(f"loss: {task.loss_path} raised {type(err).__name__}: {_first_line(err)}") from None
    if task._loss is not None and not loss.requires_grad:
        raise ConfigError("loss: returns a tensor with no gradient (it must be computed from the outputs by torch)")
    for name, function in task._metrics.items():
        try:
            _scalar(function(out[0].detach(), targets), f"metrics.{name}.fn")
        except ConfigError:
            raise
        except Exception as err:
            raise ConfigError(f"metrics.{name}.fn raised {type(err).__name__}: {_first_line(err)}") from None


def _scalar(value: Any, key: str) -> torch.Tensor:
    """A function's result as a 0-d tensor (a Python number too), or a one-line :class:`ConfigError`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64)
    if not isinstance(value, torch.Tensor) or value.numel() != 1 or not value.is_floating_point():
        got = f"a tensor of shape {tuple(value.shape)} ({value.dtype})" if isinstance(value, torch.Tensor) else None
        raise ConfigError(f"{key}: must return one number (a 0-d float tensor), got {got or type(value).__name__}")
    return value.reshape(())


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:200]
