"""The experiment configuration, by stage of its life: the strict base (:mod:`.base`), the schema (:mod:`.schema`,
:mod:`.averager_specs`), safe YAML (:mod:`.yaml_io`), ``--set`` overrides (:mod:`.overrides`), validation with
one-line errors (:mod:`.validate`) and reading a file (:mod:`.load`). The public names are re-exported here:
``from emabench.config import Config, load_config, with_overrides, parse_yaml``.
"""

from emabench.config.averager_specs import (
    AveragerSpec,
    BiasCorrectedEMASpec,
    ConstantEMASpec,
    HalfLife,
    PostHocSpec,
    PowerEMASpec,
    SWASpec,
    TFEMASpec,
    WarmupEMASpec,
)
from emabench.config.load import load_config
from emabench.config.overrides import apply_overrides, parse_override, with_overrides
from emabench.config.schema import (
    NAME_PATTERN,
    RESERVED_MODEL_NAMES,
    Config,
    DataConfig,
    EarlyStoppingConfig,
    EMAConfig,
    ModelConfig,
    Monitor,
    OptimizerConfig,
    SchedulerConfig,
    TrainConfig,
)
from emabench.config.validate import format_validation_error, validate_config
from emabench.config.yaml_io import dump_yaml, parse_yaml

__all__ = [
    "NAME_PATTERN",
    "RESERVED_MODEL_NAMES",
    "AveragerSpec",
    "BiasCorrectedEMASpec",
    "Config",
    "ConstantEMASpec",
    "DataConfig",
    "EarlyStoppingConfig",
    "EMAConfig",
    "HalfLife",
    "ModelConfig",
    "Monitor",
    "OptimizerConfig",
    "PostHocSpec",
    "PowerEMASpec",
    "SWASpec",
    "SchedulerConfig",
    "TFEMASpec",
    "TrainConfig",
    "WarmupEMASpec",
    "apply_overrides",
    "dump_yaml",
    "format_validation_error",
    "load_config",
    "parse_override",
    "parse_yaml",
    "validate_config",
    "with_overrides",
]
