"""The experiment configuration: :class:`Config` and its sections, a typed schema.

Every knob of an experiment is a field here; nothing that changes the experiment hides in code. Config keys equal
field names, unknown keys are refused by name (see :mod:`emabench.config.validate` for the one-line errors). The
sections live beside this module: ``data:`` in :mod:`.data_specs`, ``model:`` in :mod:`.model_specs`, ``train:`` in
:mod:`.train_specs`, ``averagers:`` in :mod:`.averager_specs`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from emabench.config.averager_specs import AveragerSpec, BufferPolicy, PostHocSpec, SWASpec
from emabench.config.base import _Section
from emabench.config.data_specs import CLASSIFICATION_ONLY, REGRESSION_ONLY, DataSpec
from emabench.config.model_specs import ModelSpec
from emabench.config.train_specs import TrainConfig

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
RESERVED_MODEL_NAMES = ("raw", "ema")
TRACKERS = ("mlflow", "tensorboard")  # where ``track:`` copies runs (emabench.tracking)
# Sections that say how a run is watched, not what it is: left out of the run id, its checkpoint's tag, the sweep
# folder's hash and config.yaml (:func:`identity`), so tracking a run or not never makes it another run.
NOT_IDENTITY = ("track",)


class EMAConfig(_Section):
    """The seed's EMA with warm-up: ``d = clamp(1 - (1 + e/inv_gamma)^-power, min_value, beta)``."""

    beta: float = Field(ge=0, lt=1)  # may differ between the runs of one stack
    update_after_step: int = Field(ge=0)
    update_every: int = Field(ge=1)
    inv_gamma: float = Field(gt=0)
    power: float = Field(gt=0)
    min_value: float = Field(ge=0, lt=1)
    buffers: BufferPolicy = "average"  # float buffers (BatchNorm statistics): average, copy or recalibrate

    @model_validator(mode="after")
    def _min_below_beta(self) -> EMAConfig:
        if self.min_value > self.beta:
            raise ValueError(f"min_value ({self.min_value}) must not exceed beta ({self.beta})")
        return self


class Config(_Section):
    name: str = Field(pattern=NAME_PATTERN)
    seed: int = Field(ge=0)
    device: Literal["auto", "cpu", "cuda"]
    task: Literal["regression", "classification"] = "regression"
    data: DataSpec
    model: ModelSpec
    train: TrainConfig
    ema: EMAConfig
    averagers: dict[str, AveragerSpec] = Field(default_factory=dict)  # more averagers observing the same run, by name
    track: list[Literal["mlflow", "tensorboard"]] = Field(default_factory=list)  # copies of the run (not its identity)

    @model_validator(mode="before")
    @classmethod
    def _seed_defaults(cls, raw: Any) -> Any:
        """Configs written before tasks existed name no data source or model: they are seed 001's."""
        if isinstance(raw, dict):
            for section, key, value in (("data", "source", "make_regression"), ("model", "name", "mlp")):
                if isinstance(raw.get(section), dict) and key not in raw[section]:
                    raw = {**raw, section: {key: value, **raw[section]}}
        return raw

    @field_validator("track", mode="before")
    @classmethod
    def _track_list(cls, track: Any) -> Any:
        """One tracker (``track: mlflow``) or a list of them, each once."""
        if isinstance(track, str):
            track = [track]
        if isinstance(track, list) and len(set(map(str, track))) < len(track):
            raise ValueError(f"each tracker once (allowed: {', '.join(TRACKERS)})")
        return track

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
    def _consistent(self) -> Config:
        self._check_task()
        per_epoch = self.model_names(per_epoch_only=True)
        monitors = [
            ("train.scheduler.monitor", self.train.scheduler.monitor),
            ("train.early_stopping.monitor", self.train.early_stopping.monitor),
        ]
        if self.train.teacher is not None:
            monitors.append(("train.teacher.averager", self.train.teacher.averager))
        for key, monitor in monitors:
            allowed = [m for m in per_epoch if not (key == "train.teacher.averager" and m == "raw")]
            if monitor not in allowed:
                raise ValueError(
                    f"{key}: {monitor!r} is not a model evaluated every epoch (allowed: {', '.join(allowed)})"
                )
        for name, spec in self.averagers.items():
            if isinstance(spec, SWASpec) and spec.start_epoch >= self.train.max_epochs:
                raise ValueError(
                    f"averagers.{name}.start_epoch: {spec.start_epoch} is not before train.max_epochs "
                    f"({self.train.max_epochs}), so SWA would never average"
                )
        return self

    def _check_task(self) -> None:
        source = self.data.source
        if self.task == "classification" and source in REGRESSION_ONLY:
            raise ValueError(
                f"task: 'classification' needs class labels, and data.source {source!r} has a continuous target"
            )
        if self.task == "regression" and source in CLASSIFICATION_ONLY:
            raise ValueError(
                f"task: 'regression' needs a continuous target, and data.source {source!r} gives class labels"
            )
        if self.task == "classification" and self.data.scale_y:
            raise ValueError("data.scale_y: class labels are not scaled (allowed: false for classification)")
        if self.task == "regression" and self.data.stratify:
            raise ValueError("data.stratify: a regression target has no classes (allowed: null or false)")
        if self.task == "regression" and self.train.label_smoothing > 0:
            raise ValueError("train.label_smoothing: only for classification (allowed: 0.0 for regression)")

    def model_names(self, per_epoch_only: bool = False) -> list[str]:
        """``raw``, ``ema`` and the extra averagers (post-hoc ones only exist after training)."""
        extra = [n for n, s in self.averagers.items() if not (per_epoch_only and isinstance(s, PostHocSpec))]
        return ["raw", "ema", *extra]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="python", exclude_defaults=False)


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config (:meth:`Config.to_dict`) without :data:`NOT_IDENTITY`'s sections: what names a run."""
    return {key: value for key, value in config.items() if key not in NOT_IDENTITY}
