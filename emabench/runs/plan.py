"""Planning a sweep: the grid's configs, and the units of work (stacks of runs) that train them.

Nothing here trains or writes; :mod:`emabench.runs.unit` trains a :class:`Unit`, the executors
(:mod:`~emabench.runs.sweep`, :mod:`~emabench.runs.pool`, :mod:`~emabench.runs.ray_executor`) hand units out.

Bounds: a sweep holds at most ``max_runs`` runs (:data:`MAX_RUNS` unless asked for more), checked from the axes'
lengths before a single config is built; a unit holds at most :func:`stack_limit` runs, because every run of a unit
in training is locked through one open file (:mod:`emabench.runs.lock`), so the open files stay bounded by
``jobs`` × that limit whatever the sweep's size.
"""

from __future__ import annotations

import itertools
import json
import math
import resource
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from emabench.config import Config, validate_config, with_overrides
from emabench.errors import ConfigError
from emabench.runs.folder import RunFolder
from emabench.runs.layout import run_id
from emabench.train.build import TrainingSizes, beta_free, run_identity, stack_key, warmup_ceiling

Engine = Literal["auto", "vectorized", "process", "ray"]
ENGINES: tuple[Engine, ...] = ("auto", "vectorized", "process", "ray")

MAX_RUNS = 1000  # per sweep unless --max-runs says more: a typo like --seeds 0-100000 must not start 100k runs
MAX_STACK = 256  # runs per stacked model: beyond this a bigger stack gains nothing and holds more open lock files
RESERVED_FDS = 128  # open files left for everything but run locks (torch, data, the executor's pipes)


def count_runs(grid: dict[str, Sequence[Any]]) -> int:
    """How many runs the grid expands to (the product of its axes' lengths), without building any."""
    return math.prod(len(values) for values in grid.values())


def check_size(grid: dict[str, Sequence[Any]], max_runs: int) -> None:
    """Refuse a grid of more than ``max_runs`` runs, naming each axis's length and how to allow it."""
    runs = count_runs(grid)
    if runs > max_runs:
        shape = " × ".join(f"{len(values)} {key}" for key, values in grid.items())
        raise ConfigError(
            f"the sweep has {runs} runs ({shape}), more than --max-runs {max_runs}; "
            f"check the values, or allow it with --max-runs {runs}"
        )


def stack_limit(jobs: int) -> int:
    """The most runs one unit may stack: :data:`MAX_STACK`, fewer when ``jobs`` units at a time would hold more
    run locks (one open file each) than this process may open."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    budget = MAX_STACK * max(1, jobs) if soft == resource.RLIM_INFINITY else soft - RESERVED_FDS
    return max(1, min(MAX_STACK, budget // max(1, jobs)))


@dataclass(frozen=True)
class SameRun:
    """A point of the grid that is the same run as an earlier one (``same_as``), so it is trained once, as ``run``."""

    requested: dict[str, Any]
    same_as: dict[str, Any]
    run: str
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"requested": self.requested, "same_as": self.same_as, "run": self.run, "why": self.why}


@dataclass(frozen=True)
class Grid:
    """The grid's distinct runs (``configs``, in grid order) and the points that repeat one of them (``same``)."""

    configs: list[Config]
    same: list[SameRun]


def expand_grid(base: Config, grid: dict[str, Sequence[Any]], sizes: TrainingSizes | None = None) -> Grid:
    """Every combination of the grid's dotted keys (e.g. ``{"ema.beta": [...], "seed": [...]}``), validated, each
    distinct run once. Two points are the same run when they resolve to the same config, or differ only in warm-up
    EMA βs that the decay never reaches within ``max_epochs`` (:func:`~emabench.train.build.run_identity`; the data
    is loaded, through ``sizes``, only to count the steps of such points)."""
    keys = list(grid)
    points: list[tuple[dict[str, Any], Config]] = []
    same: list[SameRun] = []
    seen: dict[str, tuple[dict[str, Any], Config]] = {}
    for values in itertools.product(*grid.values()):
        setting = dict(zip(keys, values))
        config = with_overrides(base, setting)
        first = seen.setdefault(run_id(config.to_dict()), (setting, config))
        if first[0] is setting:
            points.append(first)
        else:
            same.append(SameRun(setting, first[0], run_id(config.to_dict()), "the same config"))
    twins = _unreached_betas(points, sizes or TrainingSizes())
    same += twins
    repeated = [id(twin.requested) for twin in twins]
    return Grid([c for s, c in points if id(s) not in repeated], same)


def _unreached_betas(points: list[tuple[dict[str, Any], Config]], sizes: TrainingSizes) -> list[SameRun]:
    """The points equal to an earlier one but for warm-up EMA βs their decay never reaches (data loaded only for
    points that differ in nothing else)."""
    groups: dict[str, list[tuple[dict[str, Any], Config]]] = {}
    for point in points:
        groups.setdefault(json.dumps(beta_free(point[1]), sort_keys=True, default=str), []).append(point)
    same = []
    for members in (m for m in groups.values() if len(m) > 1):
        per_epoch = sizes.steps_per_epoch(members[0][1])
        kept: dict[str, tuple[dict[str, Any], Config]] = {}
        for setting, config in members:
            first = kept.setdefault(run_identity(config, per_epoch), (setting, config))
            if first[0] is not setting:
                same.append(SameRun(setting, first[0], run_id(first[1].to_dict()), _why(config, per_epoch)))
    return same


def _why(config: Config, per_epoch: int) -> str:
    epochs = config.train.max_epochs
    steps = epochs * per_epoch
    ceiling = warmup_ceiling(config.ema, steps)
    if ceiling == 0.0:
        return (
            f"the EMA only copies the weights within {epochs} epochs ({steps} steps, update_after_step "
            f"{config.ema.update_after_step}): the same run"
        )
    return (
        f"the EMA warm-up's decay reaches at most {ceiling:.4f} within {epochs} epochs ({steps} steps), below both "
        "βs: the same decays, the same run"
    )


def with_beta_shadows(base: Config, betas: Sequence[float]) -> Config:
    """Add one shadow EMA ``ema_<beta>`` per beta, with the seed EMA's warm-up settings (shadow-mode sweeps)."""
    raw = base.to_dict()
    warmup = {k: v for k, v in raw["ema"].items() if k != "beta"}
    for beta in betas:
        raw["averagers"][f"ema_{beta:g}"] = {"kind": "ema", "beta": beta, **warmup}
    return validate_config(raw, "--shadows")


def plan_stacks(
    configs: Sequence[Config], engine: Engine, jobs: int, sizes: TrainingSizes | None = None
) -> list[list[Config]]:
    """Split the runs into units of work: singletons for ``process``; groups that can share one stacked model,
    cut into ``jobs`` pieces each (fewer for many groups) of at most :func:`stack_limit` runs, for ``auto``,
    ``vectorized`` (one group only) and ``ray``."""
    if engine == "process":
        return [[c] for c in configs]
    groups: dict[Any, list[Config]] = {}
    for config in configs:
        groups.setdefault(stack_key(config), []).append(config)
    if engine == "vectorized" and len(groups) > 1:
        raise ConfigError("--engine vectorized: the swept settings change the data or the architecture")
    pieces = max(1, jobs // max(1, len(groups)))
    sizes = sizes or TrainingSizes()
    return [stack for group in groups.values() for stack in _cut(group, pieces, _limit(group[0], jobs, sizes))]


def unstackable(configs: Sequence[Config], sizes: TrainingSizes | None = None) -> dict[str, str]:
    """The custom models with ``stack: vmap`` that ``torch.func.vmap`` cannot run, ``{factory: why}``: their runs
    train one at a time (:func:`_limit`)."""
    sizes = sizes or TrainingSizes()
    found = {}
    for config in configs:
        if config.model.name == "custom" and config.model.stack == "vmap" and config.model.factory not in found:
            problem = sizes.vmap_problem(config)
            if problem is not None:
                found[config.model.factory] = problem
    return found


PER_SEED_DATA_BYTES = 2 * 1024**3  # a stack's own copies of its runs' splits (split: per_seed) stay below this


def _limit(config: Config, jobs: int, sizes: TrainingSizes) -> int:
    """The most runs of ``config`` 's group in one stack: :func:`stack_limit`, and under ``split: per_seed`` (each
    replica holds its own split of the data) as many as fit :data:`PER_SEED_DATA_BYTES`."""
    limit = stack_limit(jobs)
    if config.model.name == "custom" and config.model.stack == "vmap" and sizes.vmap_problem(config) is not None:
        return 1  # vmap cannot run this module: one run at a time
    if getattr(config.data, "split", "fixed") == "per_seed":
        limit = min(limit, max(1, PER_SEED_DATA_BYTES // max(1, sizes.split_bytes(config))))
    return limit


def _cut(group: list[Config], pieces: int, limit: int) -> list[list[Config]]:
    """``group`` in ``pieces`` interleaved stacks, or more when that would put more than ``limit`` in one."""
    pieces = max(pieces, math.ceil(len(group) / limit))
    return [group[i::pieces] for i in range(pieces) if group[i::pieces]]


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep will train, before anything runs: the grid's distinct runs (``grid.configs``; ``grid.same``
    lists the requested points that repeat one of them) in ``stacks`` units of work."""

    grid: Grid
    stacks: int
    unstackable: dict[str, str] = field(default_factory=dict)  # {factory: why vmap cannot run it}

    @property
    def runs(self) -> int:
        return len(self.grid.configs)

    @property
    def stacked(self) -> bool:
        """Whether runs share stacked models (fewer units than runs)."""
        return self.stacks < self.runs


def describe(
    base: Config, grid: dict[str, Sequence[Any]], engine: Engine, jobs: int, max_runs: int = MAX_RUNS
) -> SweepPlan:
    """Validate every combination of the grid and count the units a fresh sweep would train; raises
    :class:`ConfigError` for a grid of more than ``max_runs`` runs, a bad combination, or an engine that cannot
    train them."""
    check_size(grid, max_runs)
    expanded = expand_grid(base, grid)
    sizes = TrainingSizes()
    stacks = plan_stacks(expanded.configs, engine, jobs, sizes)
    return SweepPlan(expanded, len(stacks), unstackable(expanded.configs, sizes))


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
        stacks = [[c] for c in group] if engine == "process" else _cut(group, pieces, stack_limit(jobs))
        units += [Unit(stack, True) for stack in stacks]
    return units + [Unit(stack, False) for stack in plan_stacks(fresh, engine, jobs)]
