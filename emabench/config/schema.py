"""The experiment configuration: :class:`Config` and its sections, a typed schema.

Every knob of an experiment is a field here; nothing that changes the experiment hides in code. Config keys equal
field names, unknown keys are refused by name (see :mod:`emabench.config.validate` for the one-line errors). The
sections live beside this module: ``data:`` in :mod:`.data_specs`, ``model:`` in :mod:`.model_specs`, ``train:`` in
:mod:`.train_specs`, ``averagers:`` in :mod:`.averager_specs`, ``report:`` in :mod:`.report_specs`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from emabench.config.averager_specs import AveragerSpec, BufferPolicy, PostHocSpec, SWASpec
from emabench.config.base import _Section
from emabench.config.data_specs import CLASSIFICATION_ONLY, REGRESSION_ONLY, DataSpec
from emabench.config.model_specs import ModelSpec
from emabench.config.report_specs import ReportSpec
from emabench.config.train_specs import TrainConfig

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
FUNCTION_PATH = r"^[^:]+:[A-Za-z_][\w.]*$"  # "package.module:function" or "path/to/file.py:function"
METRIC_NAME = r"^[A-Za-z][A-Za-z0-9_]{0,39}$"  # a column suffix: raw_<name>
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit integer
RESERVED_MODEL_NAMES = ("raw", "ema")
TRACKERS = ("mlflow", "tensorboard")  # where ``track:`` copies runs (emabench.tracking)


class EMAConfig(_Section):
    """The seed's EMA with warm-up: ``d = clamp(1 - (1 + e/inv_gamma)^-power, min_value, beta)``, the decay of
    update ``e``, after a copy phase of ``update_after_step`` steps. The defaults are seed 001's settings."""

    beta: float = Field(default=0.999, ge=0, lt=1)  # may differ between the runs of one stack
    update_after_step: int = Field(default=100, ge=0)
    update_every: int = Field(default=1, ge=1)
    inv_gamma: float = Field(default=1.0, gt=0)
    power: float = Field(default=2 / 3, gt=0)
    min_value: float = Field(default=0.0, ge=0, lt=1)
    buffers: BufferPolicy = "average"  # float buffers (BatchNorm statistics): average, copy or recalibrate

    @model_validator(mode="after")
    def _min_below_beta(self) -> EMAConfig:
        if self.min_value > self.beta:
            raise ValueError(f"min_value ({self.min_value}) must not exceed beta ({self.beta})")
        return self


class MetricFunction(_Section):
    """A metric of your own: ``fn(outputs, targets)`` → a number (a 0-d tensor or a float), on a whole evaluation
    set of one run (``outputs`` ``(n, outputs)``, ``targets`` as the task keeps them), and which direction is better."""

    fn: str = Field(pattern=FUNCTION_PATH, max_length=1000)
    higher_is_better: bool


class Config(_Section):
    """One experiment. Required: ``name``, ``train.max_epochs`` and ``train.optimizer``'s ``name`` and ``lr``, plus
    what a chosen data source or model cannot do without (a CSV's ``path`` and ``target``, a custom model's
    ``factory``, ...); every other key has a default, ``data`` and ``model`` the seed study's (``make_regression``,
    ``mlp``) (``emabench configs --defaults`` prints them all). A run folder's
    ``config.yaml`` holds every value, defaults included (:meth:`to_dict`)."""

    name: str = Field(pattern=NAME_PATTERN)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when available, as the seed script does
    task: Literal["regression", "classification"] = "regression"  # classification for a class-label data source
    # Your own loss, fn(outputs, targets) → a 0-d tensor, in place of the task's (null: MSE or cross-entropy), and
    # metrics beside the task's own (emabench.tasks.user); both per run, whatever the stack.
    loss: str | None = Field(default=None, pattern=FUNCTION_PATH, max_length=1000)
    metrics: dict[str, MetricFunction] = Field(default_factory=dict, max_length=64)
    data: DataSpec
    model: ModelSpec
    train: TrainConfig
    ema: EMAConfig = EMAConfig()
    averagers: dict[str, AveragerSpec] = Field(default_factory=dict)  # more averagers observing the same run, by name
    report: ReportSpec = Field(default_factory=ReportSpec)  # how the report reads the runs; not part of the run id
    track: list[Literal["mlflow", "tensorboard"]] = Field(default_factory=list)  # copies of the run (not its identity)

    @model_validator(mode="before")
    @classmethod
    def _seed_defaults(cls, raw: Any) -> Any:
        """A config without ``data`` or ``model``, a data section without ``source`` and a model without ``name``
        are seed 001's (``make_regression``, ``mlp``); a config without ``task`` is a classification when its source
        gives class labels."""
        if isinstance(raw, dict):
            for section, key, value in (("data", "source", "make_regression"), ("model", "name", "mlp")):
                if section not in raw:
                    raw = {**raw, section: {}}
                if isinstance(raw.get(section), dict) and key not in raw[section]:
                    raw = {**raw, section: {key: value, **raw[section]}}
            data = raw.get("data")
            if "task" not in raw and isinstance(data, dict) and data.get("source") in CLASSIFICATION_ONLY:
                raw = {**raw, "task": "classification"}
            if "task" not in raw and isinstance(data, dict) and data.get("source") == "dataset":
                raise ValueError("task: missing; with data.source 'dataset' say which (classification or regression)")
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

    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, metrics: dict[str, Any]) -> dict[str, Any]:
        for name in metrics:
            if not re.match(METRIC_NAME, name):
                raise ValueError(f"{name!r}: a metric's name starts with a letter, then letters, digits, '_' (<= 40)")
        return metrics

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
        source, data = self.data.source, self.data
        if self.task == "classification" and source in REGRESSION_ONLY:
            raise ValueError(
                f"task: 'classification' needs class labels, and data.source {source!r} has a continuous target"
            )
        if self.task == "regression" and source in CLASSIFICATION_ONLY:
            raise ValueError(
                f"task: 'regression' needs a continuous target, and data.source {source!r} gives class labels"
            )
        if self.task == "classification" and getattr(data, "scale_y", False):
            raise ValueError("data.scale_y: class labels are not scaled (allowed: false for classification)")
        if self.task == "regression" and getattr(data, "stratify", None):
            raise ValueError("data.stratify: a regression target has no classes (allowed: null or false)")
        if self.task == "regression" and self.train.label_smoothing > 0:
            raise ValueError("train.label_smoothing: only for classification (allowed: 0.0 for regression)")
        if self.loss is not None and self.train.label_smoothing > 0:
            raise ValueError("train.label_smoothing: smooths the task's own loss; with loss: your own, give 0.0")
        if self.task == "regression" and getattr(data, "n_classes", None) is not None:
            raise ValueError("data.n_classes: a regression target has no classes (allowed: null)")
        noise = getattr(data, "label_noise", None)
        if noise is not None and (noise.fraction is not None) != (self.task == "classification"):
            wanted = "fraction (labels flipped)" if self.task == "classification" else "std (target noise)"
            raise ValueError(f"data.label_noise: a {self.task} task takes {wanted}")

    def model_names(self, per_epoch_only: bool = False) -> list[str]:
        """``raw``, ``ema`` and the extra averagers (post-hoc ones only exist after training)."""
        extra = [n for n, s in self.averagers.items() if not (per_epoch_only and isinstance(s, PostHocSpec))]
        return ["raw", "ema", *extra]

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, as a run records it (``config.yaml``) and is identified by (its run id hashes this):
        every value explicit, defaults included, and ``train.optimizer`` as it trains — ``by_name``'s settings for
        the chosen optimizer applied to the fields
        (:meth:`~emabench.config.train_specs.OptimizerConfig.resolved_dict`). Validating it gives a config whose
        ``to_dict`` is the same, so ``emabench run runs/<run>/config.yaml`` is the same run."""
        raw = self.spec_dict()
        raw["train"]["optimizer"] = self.train.optimizer.resolved_dict()
        return raw

    def spec_dict(self) -> dict[str, Any]:
        """The config as given, defaults filled in but ``by_name`` not applied: what ``--set``/``--grid`` change
        (switching ``train.optimizer.name`` must find the given fields, not another optimizer's settings)."""
        return self.model_dump(mode="python", exclude_defaults=False)
