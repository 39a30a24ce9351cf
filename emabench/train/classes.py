"""Optimizer and learning-rate scheduler classes given by import path (``train.optimizer.name: torch.optim.Adadelta``,
``train.lr_schedule.name: torch.optim.lr_scheduler.StepLR``), with their arguments in ``kwargs``.

Such a class runs as it would in a user's own loop: the optimizer with its own ``lr`` and ``weight_decay``, set in its
param group before every step to the scheduled learning rate; the scheduler stepped once per epoch or optimizer step
against a stand-in optimizer, its learning rate read off and tabulated (:class:`TabulatedSchedule`). So the runs of
one stack share these settings (:func:`emabench.train.build.stack_key`): a stack's learning rate is one number.
:func:`check_classes` imports every class and checks its arguments against its signature before anything is written,
each problem one line naming the key.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from emabench.config import Config
from emabench.config.train_specs import is_class_path
from emabench.errors import ConfigError
from emabench.tasks.sources import import_callable

MAX_SCHEDULE = 10_000_000  # tabulated learning rates: a step schedule of 10M optimizer steps is 80 MB of floats


def optimizer_class(config: Config) -> type[torch.optim.Optimizer]:
    """The optimizer class of ``train.optimizer.name``, checked: a ``torch.optim.Optimizer`` taking ``lr`` (and
    ``weight_decay`` when it is not 0) and every key of ``kwargs``."""
    spec = config.train.optimizer.resolved()
    cls = _class(spec.name, "train.optimizer.name", torch.optim.Optimizer, "a torch.optim.Optimizer")
    given = {"lr", *(["weight_decay"] if spec.weight_decay else []), *spec.kwargs}
    _check_arguments(cls, given, "train.optimizer")
    return cls


def _class(path: str, key: str, base: type, kind: str) -> type:
    """``pkg.module.Class``, ``pkg.module:Class`` or ``file.py:Class``, imported and checked to subclass ``base``."""
    module, _, name = path.rpartition(".")
    cls = import_callable(path if ":" in path else f"{module}:{name}", key)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{key}: {path} is not {kind} class")
    return cls


def _check_arguments(cls: type, given: set[str], key: str) -> None:
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return
    taken = [name for name in parameters if name not in ("self", "params", "optimizer")]
    unknown = sorted(given - set(taken))
    if unknown:
        where = "kwargs" if unknown[0] not in ("lr", "weight_decay") else unknown[0]
        raise ConfigError(
            f"{key}.{where}: {cls.__name__} does not take {unknown[0]!r} (it takes {', '.join(taken) or 'nothing'})"
        )


def build_optimizer(config: Config, params: Sequence[torch.Tensor]) -> torch.optim.Optimizer:
    """``cls(params, lr=…, [weight_decay=…,] **kwargs)``, a bad argument value one line naming the class."""
    spec = config.train.optimizer.resolved()
    cls = optimizer_class(config)
    arguments = {"lr": spec.lr, **({"weight_decay": spec.weight_decay} if spec.weight_decay else {}), **spec.kwargs}
    try:
        return cls(list(params), **arguments)
    except Exception as err:  # the class's own argument checks
        raise ConfigError(
            f"train.optimizer: {spec.name} refuses these arguments ({type(err).__name__}: {err})"
        ) from None


@dataclass(frozen=True)
class TabulatedSchedule:
    """A scheduler class's learning rates, ``lrs[t]`` after ``t`` calls of its ``step()``, as factors of the base
    learning rate (the stack's one ``lr``); past the table's end the last value holds."""

    factors: tuple[float, ...]

    def factor(self, t: int) -> float:
        return self.factors[min(max(t, 0), len(self.factors) - 1)]


def tabulated_schedule(config: Config, total: int) -> TabulatedSchedule:
    """``train.lr_schedule.name`` 's class driven ``total`` times against a stand-in optimizer at the run's ``lr``
    (ReduceLROnPlateau is ``train.scheduler``, not a schedule)."""
    spec, base = config.train.lr_schedule, config.train.optimizer.resolved().lr
    cls = _class(spec.name, "train.lr_schedule.name", torch.optim.lr_scheduler.LRScheduler, "an lr_scheduler")
    _check_arguments(cls, set(spec.kwargs), "train.lr_schedule")
    if total > MAX_SCHEDULE:
        raise ConfigError(f"train.lr_schedule: {total:,} {spec.per}s is more than {MAX_SCHEDULE:,} to tabulate")
    stand_in = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    try:
        scheduler = cls(stand_in, **spec.kwargs)
        factors = []
        for _ in range(total + 1):
            factors.append(stand_in.param_groups[0]["lr"] / base)
            stand_in.step()  # no gradient: nothing moves, but the scheduler sees an optimizer step first
            scheduler.step()
    except Exception as err:  # the class's own checks and arithmetic
        raise ConfigError(f"train.lr_schedule: {spec.name} fails ({type(err).__name__}: {err})") from None
    return TabulatedSchedule(tuple(factors))


def check_classes(configs: Sequence[Config], total: dict[str, int] | None = None) -> None:
    """Import and check every optimizer and scheduler class the configs name (before anything is written)."""
    for config in configs:
        if config.train.optimizer.resolved().is_class:
            stand_in = [torch.zeros(2, requires_grad=True)]
            build_optimizer(config, stand_in)
        if is_class_path(config.train.lr_schedule.name):
            tabulated_schedule(config, 1)


def class_settings(config: Config) -> dict[str, Any]:
    """What the runs of one stack must share when a class sets their learning rate: ``lr``, ``weight_decay`` and the
    plateau scheduler (empty when every piece is built in)."""
    if not (config.train.optimizer.resolved().is_class or is_class_path(config.train.lr_schedule.name)):
        return {}
    spec = config.train.optimizer.resolved()
    return {"lr": spec.lr, "weight_decay": spec.weight_decay, "scheduler": config.train.scheduler.model_dump()}
