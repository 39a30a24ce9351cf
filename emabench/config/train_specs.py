"""How a run trains (``train:``): batches, optimizer, learning-rate schedule, plateau scheduler, early stopping and
the seeds' training tricks (gradient accumulation and clipping, label smoothing, mixed precision, an EMA teacher)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from emabench.config.base import _Section

OPTIMIZER_ARGUMENTS = {  # which optional optimizer fields each optimizer takes
    "sgd": ("momentum", "dampening", "nesterov"),
    "rmsprop": ("alpha", "eps", "momentum", "centered"),
    "rmsprop_nesterov": ("alpha", "eps", "momentum"),  # emabench.optim.RMSpropNesterov (seed 004)
    "adam": ("betas", "eps"),
    "nadam": ("betas", "eps", "momentum_decay"),
    "adamax": ("betas", "eps"),
    "adamw": ("betas", "eps"),
    "radam": ("betas", "eps"),
}


ARGUMENT_FIELDS = ("betas", "eps", "momentum", "dampening", "nesterov", "alpha", "centered", "momentum_decay")
# a class of your own (or any of torch's) by import path: "torch.optim.Adadelta", "pkg.module:Class", "file.py:Class"
CLASS_PATH = r"^(?:[A-Za-z_][\w]*\.)+[A-Za-z_]\w*$|^[^:\s]+:[A-Za-z_][\w.]*$"


def is_class_path(name: str) -> bool:
    """Whether an optimizer's or schedule's ``name`` is an import path rather than a built-in name."""
    return "." in name or ":" in name


class OptimizerConfig(_Section):
    """A ``torch.optim`` optimizer by name, with torch's own arguments; ``null`` leaves an argument at torch's
    default. ``weight_decay`` is L2 added to the gradient, except for ``adamw`` (decoupled, ``θ ← θ(1 − lr·λ)``).
    ``lr`` and ``weight_decay`` may differ between the runs of one stack.

    ``rmsprop_nesterov`` is seed 004's RMSProp with Nesterov momentum (:class:`emabench.optim.RMSpropNesterov`):
    ``alpha`` is ρ (default 0.99), ``momentum`` α (default 0.9), ``eps`` δ inside the square root (default 1e-6);
    its velocity carries the learning rate of each past step, so a schedule changes only the steps to come.

    ``by_name`` holds settings that apply only when ``name`` is that optimizer (they win over the fields above), so
    that one config swept over ``name`` trains each optimizer with its own learning rate and arguments:
    ``by_name: {sgd: {lr: 0.03, momentum: 0.9}}``. The training uses :meth:`resolved`.
    """

    name: str = Field(max_length=1000)  # a built-in name, or a class's import path (its arguments in kwargs)
    lr: float = Field(gt=0, le=1e3)
    weight_decay: float = Field(default=0.0, ge=0, le=1e3)  # torch's default
    betas: list[float] | None = Field(default=None, min_length=2, max_length=2)  # adam, nadam, adamax, adamw, radam
    eps: float | None = Field(default=None, gt=0, le=1)  # rmsprop(_nesterov) and the adam family
    momentum: float | None = Field(default=None, ge=0, lt=1)  # sgd, rmsprop(_nesterov)
    dampening: float | None = Field(default=None, ge=0, le=1)  # sgd
    nesterov: bool | None = None  # sgd (needs momentum > 0 and dampening 0)
    alpha: float | None = Field(default=None, gt=0, lt=1)  # rmsprop(_nesterov)'s smoothing constant ρ
    centered: bool | None = None  # rmsprop
    momentum_decay: float | None = Field(default=None, ge=0, le=1)  # nadam
    kwargs: dict[str, Any] = Field(default_factory=dict)  # a class's other arguments (checked against its signature)
    by_name: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known_or_a_class(cls, name: str) -> str:
        if name in OPTIMIZER_ARGUMENTS or re.match(CLASS_PATH, name):
            return name
        raise ValueError(
            f"{name!r} is neither one of {', '.join(OPTIMIZER_ARGUMENTS)} nor an optimizer class's import path "
            "(e.g. torch.optim.Adadelta, mypackage.optim:MyOptimizer)"
        )

    @property
    def is_class(self) -> bool:
        """An optimizer class given by import path (its ``lr`` and ``weight_decay`` are the class's own)."""
        return is_class_path(self.name)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: list[float] | None) -> list[float] | None:
        if betas is not None and not all(0 <= b < 1 for b in betas):
            raise ValueError(f"both betas must be in [0, 1), got {betas}")
        return betas

    @model_validator(mode="after")
    def _arguments_of_this_optimizer(self) -> OptimizerConfig:
        for name, settings in self.by_name.items():
            if name not in OPTIMIZER_ARGUMENTS:
                raise ValueError(f"by_name.{name}: not an optimizer (allowed: {', '.join(OPTIMIZER_ARGUMENTS)})")
            allowed = ("lr", "weight_decay", *OPTIMIZER_ARGUMENTS[name])
            unknown = [key for key in settings if key not in allowed]
            if unknown:
                raise ValueError(
                    f"by_name.{name}.{unknown[0]}: {name} does not take it (allowed: {', '.join(allowed)})"
                )
        for name, settings in self.by_name.items():  # each entry with the fields' own bounds
            values = self.model_dump(exclude={"kwargs"}) | {"name": name, **{f: None for f in ARGUMENT_FIELDS}}
            values |= dict(settings)
            try:
                OptimizerConfig.model_validate(values | {"by_name": {}})
            except ValidationError as err:
                first = err.errors(include_url=False)[0]
                message = first["msg"].removeprefix("Value error, ")
                if first["loc"]:
                    where = ".".join(str(part) for part in first["loc"])
                    raise ValueError(f"by_name.{name}.{where}: {message} (got {first.get('input')!r})") from None
                raise ValueError(f"by_name.{name}: {message}") from None
        resolved = self.resolved()
        if resolved.is_class:
            given = [field for field in ARGUMENT_FIELDS if getattr(resolved, field) is not None]
            if given:
                raise ValueError(f"{given[0]}: a class's arguments go under kwargs (kwargs: {{{given[0]}: ...}})")
            return self
        if self.kwargs:
            raise ValueError(f"kwargs: only for an optimizer class given by import path ({self.name} takes fields)")
        taken = OPTIMIZER_ARGUMENTS[self.name]
        for field in ARGUMENT_FIELDS:
            if getattr(resolved, field) is not None and field not in taken:
                users = ", ".join(n for n, args in OPTIMIZER_ARGUMENTS.items() if field in args)
                raise ValueError(
                    f"{field}: {self.name} does not take {field} (taken by {users}); set it to null or leave it "
                    f"out, or give it under by_name.<optimizer>"
                )
        if resolved.nesterov and not ((resolved.momentum or 0) > 0 and not resolved.dampening):
            raise ValueError("nesterov: needs momentum > 0 and dampening 0 (torch's rule)")
        return self

    def resolved(self) -> OptimizerConfig:
        """The settings in force: the fields with ``by_name[name]`` applied (``by_name`` itself emptied)."""
        chosen = self.by_name.get(self.name)
        if not chosen and not self.by_name:
            return self
        values = self.model_dump() | dict(chosen or {}) | {"by_name": {}}
        return OptimizerConfig.model_validate(values)

    def resolved_dict(self) -> dict[str, Any]:
        """What a run records: the fields with ``by_name[name]`` applied, ``by_name`` kept (so the record reads the
        values that trained, and ``--set train.optimizer.name=…`` on it still finds each optimizer's settings).
        Applying it again changes nothing: ``by_name[name]`` already equals the fields it sets."""
        return self.model_dump() | dict(self.by_name.get(self.name) or {})


class LRScheduleConfig(_Section):
    """The learning rate as ``lr · factor(t)``, ``t`` counting epochs or optimizer steps (``per``); each shape is
    torch's ``lr_scheduler`` of that name (``cosine``: CosineAnnealingLR, ``linear``: LinearLR, ``polynomial``:
    PolynomialLR, ``step``: StepLR), over the whole run (``max_epochs``), after an optional linear warm-up of
    ``warmup`` units from ``warmup_start`` to 1 (LinearLR, then the shape over the remaining units). ``name`` may also
    be a scheduler class's import path (``torch.optim.lr_scheduler.StepLR``) with its arguments in ``kwargs``: it
    drives the learning rate as it would drive its optimizer, one ``step()`` per ``per``."""

    name: str = Field(default="constant", max_length=1000)  # a shape below, or an lr_scheduler class's import path
    per: Literal["epoch", "step"] = "epoch"
    warmup: int = Field(default=0, ge=0)
    warmup_start: float = Field(default=0.1, gt=0, le=1)
    final: float = Field(default=0.0, ge=0, le=1)  # factor reached at the end (cosine, linear, polynomial)
    power: float = Field(default=1.0, gt=0, le=100)  # polynomial
    step_size: int = Field(default=30, ge=1)  # step: multiply by gamma every step_size units
    gamma: float = Field(default=0.1, gt=0, le=1)
    kwargs: dict[str, Any] = Field(default_factory=dict)  # a scheduler class's arguments (its optimizer aside)

    @field_validator("name")
    @classmethod
    def _known_or_a_class(cls, name: str) -> str:
        shapes = ("constant", "cosine", "linear", "polynomial", "step")
        if name in shapes or re.match(CLASS_PATH, name):
            return name
        raise ValueError(
            f"{name!r} is neither one of {', '.join(shapes)} nor a scheduler class's import path "
            "(e.g. torch.optim.lr_scheduler.StepLR)"
        )

    @model_validator(mode="after")
    def _kwargs_for_a_class(self) -> LRScheduleConfig:
        if self.kwargs and not is_class_path(self.name):
            raise ValueError(f"kwargs: only for a scheduler class given by import path ({self.name} takes fields)")
        if is_class_path(self.name) and self.warmup:
            raise ValueError("warmup: a scheduler class sets the whole schedule (chain a warm-up in it instead)")
        return self


class SWALRConfig(_Section):
    """torch ``SWALR``: after epoch ``start_epoch`` the learning rate anneals from the one in use to ``swa_lr`` over
    ``anneal_epochs`` (cos or linear), replacing the schedule and the plateau scheduler (an SWA averager with the
    same ``start_epoch`` then averages that phase)."""

    start_epoch: int = Field(ge=1)
    swa_lr: float = Field(gt=0)
    anneal_epochs: int = Field(default=10, ge=0)
    anneal_strategy: Literal["cos", "linear"] = "cos"


Monitor = str  # "raw", "ema" or the name of an averager evaluated every epoch (checked by Config)


class SchedulerConfig(_Section):
    """``ReduceLROnPlateau`` stepped once per epoch on the monitored model's validation loss, multiplying whatever
    ``lr_schedule`` gives (``name: none``, the default, turns it off). The other defaults are torch's."""

    name: Literal["reduce_on_plateau", "none"] = "none"
    monitor: Monitor = "raw"  # the raw model decides, so no averager is favoured
    factor: float = Field(default=0.1, gt=0, lt=1)
    patience: int = Field(default=10, ge=0)
    threshold: float = Field(default=1e-4, ge=0)
    threshold_mode: Literal["rel", "abs"] = "rel"
    cooldown: int = Field(default=0, ge=0)
    min_lr: float = Field(default=0.0, ge=0)


class EarlyStoppingConfig(_Section):
    """Stop after ``patience`` epochs without a new best monitored validation loss (``None``, the default: never
    stop)."""

    monitor: Monitor = "raw"  # the raw model decides, so no averager is favoured
    patience: int | None = Field(default=None, ge=1)


class TeacherConfig(_Section):
    """Seed 000's EMA teacher: ``loss = task loss + weight · MSE(student output, teacher output)`` (logits for
    classification), the teacher being the averaged model of ``averager`` (``ema`` or any per-epoch averager)
    in eval mode, without gradient. ``weight`` may differ between the runs of one stack."""

    averager: str = Field(min_length=1)
    weight: float = Field(ge=0, le=1e6)


class TrainConfig(_Section):
    """How a run trains. ``max_epochs`` and the optimizer's ``name`` and ``lr`` are required; every other key has
    a default (listed by ``emabench configs --defaults``)."""

    batch_size: int = Field(default=32, ge=1, le=10_000_000)
    max_epochs: int = Field(ge=1, le=1_000_000)
    # A run whose training loss or monitored validation loss is not finite, or above this, is stopped and marked
    # diverged (``null``, the default: only non-finite). Targets are standardized, so an untrained model scores ~1.
    diverged_above: float | None = Field(default=None, gt=0)
    optimizer: OptimizerConfig
    scheduler: SchedulerConfig = SchedulerConfig()  # off
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()  # never stops early
    lr_schedule: LRScheduleConfig = LRScheduleConfig()
    swa_lr: SWALRConfig | None = None
    grad_accumulation: int = Field(default=1, ge=1, le=4096)  # micro-batches per batch (same batch, less memory)
    grad_clip_norm: float | None = Field(default=None, gt=0)  # clip each run's gradient 2-norm (clip_grad_norm_)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)  # classification; may differ between runs of a stack
    label_smoothing_kind: Literal["seed", "torch"] = "seed"  # seed 004's ε/(K−1) or torch's ε/K spreading
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast; fp16 (with a grad scaler) needs CUDA
    teacher: TeacherConfig | None = None

    @model_validator(mode="after")
    def _batches(self) -> TrainConfig:
        if self.grad_accumulation > self.batch_size:
            raise ValueError(
                f"grad_accumulation ({self.grad_accumulation}) must not exceed batch_size ({self.batch_size}): "
                "it splits each batch into that many micro-batches"
            )
        if self.lr_schedule.per == "epoch" and self.lr_schedule.warmup >= self.max_epochs:
            raise ValueError(f"lr_schedule.warmup ({self.lr_schedule.warmup} epochs) must be below max_epochs")
        if self.swa_lr is not None and self.swa_lr.start_epoch >= self.max_epochs:
            raise ValueError(f"swa_lr.start_epoch ({self.swa_lr.start_epoch}) must be below max_epochs")
        return self
