"""Reading a config: a file (bounded, safe YAML), or one of the configs shipped inside the package
(``emabench/configs/*.yaml``: the seed study and friends, what ``emabench run`` with no config trains); then the
``--set`` overrides and validation.

The shipped configs are package data read through :mod:`importlib.resources`, so they exist wherever emabench is
installed (a wheel, an editable install, a zip); ``configs/`` at the repository root is a link to them.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from emabench.config.keys import listed
from emabench.config.overrides import applied_overrides
from emabench.config.schema import Config
from emabench.config.validate import validate_config
from emabench.config.yaml_io import MAX_YAML_CHARS, parse_yaml
from emabench.errors import ConfigError, InputError

DEFAULT_CONFIG = "regression"  # the seed-001 study: what `emabench run` trains without a config
MAX_CONFIG_BYTES = MAX_YAML_CHARS  # a config is a few KB; a bigger file is refused before it is read


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (``None``: the shipped seed study), apply ``--set`` overrides, validate.

    Raises :class:`~emabench.errors.ConfigError` (bad input, exit code 2: the file is the user's input, so a file
    that cannot be read is bad input too)."""
    if path is None:
        text, source = shipped_config_text(DEFAULT_CONFIG), f"{DEFAULT_CONFIG}.yaml (shipped with emabench)"
    else:
        text, source = read_config_file(Path(path)), str(path)
    raw = parse_yaml(text, source)
    if raw is None or not isinstance(raw, dict):
        validate_config(raw, source)  # raises the precise empty/not-a-mapping error
    merged, blame = applied_overrides(raw, overrides or [], source)
    return validate_config(merged, source, blame)


def read_config_file(path: Path) -> str:
    """The text of a config file, refusing what is not one (a folder, a device, a huge or binary file)."""
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.y*ml"))
        hint = f" (YAML files in it: {listed(inside, 10)})" if inside else ""
        raise ConfigError(f"{path}: is a directory, not a config file; give a YAML file{hint}")
    if not path.exists():
        raise ConfigError(
            f"{path}: config file not found (shipped configs: {listed(shipped_configs())}; "
            "`emabench configs NAME` prints one to copy)"
        )
    if not path.is_file():
        raise ConfigError(f"{path}: not a regular file; give a YAML config file")
    try:
        data = _read_at_most(path, MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config ({err.strerror or err})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES:,} bytes; a config is a few KB of YAML")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {err.start}); a config is YAML text") from None


def _read_at_most(path: Path, limit: int) -> bytes:
    """Up to ``limit`` bytes, in chunks: ``read(limit)`` would allocate ``limit`` bytes for a 500-byte file, and a
    size from ``stat`` is not to be trusted (it may grow; ``/proc`` files say 0)."""
    chunks, total = [], 0
    with path.open("rb") as stream:
        while total < limit:
            chunk = stream.read(min(65536, limit - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    return b"".join(chunks)


def _shipped_folder() -> Traversable:
    return resources.files("emabench").joinpath("configs")


def shipped_configs() -> list[str]:
    """The names of the configs shipped inside the package (``regression``, ``averagers``, ...), sorted."""
    folder = _shipped_folder()
    if not folder.is_dir():
        return []
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def _shipped(name: str) -> Traversable:
    name = name.removesuffix(".yaml")
    if name not in shipped_configs():
        raise InputError(f"no shipped config {name!r} (shipped: {listed(shipped_configs()) or 'none'})")
    return _shipped_folder().joinpath(f"{name}.yaml")


def shipped_config_text(name: str) -> str:
    """The YAML text of a shipped config, comments included (what ``emabench configs NAME`` prints)."""
    return _shipped(name).read_text(encoding="utf-8")


def shipped_config_path(name: str) -> Path:
    """A file path of a shipped config, for commands that take a path (a copy when the package is zipped)."""
    resource = _shipped(name)
    if isinstance(resource, Path):
        return resource
    copy = Path(tempfile.mkdtemp(prefix="emabench-config-")) / f"{name.removesuffix('.yaml')}.yaml"
    copy.write_text(resource.read_text(encoding="utf-8"), encoding="utf-8")
    return copy
