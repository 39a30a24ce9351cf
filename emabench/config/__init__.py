"""The experiment configuration, by stage of its life: the strict base (:mod:`.base`), the schema (:mod:`.schema`,
:mod:`.averager_specs`), safe YAML (:mod:`.yaml_io`), ``--set`` overrides (:mod:`.overrides`), validation with
one-line errors (:mod:`.validate`, walking the schema's keys through unions: :mod:`.keys`) and reading a file or a
config shipped inside the package (:mod:`.load`). The public names are re-exported here:
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
from emabench.config.load import (
    DEFAULT_CONFIG,
    load_config,
    read_config_file,
    shipped_config_path,
    shipped_config_text,
    shipped_configs,
)
from emabench.config.overrides import applied_overrides, apply_overrides, check_key, parse_override, with_overrides
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
    "DEFAULT_CONFIG",
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
    "applied_overrides",
    "apply_overrides",
    "check_key",
    "dump_yaml",
    "format_validation_error",
    "load_config",
    "parse_override",
    "parse_yaml",
    "read_config_file",
    "shipped_config_path",
    "shipped_config_text",
    "shipped_configs",
    "validate_config",
    "with_overrides",
]
