"""Reading a config file: safe YAML, ``--set`` overrides, validation."""

from __future__ import annotations

from pathlib import Path

from emabench.config.overrides import apply_overrides
from emabench.config.schema import Config
from emabench.config.validate import validate_config
from emabench.config.yaml_io import parse_yaml
from emabench.errors import ConfigError


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
