"""The experiment configuration: a typed schema, safe YAML loading and ``--set`` overrides.

Every knob of the seed study is a field here; nothing that changes the experiment hides in code. Config keys equal
field names, unknown keys are refused by name, and every error is one line naming the dotted key.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emabench.errors import ConfigError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class _Section(BaseModel):
    # strict: YAML already gives typed scalars, so "0.1" (a string) for a float is a mistake, not a number.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataConfig(_Section):
    """sklearn ``make_regression`` data, scaled and split as seed 001 does."""

    n_samples: int = Field(ge=10)
    n_features: int = Field(ge=1)
    n_informative: int | None = Field(default=None, ge=1)  # None: make_regression's default (10)
    noise: float = Field(ge=0)
    random_state: int = Field(ge=0)  # the data set is fixed across run seeds, as in the seed script
    scale_x: bool  # StandardScaler on X, fit on all samples before the split (the seed's choice)
    scale_y: bool
    test_size: float = Field(gt=0, lt=1)
    split_random_state: int = Field(ge=0)


class ModelConfig(_Section):
    """MLP: Linear → ReLU → Dropout per hidden layer, then Linear to one output."""

    hidden_sizes: list[int] = Field(min_length=1)
    dropout: float = Field(ge=0, lt=1)
    init: Literal["xavier_normal", "xavier_uniform"]  # weights; biases start at zero

    @field_validator("hidden_sizes")
    @classmethod
    def _positive_sizes(cls, sizes: list[int]) -> list[int]:
        if any(size < 1 for size in sizes):
            raise ValueError(f"every hidden size must be >= 1, got {sizes}")
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


Monitor = Literal["raw", "ema"]


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


class Config(_Section):
    name: str = Field(pattern=NAME_PATTERN)
    seed: int = Field(ge=0)
    device: Literal["auto", "cpu", "cuda"]
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    ema: EMAConfig

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="python")


# --- YAML -------------------------------------------------------------------------------------------------------


class _SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-5`` as a float (YAML 1.2), where PyYAML 1.1 reads a string."""


_FLOAT_RE = re.compile(
    r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
    r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.inf|\.Inf|\.INF|\.nan|\.NaN|\.NAN)$"
)
_SafeLoader.yaml_implicit_resolvers = copy.deepcopy(yaml.SafeLoader.yaml_implicit_resolvers)
for _first in list("-+0123456789."):
    _SafeLoader.yaml_implicit_resolvers[_first] = [
        (tag, regexp)
        for tag, regexp in _SafeLoader.yaml_implicit_resolvers.get(_first, [])
        if tag != "tag:yaml.org,2002:float"
    ]
    _SafeLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, [_first])


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML safely (no Python tags are ever constructed); errors name the source and line."""
    try:
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - _SafeLoader subclasses yaml.SafeLoader
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


# --- overrides --------------------------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.optimizer.lr=0.01"`` → ``(["train", "optimizer", "lr"], 0.01)``; the value is a YAML scalar."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. train.optimizer.lr=0.01")
    path = key.split(".")
    _check_key_path(path, text)
    return path, parse_yaml(raw, f"--set {key}") if raw.strip() else None


def _check_key_path(path: list[str], text: str) -> None:
    model: type[BaseModel] | None = Config
    for depth, part in enumerate(path):
        fields = model.model_fields if model is not None else {}
        if part not in fields:
            where = ".".join(path[:depth]) or "the top level"
            allowed = ", ".join(fields) or "nothing (not a section)"
            raise ConfigError(f"--set {text!r}: unknown key {part!r} in {where} (allowed: {allowed})")
        annotation = fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``KEY=VALUE`` override set (sections are created as needed)."""
    result = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
    return result


# --- validation -------------------------------------------------------------------------------------------------


def validate_config(raw: Any, source: str = "config") -> Config:
    """Validate a parsed document into a :class:`Config`, or raise one :class:`ConfigError` line."""
    if raw is None:
        raise ConfigError(f"{source}: the file is empty; expected a mapping of settings")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level, got {type(raw).__name__}")
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: {format_validation_error(err)}") from None


def format_validation_error(err: ValidationError) -> str:
    return "; ".join(_describe(e) for e in err.errors(include_url=False))


def _describe(error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "config"
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _model_at(error["loc"][:-1])
        allowed = f" (allowed: {', '.join(parent.model_fields)})" if parent is not None else ""
        return f"{key}: unknown key{allowed}"
    if kind == "missing":
        return f"{key}: missing required key"
    message = error["msg"].removeprefix("Value error, ")
    if kind == "value_error":  # our validators already quote the offending value
        return f"{key}: {message}"
    return f"{key}: {message} (got {error.get('input')!r})"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply ``--set`` overrides, validate. Raises :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config ({err})") from None
    raw = parse_yaml(text, str(path))
    if raw is None or not isinstance(raw, dict):
        validate_config(raw, str(path))  # raises the precise empty/not-a-mapping error
    return validate_config(apply_overrides(raw, overrides or []), str(path))


def with_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """A copy of ``config`` with dotted-key values replaced, validated again."""
    raw = config.to_dict()
    for key, value in overrides.items():
        node = raw
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    return validate_config(raw)
