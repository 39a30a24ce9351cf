"""The experiment configuration, by stage of its life: the strict base (:mod:`.base`), the schema (:mod:`.schema`
with its sections :mod:`.data_specs`, :mod:`.model_specs`, :mod:`.train_specs`, :mod:`.averager_specs`), safe YAML
(:mod:`.yaml_io`), ``--set`` overrides (:mod:`.overrides`), validation with one-line errors (:mod:`.validate`,
walking the schema's keys through unions: :mod:`.keys`) and reading a file or a config shipped inside the package
(:mod:`.load`); the default config, every default written out (:mod:`.defaults`). The public names are re-exported here:
``from emabench.config import Config, load_config, with_overrides, parse_yaml``.
"""

from emabench.config.averager_specs import (
    AdaptiveEMASpec,
    AveragerSpec,
    BiasCorrectedEMASpec,
    BufferPolicy,
    ConstantEMASpec,
    HalfLife,
    PostHocSpec,
    PowerEMASpec,
    ScheduledEMASpec,
    SWASpec,
    TFEMASpec,
    WarmupEMASpec,
)
from emabench.config.data_specs import DATA_SOURCES, DataSpec
from emabench.config.defaults import default_config, default_config_text
from emabench.config.identity import identity
from emabench.config.load import (
    DEFAULT_CONFIG,
    load_config,
    read_config_file,
    shipped_config_path,
    shipped_config_text,
    shipped_configs,
)
from emabench.config.model_specs import MODEL_NAMES, ModelSpec
from emabench.config.overrides import applied_overrides, apply_overrides, check_key, parse_override, with_overrides
from emabench.config.schema import (
    NAME_PATTERN,
    RESERVED_MODEL_NAMES,
    TRACKERS,
    Config,
    EMAConfig,
)
from emabench.config.train_specs import (
    OPTIMIZER_ARGUMENTS,
    EarlyStoppingConfig,
    LRScheduleConfig,
    Monitor,
    OptimizerConfig,
    SchedulerConfig,
    SWALRConfig,
    TeacherConfig,
    TrainConfig,
)
from emabench.config.validate import format_validation_error, validate_config
from emabench.config.yaml_io import dump_yaml, parse_yaml

__all__ = [
    "DATA_SOURCES",
    "DEFAULT_CONFIG",
    "MODEL_NAMES",
    "NAME_PATTERN",
    "OPTIMIZER_ARGUMENTS",
    "RESERVED_MODEL_NAMES",
    "TRACKERS",
    "AdaptiveEMASpec",
    "AveragerSpec",
    "BiasCorrectedEMASpec",
    "BufferPolicy",
    "Config",
    "ConstantEMASpec",
    "DataSpec",
    "EMAConfig",
    "EarlyStoppingConfig",
    "HalfLife",
    "LRScheduleConfig",
    "ModelSpec",
    "Monitor",
    "OptimizerConfig",
    "PostHocSpec",
    "PowerEMASpec",
    "SWALRConfig",
    "SWASpec",
    "ScheduledEMASpec",
    "SchedulerConfig",
    "TFEMASpec",
    "TeacherConfig",
    "TrainConfig",
    "WarmupEMASpec",
    "applied_overrides",
    "apply_overrides",
    "check_key",
    "default_config",
    "default_config_text",
    "dump_yaml",
    "format_validation_error",
    "identity",
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
