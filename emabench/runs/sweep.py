"""Sweeps: every grid combination into ``<runs_dir>/sweep-<name>-<hash>/<run-id>/``, trained by an executor.

Re-running skips DONE runs, resumes checkpointed ones (stacked again with runs saved after the same epoch) and
restarts the rest; runs another process is training (locked) are left to it. ``stop`` (e.g.
:class:`~emabench.runs.interrupts.StopRequest` after Ctrl-C) is checked after every epoch: unfinished runs are
checkpointed and marked interrupted, and nothing more is launched. The executors: this process, a local process pool
(:mod:`emabench.runs.pool`) or Ray tasks (:mod:`emabench.runs.ray_executor`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from emabench.config import Config
from emabench.errors import ConfigError
from emabench.runs import observe, ray_executor
from emabench.runs.atomic import inside
from emabench.runs.folder import RunFolder
from emabench.runs.plan import MAX_RUNS, Engine, Grid, Unit, check_size, expand_grid, plan_units
from emabench.runs.pool import run_in_pool
from emabench.runs.ray_cluster import RayOptions, check_devices, require_ray
from emabench.runs.ray_executor import ProgressCallback
from emabench.runs.sweep_folder import sweep_dir, write_sweep_spec
from emabench.runs.unit import EpochCallback, RunOutcome, StopCheck
from emabench.runs.work import SweepWork
from emabench.train.build import check_step_warmups, check_task_functions, runnable_device
from emabench.train.classes import check_classes

StackCallback = Callable[[list[RunOutcome]], None]


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
    on_stack_done: StackCallback | None = None,
    stop: StopCheck | None = None,
    checkpoint_every: int = 0,
    plots: bool = False,
    max_runs: int = MAX_RUNS,
    ray: RayOptions | None = None,
    on_ray_progress: ProgressCallback | None = None,
    expanded: Grid | None = None,
    sequential: dict[str, Any] | None = None,
) -> tuple[Path, list[RunOutcome]]:
    """Run every grid combination into ``<runs_dir>/sweep-<name>-<hash>/<run-id>/``; DONE runs are skipped,
    checkpointed ones resumed, runs another process is training left to it (``locked``).

    A grid of more than ``max_runs`` runs is refused before anything is written. Points that are the same run as
    another (:func:`~emabench.runs.plan.expand_grid`; ``expanded`` if the caller has expanded the grid already) are
    trained once and listed in ``sweep.json`` under ``same_runs``.

    ``mode`` is recorded in ``sweep.json``: ``runs`` (one run per setting) or ``shadows`` (settings tracked as
    shadow averagers of one trajectory, see :func:`emabench.runs.plan.with_beta_shadows`).

    ``engine="ray"``: the units are Ray tasks, ``jobs`` at a time, each asking for ``ray``'s resources
    (:mod:`emabench.runs.ray_executor`); ``on_ray_progress`` gets the run counts as they change.

    ``sequential`` (``sweep --until-decided``: ``max_seeds``, ``alpha``, ``looks``) is recorded in ``sweep.json``;
    the folder is then named without the seeds, so that every look of the study trains into the same one."""
    if engine == "ray":
        require_ray()  # refuse before anything is written
    elif ray is not None:
        raise ConfigError(f"--cpus-per-task/--gpus-per-task: only with --engine ray (not --engine {engine})")
    check_size(grid, max_runs)
    expanded = expanded or expand_grid(base, grid)
    configs = expanded.configs
    spec = {"base": base.to_dict(), "grid": {k: list(v) for k, v in grid.items()}, "mode": mode}
    folder = sweep_dir(Path(runs_dir), base.name, spec, sequential)
    spec = spec | ({"sequential": sequential} if sequential is not None else {})
    inside(folder, runs_dir)
    pending, outcomes = _not_done(configs, folder, force)
    _check_devices(pending, engine, ray)  # refuse before any folder is created
    check_step_warmups(pending)
    check_task_functions(pending)
    check_classes(pending)
    same_runs = [same.to_json() for same in expanded.same]
    spec |= {"engine": engine, "jobs": jobs, "same_runs": same_runs}
    write_sweep_spec(folder, spec)
    observer = observe.current()
    observer.sweep_started(folder, spec)
    for outcome in outcomes:  # finished before: copied if the observer's copy is missing or behind
        observer.existing(outcome.folder)
    units = plan_units(pending, folder, engine, jobs, force)
    work = SweepWork(folder, engine, force, stop, checkpoint_every, plots)
    if engine == "ray":
        outcomes += ray_executor.run_units(units, work, jobs, on_stack_done, ray, on_ray_progress)
    elif jobs > 1 and len(units) > 1:
        outcomes += run_in_pool(units, work, jobs, on_stack_done)
    else:
        outcomes += _run_here(units, work, on_epoch, on_stack_done)
    observer.sweep_ended(folder, [o.status for o in outcomes])
    return folder, outcomes


def _check_devices(pending: list[Config], engine: Engine, ray: RayOptions | None) -> None:
    """Locally, this machine must have the devices (and CUDA for fp16); on Ray, the tasks' nodes (asked for through
    ``ray``)."""
    if engine == "ray":
        check_devices({c.device for c in pending}, ray or RayOptions())
        return
    for config in {(c.device, c.train.precision): c for c in pending}.values():
        runnable_device(config)


def _not_done(configs: list[Config], folder: Path, force: bool) -> tuple[list[Config], list[RunOutcome]]:
    """The configs still to train, and the outcomes of the runs already DONE (skipped unless ``force``)."""
    pending, skipped = [], []
    for config in configs:
        run_folder = RunFolder.for_config(config, folder)
        if run_folder.is_done and not force:
            skipped.append(RunOutcome.skipped(run_folder))
        else:
            pending.append(config)
    return pending, skipped


def _run_here(
    units: list[Unit], work: SweepWork, on_epoch: EpochCallback | None, on_stack_done: StackCallback | None
) -> list[RunOutcome]:
    """Train the units one after the other in this process, each claimed (locked) just before it trains."""
    outcomes: list[RunOutcome] = []
    for unit in units:
        if work.stopping():
            outcomes += work.not_started(unit)
            continue
        for claimed, locks in work.claim(unit, outcomes):
            try:
                done = work.train(claimed, on_epoch)
            finally:
                for lock in locks:
                    lock.release()
            outcomes += done
            if on_stack_done is not None:
                on_stack_done(done)
    return outcomes
