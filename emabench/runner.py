"""Runs and sweeps: config → data → engine → run folders. ``run(config, runs_dir)`` works from Python and the CLI.

The engine yields history rows; this module hands them to :mod:`emabench.rundir` as they come (so a killed run
keeps every finished epoch), and on each replica's last epoch derives its metrics table and plots.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from emabench import __version__
from emabench.config import Config, dump_yaml, with_overrides
from emabench.data import make_dataset
from emabench.engine import EpochRecord, Trainer, stack_key
from emabench.errors import ConfigError
from emabench.rundir import LOSS_PLOT, R2_PLOT, RunFolder, run_id, sweep_dir, write_sweep_spec

EpochCallback = Callable[[Trainer, list[EpochRecord]], None]
Engine = Literal["auto", "vectorized", "process"]


@dataclass(frozen=True)
class RunOutcome:
    """What one run ended as; ``status`` is ``completed``, ``diverged`` or ``skipped`` (already DONE)."""

    folder: RunFolder
    status: str
    epochs: int
    stop_reason: str
    wall_time_s: float


def run_folder_for(config: Config, runs_dir: Path) -> RunFolder:
    return RunFolder(Path(runs_dir) / run_id(config.to_dict()))


def train_stack(
    configs: Sequence[Config], folders: Sequence[RunFolder], on_epoch: EpochCallback | None = None
) -> list[RunOutcome]:
    """Train ``configs`` as one stacked model, writing replica r into ``folders[r]``."""
    start = time.perf_counter()
    trainer = Trainer(configs, make_dataset(configs[0].data))  # validates the device before anything is written
    for folder, config in zip(folders, configs):
        folder.clear()
        folder.create().write_config(dump_yaml(config.to_dict()))
    histories: list[list[dict[str, float]]] = [[] for _ in configs]
    outcomes: dict[int, RunOutcome] = {}
    try:
        while not trainer.done:
            records = trainer.run_epoch()
            for record in records:
                histories[record.replica].append(record.row)
                folders[record.replica].write_history(histories[record.replica])
                if record.stop_reason is not None:
                    elapsed = time.perf_counter() - start
                    outcomes[record.replica] = _finish(
                        folders[record.replica], histories[record.replica], record, elapsed, trainer
                    )
            if on_epoch is not None:
                on_epoch(trainer, records)
    except BaseException:  # Ctrl-C, SIGTERM (raised as KeyboardInterrupt by the CLI) or a crash: keep what ran
        for r, folder in enumerate(folders):
            if r not in outcomes:
                folder.mark_interrupted({"epochs": len(histories[r]), "emabench": __version__})
        raise
    return [outcomes[r] for r in range(len(configs))]


def _finish(
    folder: RunFolder, history: list[dict[str, float]], record: EpochRecord, elapsed: float, trainer: Trainer
) -> RunOutcome:
    import pandas as pd

    from emabench.plots import loss_figure, r2_figure
    from emabench.tables import final_metrics

    reason = record.stop_reason or ""
    frame = pd.DataFrame(history)
    folder.write_metrics(final_metrics(frame, record.final_extra))
    folder.save_figure(loss_figure(frame), LOSS_PLOT)
    folder.save_figure(r2_figure(frame), R2_PLOT)
    status = "diverged" if reason == "diverged" else "completed"
    folder.mark_done(
        {
            "status": status,
            "stop_reason": reason,
            "epochs": len(history),
            "wall_time_s": round(elapsed, 3),
            "device": str(trainer.device),
            "replicas_in_stack": trainer.replicas,
            "emabench": __version__,
            "torch": torch.__version__,
        }
    )
    return RunOutcome(folder, status, len(history), reason, elapsed)


def run(
    config: Config,
    runs_dir: str | Path = "runs",
    *,
    force: bool = False,
    on_epoch: EpochCallback | None = None,
) -> RunOutcome:
    """Train one run into ``<runs_dir>/<run-id>/``; a run already DONE is skipped unless ``force``."""
    folder = run_folder_for(config, Path(runs_dir))
    if folder.is_done and not force:
        info = folder.done_info()
        return RunOutcome(folder, "skipped", int(info.get("epochs", 0)), str(info.get("stop_reason", "")), 0.0)
    return train_stack([config], [folder], on_epoch)[0]


# --- sweeps -----------------------------------------------------------------------------------------------------


def expand_grid(base: Config, grid: dict[str, Sequence[Any]]) -> list[Config]:
    """Every combination of the grid's dotted keys (e.g. ``{"ema.beta": [...], "seed": [...]}``), validated."""
    keys = list(grid)
    return [with_overrides(base, dict(zip(keys, values))) for values in itertools.product(*grid.values())]


def with_beta_shadows(base: Config, betas: Sequence[float]) -> Config:
    """Add one shadow EMA ``ema_<beta>`` per beta, with the seed EMA's warm-up settings (shadow-mode sweeps)."""
    from emabench.config import validate_config

    raw = base.to_dict()
    warmup = {k: v for k, v in raw["ema"].items() if k != "beta"}
    for beta in betas:
        raw["averagers"][f"ema_{beta:g}"] = {"kind": "ema", "beta": beta, **warmup}
    return validate_config(raw, "--shadows")


def plan_stacks(configs: Sequence[Config], engine: Engine, jobs: int) -> list[list[Config]]:
    """Split the runs into units of work: singletons for ``process``; groups that can share one stacked model,
    cut into at most ``jobs`` pieces each, for ``vectorized``."""
    if engine == "process":
        return [[c] for c in configs]
    groups: dict[Any, list[Config]] = {}
    for config in configs:
        groups.setdefault(stack_key(config), []).append(config)
    if engine == "vectorized" and len(groups) > 1:
        raise ConfigError("--engine vectorized: the swept settings change the data or the architecture")
    pieces = max(1, jobs // max(1, len(groups)))
    return [group[i::pieces] for group in groups.values() for i in range(pieces) if group[i::pieces]]


def sweep(
    base: Config,
    grid: dict[str, Sequence[Any]],
    runs_dir: str | Path = "runs",
    *,
    jobs: int = 1,
    engine: Engine = "auto",
    force: bool = False,
    mode: str = "runs",
    on_epoch: EpochCallback | None = None,
    on_stack_done: Callable[[list[RunOutcome]], None] | None = None,
) -> tuple[Path, list[RunOutcome]]:
    """Run every grid combination into ``<runs_dir>/sweep-<name>-<hash>/<run-id>/``; DONE runs are skipped.

    ``mode`` is recorded in ``sweep.json``: ``runs`` (one run per setting) or ``shadows`` (settings tracked as
    shadow averagers of one trajectory, see :func:`with_beta_shadows`)."""
    configs = expand_grid(base, grid)
    spec = {"base": base.to_dict(), "grid": {k: list(v) for k, v in grid.items()}, "mode": mode}
    folder = sweep_dir(Path(runs_dir), base.name, spec)
    pending, outcomes = [], []
    for config in configs:
        run_folder = run_folder_for(config, folder)
        if run_folder.is_done and not force:
            info = run_folder.done_info()
            outcomes.append(RunOutcome(run_folder, "skipped", int(info.get("epochs", 0)), "", 0.0))
        else:
            pending.append(config)
    write_sweep_spec(folder, spec | {"engine": engine, "jobs": jobs})
    stacks = plan_stacks(pending, engine, jobs)
    if jobs > 1 and len(stacks) > 1:
        outcomes += _run_in_pool(stacks, folder, jobs, on_stack_done)
    else:
        for stack in stacks:
            done = train_stack(stack, [run_folder_for(c, folder) for c in stack], on_epoch)
            outcomes += done
            if on_stack_done is not None:
                on_stack_done(done)
    return folder, outcomes


def _stack_worker(configs: list[dict[str, Any]], folder: str, threads: int) -> list[RunOutcome]:
    torch.set_num_threads(threads)
    stack = [Config.model_validate(c) for c in configs]
    return train_stack(stack, [run_folder_for(c, Path(folder)) for c in stack])


def _run_in_pool(
    stacks: list[list[Config]],
    folder: Path,
    jobs: int,
    on_stack_done: Callable[[list[RunOutcome]], None] | None,
) -> list[RunOutcome]:
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // jobs)
    outcomes: list[RunOutcome] = []
    context = multiprocessing.get_context("spawn")  # fork after torch has started threads can deadlock
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(_stack_worker, [c.to_dict() for c in stack], str(folder), threads) for stack in stacks]
        try:
            for future in as_completed(futures):
                done = future.result()
                outcomes += done
                if on_stack_done is not None:
                    on_stack_done(done)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return outcomes
