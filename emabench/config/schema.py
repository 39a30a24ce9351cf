"""The experiment configuration: :class:`Config` and its sections, a typed schema.

Every knob of the seed study is a field here; nothing that changes the experiment hides in code. Config keys equal
field names, unknown keys are refused by name (see :mod:`emabench.config.validate` for the one-line errors).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from emabench.config.averager_specs import AveragerSpec, PostHocSpec, SWASpec
from emabench.config.base import _Section

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class DataConfig(_Section):
    """sklearn ``make_regression`` data, scaled and split as seed 001 does."""

    n_samples: int = Field(ge=10, le=10_000_000)  # upper bounds: what fits a machine, not a modelling choice
    n_features: int = Field(ge=1, le=100_000)
    n_informative: int | None = Field(default=None, ge=1)  # None: make_regression's default (10)
    noise: float = Field(ge=0)
    random_state: int = Field(ge=0)  # the data set is fixed across run seeds, as in the seed script
    scale_x: bool  # StandardScaler on X, fit on all samples before the split (the seed's choice)
    scale_y: bool
    test_size: float = Field(gt=0, lt=1)
    split_random_state: int = Field(ge=0)


class ModelConfig(_Section):
    """MLP: Linear → ReLU → Dropout per hidden layer, then Linear to one output."""

    hidden_sizes: list[int] = Field(min_length=1, max_length=32)
    dropout: float = Field(ge=0, lt=1)
    init: Literal["xavier_normal", "xavier_uniform"]  # weights; biases start at zero

    @field_validator("hidden_sizes")
    @classmethod
    def _positive_sizes(cls, sizes: list[int]) -> list[int]:
        if any(not 1 <= size <= 65536 for size in sizes):
            raise ValueError(f"every hidden size must be in [1, 65536], got {sizes}")
        return sizes


class OptimizerConfig(_Section):
    """Adam with L2 weight decay added to the gradient (``torch.optim.Adam`` semantics)."""

    name: Literal["adam"]
    lr: float = Field(gt=0)
    betas: list[float] = Field(min_length=2, max_length=2)
    eps: float = Field(gt=0)
    weight_decay: float = Field(ge=0)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: list[float]) -> list[float]:
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"both betas must be in [0, 1), got {betas}")
        return betas


Monitor = str  # "raw", "ema" or the name of an averager evaluated every epoch (checked by Config)


class SchedulerConfig(_Section):
    """``ReduceLROnPlateau`` stepped once per epoch on the monitored model's validation loss."""

    name: Literal["reduce_on_plateau", "none"]
    monitor: Monitor
    factor: float = Field(gt=0, lt=1)
    patience: int = Field(ge=0)
    threshold: float = Field(ge=0)
    threshold_mode: Literal["rel", "abs"]
    cooldown: int = Field(ge=0)
    min_lr: float = Field(ge=0)


class EarlyStoppingConfig(_Section):
    """Stop after ``patience`` epochs without a new best monitored validation loss (``None``: never stop)."""

    monitor: Monitor
    patience: int | None = Field(ge=1)


class TrainConfig(_Section):
    batch_size: int = Field(ge=1)
    max_epochs: int = Field(ge=1)
    # A run whose training loss or monitored validation loss is not finite, or above this, is stopped and marked
    # diverged (``null``: only non-finite). Targets are standardized, so an untrained model scores ~1.
    diverged_above: float | None = Field(gt=0)
    optimizer: OptimizerConfig
    scheduler: SchedulerConfig
    early_stopping: EarlyStoppingConfig


class EMAConfig(_Section):
    """The seed's EMA with warm-up: ``d = clamp(1 - (1 + e/inv_gamma)^-power, min_value, beta)``."""

    beta: float = Field(ge=0, lt=1)
    update_after_step: int = Field(ge=0)
    update_every: int = Field(ge=1)
    inv_gamma: float = Field(gt=0)
    power: float = Field(gt=0)
    min_value: float = Field(ge=0, lt=1)

    @model_validator(mode="after")
    def _min_below_beta(self) -> EMAConfig:
        if self.min_value > self.beta:
            raise ValueError(f"min_value ({self.min_value}) must not exceed beta ({self.beta})")
        return self


RESERVED_MODEL_NAMES = ("raw", "ema")


class Config(_Section):
    name: str = Field(pattern=NAME_PATTERN)
    seed: int = Field(ge=0)
    device: Literal["auto", "cpu", "cuda"]
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    ema: EMAConfig
    averagers: dict[str, AveragerSpec] = Field(default_factory=dict)  # more averagers observing the same run, by name

    @field_validator("averagers")
    @classmethod
    def _averager_names(cls, averagers: dict[str, Any]) -> dict[str, Any]:
        for name in averagers:
            if name in RESERVED_MODEL_NAMES or not re.match(r"^[A-Za-z][A-Za-z0-9_.-]{0,39}$", name):
                raise ValueError(
                    f"averager name {name!r} must start with a letter, use letters, digits, '_', '.', '-' "
                    f"and not be one of {', '.join(RESERVED_MODEL_NAMES)}"
                )
        return averagers

    @model_validator(mode="after")
    def _monitors_and_epochs(self) -> Config:
        per_epoch = self.model_names(per_epoch_only=True)
        for key, monitor in (
            ("train.scheduler.monitor", self.train.scheduler.monitor),
            ("train.early_stopping.monitor", self.train.early_stopping.monitor),
        ):
            if monitor not in per_epoch:
                raise ValueError(
                    f"{key}: {monitor!r} is not a model evaluated every epoch (allowed: {', '.join(per_epoch)})"
                )
        with_lr = [n for n, s in self.averagers.items() if isinstance(s, SWASpec) and s.swa_lr is not None]
        if len(with_lr) > 1:
            raise ValueError(f"averagers: only one SWA may set swa_lr (the run has one learning rate), got {with_lr}")
        for name, spec in self.averagers.items():
            if isinstance(spec, SWASpec) and spec.start_epoch >= self.train.max_epochs:
                raise ValueError(
                    f"averagers.{name}.start_epoch: {spec.start_epoch} is not before train.max_epochs "
                    f"({self.train.max_epochs}), so SWA would never average"
                )
        return self

    def model_names(self, per_epoch_only: bool = False) -> list[str]:
        """``raw``, ``ema`` and the extra averagers (post-hoc ones only exist after training)."""
        extra = [n for n, s in self.averagers.items() if not (per_epoch_only and isinstance(s, PostHocSpec))]
        return ["raw", "ema", *extra]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="python", exclude_defaults=False)
