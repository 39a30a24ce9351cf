"""Planning a sweep: the grid's configs, and the units of work (stacks of runs) that train them.

Nothing here trains or writes; :mod:`emabench.runs.unit` trains a :class:`Unit`, the executors
(:mod:`~emabench.runs.sweep`, :mod:`~emabench.runs.pool`, :mod:`~emabench.runs.ray_executor`) hand units out.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from emabench.config import Config, validate_config, with_overrides
from emabench.errors import ConfigError
from emabench.runs.folder import RunFolder
from emabench.train.build import stack_key

Engine = Literal["auto", "vectorized", "process", "ray"]
ENGINES: tuple[Engine, ...] = ("auto", "vectorized", "process", "ray")


def expand_grid(base: Config, grid: dict[str, Sequence[Any]]) -> list[Config]:
    """Every combination of the grid's dotted keys (e.g. ``{"ema.beta": [...], "seed": [...]}``), validated."""
    keys = list(grid)
    return [with_overrides(base, dict(zip(keys, values))) for values in itertools.product(*grid.values())]


def with_beta_shadows(base: Config, betas: Sequence[float]) -> Config:
    """Add one shadow EMA ``ema_<beta>`` per beta, with the seed EMA's warm-up settings (shadow-mode sweeps)."""
    raw = base.to_dict()
    warmup = {k: v for k, v in raw["ema"].items() if k != "beta"}
    for beta in betas:
        raw["averagers"][f"ema_{beta:g}"] = {"kind": "ema", "beta": beta, **warmup}
    return validate_config(raw, "--shadows")


def plan_stacks(configs: Sequence[Config], engine: Engine, jobs: int) -> list[list[Config]]:
    """Split the runs into units of work: singletons for ``process``; groups that can share one stacked model,
    cut into at most ``jobs`` pieces each, for ``auto``, ``vectorized`` (one group only) and ``ray``."""
    if engine == "process":
        return [[c] for c in configs]
    groups: dict[Any, list[Config]] = {}
    for config in configs:
        groups.setdefault(stack_key(config), []).append(config)
    if engine == "vectorized" and len(groups) > 1:
        raise ConfigError("--engine vectorized: the swept settings change the data or the architecture")
    pieces = max(1, jobs // max(1, len(groups)))
    return [group[i::pieces] for group in groups.values() for i in range(pieces) if group[i::pieces]]


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep will train, before anything runs: ``runs`` configs in ``stacks`` units of work."""

    configs: list[Config]
    stacks: int

    @property
    def runs(self) -> int:
        return len(self.configs)

    @property
    def stacked(self) -> bool:
        """Whether runs share stacked models (fewer units than runs)."""
        return self.stacks < self.runs


def describe(base: Config, grid: dict[str, Sequence[Any]], engine: Engine, jobs: int) -> SweepPlan:
    """Validate every combination of the grid and count the units a fresh sweep would train; raises
    :class:`ConfigError` for a bad combination or an engine that cannot train them."""
    configs = expand_grid(base, grid)
    return SweepPlan(configs, len(plan_stacks(configs, engine, jobs)))


@dataclass(frozen=True)
class Unit:
    """One stacked model to train: fresh runs, or runs that all resume from checkpoints of the same epoch."""

    configs: list[Config]
    resume: bool


def plan_units(configs: Sequence[Config], folder: Path, engine: Engine, jobs: int, force: bool) -> list[Unit]:
    """Resumable runs grouped by (what a stack shares, checkpoint epoch), then fresh runs as :func:`plan_stacks`."""
    fresh: list[Config] = []
    resumable: dict[Any, list[Config]] = {}
    for config in configs:
        state = None if force else RunFolder.for_config(config, folder).resume_point(config)
        if state is None:
            fresh.append(config)
        else:
            resumable.setdefault((stack_key(config), int(state["epoch"])), []).append(config)
    units = []
    pieces = 1 if engine == "process" else max(1, jobs // max(1, len(resumable)))
    for group in resumable.values():
        stacks = [[c] for c in group] if engine == "process" else [group[i::pieces] for i in range(pieces)]
        units += [Unit(stack, True) for stack in stacks if stack]
    return units + [Unit(stack, False) for stack in plan_stacks(fresh, engine, jobs)]
