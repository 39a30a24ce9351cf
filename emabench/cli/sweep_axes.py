"""``emabench sweep``'s options read into the swept keys and their values, and every way they can contradict each
other refused in one line naming both options (exit 2) — nothing is silently dropped or merged:

- a value listed twice in ``--beta``, ``--seeds`` or one ``--grid`` (it would name one run twice);
- two options sweeping the same key, or one key and a part of it (``--beta`` and ``--grid ema.beta=...``,
  ``--seeds`` and ``--grid seed=...``, ``--grid`` twice for one key);
- ``--set`` of a key the sweep also sets (``--set seed=3`` with ``--seeds``): the sweep's values would win;
- ``--seeds`` ranges of more seeds than ``--max-runs`` allows, counted before any list is built;
- an empty ``--runs-dir`` (it would mean the current directory).
"""

from __future__ import annotations

import json
from typing import Any

from emabench.errors import ConfigError


def parse_betas(text: str) -> list[float]:
    """``"0.99,0.999"`` → ``[0.99, 0.999]``; every value must be a number in [0, 1), each given once."""
    betas = []
    for part in _items(text, "--beta"):
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"--beta: {part!r} is not a number (allowed: comma-separated values in [0, 1))") from None
        if not 0 <= value < 1:
            raise ConfigError(f"--beta: {value} is outside [0, 1) (allowed: comma-separated values in [0, 1))")
        betas.append(value)
    _check_unique(betas, "--beta")
    return betas


def parse_seeds(text: str, limit: int) -> list[int]:
    """``"0,1,2"``, ``"0-9"`` or a mix like ``"0-4,7"`` → the seeds (≥ 0, each given once) in the given order.
    More than ``limit`` seeds are refused before they are listed (``0-100000000`` costs nothing)."""
    ranges = []
    for part in _items(text, "--seeds"):
        low, dash, high = part.partition("-")
        try:
            first, last = int(low), int(high) if dash else int(low)
        except ValueError:
            raise ConfigError(f"--seeds: {part!r} is not an integer or a range like 0-9 (seeds are >= 0)") from None
        if last < first:
            raise ConfigError(f"--seeds: range {part!r} is empty (write low-high with low <= high)")
        ranges.append(range(first, last + 1))
    count = sum(len(r) for r in ranges)
    if count > limit:
        raise ConfigError(
            f"--seeds {text!r} lists {count} seeds, more than --max-runs {limit}; check the range, or allow it "
            f"with --max-runs"
        )
    seeds = [seed for r in ranges for seed in r]
    _check_unique(seeds, "--seeds")
    return seeds


def parse_grid_option(text: str) -> tuple[str, list[Any]]:
    """``"train.optimizer.lr=0.001,0.01"`` → ``("train.optimizer.lr", [0.001, 0.01])`` (values parsed as YAML,
    each given once)."""
    from emabench.config import check_key, parse_yaml

    key, sep, raw = text.partition("=")
    if not sep or not raw.strip():
        raise ConfigError(f"--grid {text!r}: expected KEY=V1,V2,... e.g. train.optimizer.lr=0.001,0.003")
    check_key(key, "--grid", text)  # the key exists; an error quotes the whole option
    values = [parse_yaml(v, f"--grid {key}") for v in _items(raw, f"--grid {key}")]
    _check_unique(values, f"--grid {key.strip()}")
    return key.strip(), values


def sweep_axes(
    beta: str | None, seeds: str | None, grid: list[str] | None, shadows: bool, sets: list[str], max_runs: int
) -> dict[str, list[Any]]:
    """The swept keys and their values from ``--beta`` (unless ``--shadows``), ``--grid`` and ``--seeds``, with
    every contradiction between them and ``--set`` refused (see the module's docstring)."""
    if shadows and beta is None:
        raise ConfigError("--shadows: give the betas to track with --beta")
    axes: dict[str, list[Any]] = {}
    options: dict[str, str] = {}  # swept key → the option that sweeps it
    if beta is not None and not shadows:
        _add(axes, options, "ema.beta", parse_betas(beta), "--beta")
    for item in grid or []:
        key, values = parse_grid_option(item)
        _add(axes, options, key, values, f"--grid {key}")
    if seeds is not None:
        _add(axes, options, "seed", parse_seeds(seeds, max_runs), "--seeds")
    for text in sets:
        key = text.partition("=")[0].strip()
        for swept, option in options.items():
            if _overlap(key, swept):
                raise ConfigError(
                    f"--set {text} and {option} both set {swept}: the sweep's values would replace --set's "
                    "(drop one of them)"
                )
    return axes


def _add(axes: dict[str, list[Any]], options: dict[str, str], key: str, values: list[Any], option: str) -> None:
    for swept, other in options.items():
        if _overlap(key, swept):
            raise ConfigError(f"{other} and {option} both sweep {min(key, swept, key=len)}: give its values once")
    axes[key], options[key] = values, option


def _overlap(a: str, b: str) -> bool:
    """Whether dotted keys ``a`` and ``b`` set the same value (equal, or one inside the other)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _check_unique(values: list[Any], option: str) -> None:
    seen: set[str] = set()
    for value in values:
        canonical = json.dumps(value, sort_keys=True, default=str)
        if canonical in seen:
            raise ConfigError(f"{option}: {value!r} is listed twice (give each value once)")
        seen.add(canonical)


def _items(text: str, option: str) -> list[str]:
    parts = [p.strip() for p in text.split(",")]
    if not parts or any(not p for p in parts):
        raise ConfigError(f"{option}: expected a comma-separated list, got {text!r}")
    return parts
