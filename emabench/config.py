"""The experiment configuration: a typed schema, safe YAML loading and ``--set`` overrides.

Every knob of the seed study is a field here; nothing that changes the experiment hides in code. Config keys equal
field names, unknown keys are refused by name, and every error is one line naming the dotted key.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emabench.errors import ConfigError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class _Section(BaseModel):
    # strict: YAML already gives typed scalars, so "0.1" (a string) for a float is a mistake, not a number.
    # allow_inf_nan=False: no knob takes inf or nan, and ``gamma: .inf`` or ``half_life: .inf`` passed the bounds
    # only to fail later, when training built its averagers.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


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


# --- extra averagers (issue 3): tracked beside raw and the seed's ``ema`` in the same run -------------------------


class HalfLife(_Section):
    """A decay horizon instead of a bare beta: the weight of a step halves after ``value`` steps/samples/epochs."""

    value: float = Field(gt=0, le=1e9)  # beyond that the per-update decay rounds to 1.0 in float64
    unit: Literal["steps", "samples", "epochs"]


class _DecaySpec(_Section):
    beta: float | None = Field(default=None, ge=0, lt=1)
    half_life: HalfLife | None = None
    update_every: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _one_horizon(self) -> _DecaySpec:
        if (self.beta is None) == (self.half_life is None):
            raise ValueError("give exactly one of beta or half_life")
        return self


class WarmupEMASpec(_DecaySpec):
    """The seed's EMA (warm-up ``clamp(1 − (1 + e/inv_gamma)^−power, min_value, beta)``)."""

    kind: Literal["ema"]
    update_after_step: int = Field(ge=0)
    inv_gamma: float = Field(gt=0)
    power: float = Field(gt=0)
    min_value: float = Field(default=0.0, ge=0, lt=1)


class ConstantEMASpec(_DecaySpec):
    """``average ← β·average + (1 − β)·θ`` from the first update on (a copy before ``update_after_step``)."""

    kind: Literal["constant_ema"]
    update_after_step: int = Field(default=0, ge=0)


class TFEMASpec(_DecaySpec):
    """TensorFlow/Paddle ``num_updates``: ``d = min(β, (1 + n)/(10 + n))``."""

    kind: Literal["tf_ema"]


class BiasCorrectedEMASpec(_DecaySpec):
    """Zero-initialised EMA divided by ``1 − β^t`` (seeds 001/002)."""

    kind: Literal["bias_corrected_ema"]


class SWASpec(_Section):
    """Equal average of snapshots from the end of epoch ``start_epoch`` on, every ``every_steps`` optimizer steps
    (``null``: once per epoch). With ``swa_lr`` the learning rate anneals to it over ``anneal_epochs`` (torch's
    SWALR) from that epoch on, replacing the plateau scheduler — which changes the raw trajectory too."""

    kind: Literal["swa"]
    start_epoch: int = Field(ge=0)
    every_steps: int | None = Field(default=None, ge=1)
    swa_lr: float | None = Field(default=None, gt=0)
    anneal_epochs: int = Field(default=10, ge=0)
    anneal_strategy: Literal["cos", "linear"] = "cos"


def _check_sigma_rel(value: float | None) -> float | None:
    if value is not None:
        from emabench.averaging import sigma_rel_to_gamma

        sigma_rel_to_gamma(value)  # raises ValueError naming the allowed range
    return value


class PowerEMASpec(_Section):
    """EDM2's power-function EMA ``β(t) = (1 − Δt/t)^(γ+1)``, by ``sigma_rel`` or ``gamma``."""

    kind: Literal["power_ema"]
    sigma_rel: float | None = None
    gamma: float | None = Field(default=None, gt=-1, le=1e6)
    update_every: int = Field(default=1, ge=1)

    @field_validator("sigma_rel")
    @classmethod
    def _valid_sigma_rel(cls, value: float | None) -> float | None:
        return _check_sigma_rel(value)

    @model_validator(mode="after")
    def _one_profile(self) -> PowerEMASpec:
        if (self.sigma_rel is None) == (self.gamma is None):
            raise ValueError("give exactly one of sigma_rel or gamma")
        return self


class PostHocSpec(_Section):
    """Post-hoc EMA (EDM2 Algorithm 3): track ≥ 2 power-EMA profiles, snapshot them every ``snapshot_every``
    steps, and synthesize each ``sigma_rel`` in ``targets`` after training (reported with its fit error)."""

    kind: Literal["posthoc"]
    sigma_rels: list[float] = Field(min_length=2)
    snapshot_every: int = Field(ge=1)
    targets: list[float] = Field(min_length=1)
    update_every: int = Field(default=1, ge=1)

    @field_validator("sigma_rels", "targets")
    @classmethod
    def _valid_profiles(cls, values: list[float]) -> list[float]:
        for value in values:
            _check_sigma_rel(value)
        return values


AveragerSpec = Annotated[
    WarmupEMASpec | ConstantEMASpec | TFEMASpec | BiasCorrectedEMASpec | SWASpec | PowerEMASpec | PostHocSpec,
    Field(discriminator="kind"),
]
RESERVED_MODEL_NAMES = ("raw", "ema")


class Config(_Section):
    name: str = Field(pattern=NAME_PATTERN)
    seed: int = Field(ge=0)
    device: Literal["auto", "cpu", "cuda"]
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    ema: EMAConfig
    averagers: dict[str, AveragerSpec] = Field(default_factory=dict)  # more shadows of the same run, by name

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


# --- YAML -------------------------------------------------------------------------------------------------------


class _SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-5`` as a float (YAML 1.2), where PyYAML 1.1 reads a string."""


def _construct_mapping_no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (each name may appear once)", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_SafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_no_duplicates)

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
        loader = _SafeLoader(text)  # a yaml.SafeLoader: never constructs Python objects from tags
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except RecursionError:  # PyYAML parses nested brackets recursively: ~900 levels exhaust the stack
        raise ConfigError(f"{source}: invalid YAML: nested too deeply") from None


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
        if getattr(annotation, "__origin__", None) is dict:
            return  # a mapping of named entries (averagers): the validation of the whole config checks the rest
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
    key = ".".join(str(part) for part in error["loc"]).encode("unicode_escape").decode("ascii")  # one line, always
    kind = error["type"]
    if not key:  # a whole-config check: its message names the keys involved
        return error["msg"].removeprefix("Value error, ")
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
