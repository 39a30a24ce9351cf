"""``emabench sweep``: every combination of betas × seeds × grid values, each run into one sweep folder."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from emabench.cli.common import (
    CheckpointOption,
    ForceOption,
    QuietOption,
    SetOption,
    ThreadsOption,
    TrackOption,
    WriteRunsDirOption,
    check_tracking,
    console,
    exit_interrupted,
    handles_errors,
    nothing_left_on_failure,
    progress_bar,
    runs_dir_path,
    set_threads,
    stopping_notice,
    sweep_progress,
    track_names,
    tracking,
)
from emabench.cli.sweep_axes import parse_betas, sweep_axes
from emabench.cli.until_decided import check_options, run_looks
from emabench.errors import ConfigError, RunError

if TYPE_CHECKING:
    from emabench.config import Config
    from emabench.runs.plan import Grid, SameRun, SweepPlan
    from emabench.runs.ray_cluster import RayOptions
    from emabench.runs.ray_executor import RayProgress
    from emabench.runs.unit import RunOutcome

DEFAULT_CONFIG: Path | None = None  # the seed study shipped inside the package (emabench.config.load)

ConfigArgument = Annotated[
    Path | None,
    typer.Argument(help="Base YAML config (default: the shipped seed study, regression.yaml).", show_default=False),
]
BetaOption = Annotated[
    str | None, typer.Option("--beta", "-b", help="EMA betas to sweep, comma-separated, e.g. 0.99,0.999.")
]
SeedsOption = Annotated[
    str | None,
    typer.Option("--seeds", help="Seeds: a list 0,1,2 or a range 0-9 (default: the config's)."),
]
GridOption = Annotated[
    list[str] | None,
    typer.Option("--grid", "-g", metavar="KEY=V1,V2", help="Sweep any other field too (repeatable)."),
]
JobsOption = Annotated[
    int, typer.Option("--jobs", "-j", min=1, help="Worker processes (--engine ray: Ray tasks in flight).")
]
EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="auto: stack runs that share data and architecture into one vectorized model; "
        "vectorized: insist on it; process: one run per process; "
        "ray: auto's stacks as Ray tasks, on the cluster at `RAY_ADDRESS` (else a local Ray); this process alone "
        "writes the run folders, no shared filesystem needed (`pip install 'emabench[ray]'`).",
    ),
]
MaxRunsOption = Annotated[
    int | None,
    typer.Option(
        "--max-runs", min=1, metavar="N", help="Refuse sweeps of more than N runs (default 1000) before starting."
    ),
]
CpusOption = Annotated[
    int | None,
    typer.Option("--cpus-per-task", min=1, metavar="N", help="--engine ray: CPUs (and torch threads) per task [1]."),
]
GpusOption = Annotated[
    float | None,
    typer.Option(
        "--gpus-per-task",
        min=0,
        metavar="F",
        help="--engine ray: GPUs per task, e.g. 0.25 packs four stacks on a GPU [0]; `device: auto` then trains "
        "on the GPU Ray assigned.",
    ),
]
ShadowsOption = Annotated[
    bool,
    typer.Option(
        "--shadows",
        help="Track every --beta as a shadow EMA `ema_<beta>` of ONE training trajectory per seed instead of one "
        "run per beta; training stays driven by the config's monitor (raw, or the `ema` at its own beta).",
    ),
]
UntilDecidedOption = Annotated[
    bool,
    typer.Option(
        "--until-decided",
        help="Train seeds in looks (5, 10, 20, … up to --max-seeds; only the new seeds each time) and stop when the "
        "report decides every primary comparison (group-sequential levels keep its error over all looks at 5%).",
    ),
]
MaxSeedsOption = Annotated[
    int | None,
    typer.Option("--max-seeds", min=2, metavar="N", help="--until-decided: the most seeds it may take [20]."),
]
PlotsOption = Annotated[
    bool, typer.Option("--plots/--no-plots", help="Draw loss.png and r2.png in every run folder (~0.25 s a run).")
]


@handles_errors
def sweep(
    config: ConfigArgument = DEFAULT_CONFIG,
    beta: BetaOption = None,
    seeds: SeedsOption = None,
    grid: GridOption = None,
    set_: SetOption = None,
    jobs: JobsOption = 1,
    engine: EngineOption = "auto",
    shadows: ShadowsOption = False,
    runs_dir: WriteRunsDirOption = "runs",
    force: ForceOption = False,
    quiet: QuietOption = False,
    checkpoint_every: CheckpointOption = None,
    plots: PlotsOption = False,
    threads: ThreadsOption = 1,
    max_runs: MaxRunsOption = None,
    cpus_per_task: CpusOption = None,
    gpus_per_task: GpusOption = None,
    until_decided: UntilDecidedOption = False,
    max_seeds: MaxSeedsOption = None,
    nproc: Annotated[int | None, typer.Option("--nproc", hidden=True)] = None,
    track: TrackOption = None,
) -> None:
    """Run every combination of betas × seeds × grid values, each into its own run folder of one sweep folder.

    Re-running the same sweep skips runs that already finished, continues checkpointed ones and restarts the rest
    (--force: redo all); runs another emabench process is training are left to it. Ctrl-C stops after the current
    epoch, checkpoints unfinished runs and starts nothing new. Then compare them: `emabench report <sweep folder>`.
    Options that contradict each other (a value listed twice, --set of a swept key, one key swept by two options)
    are refused, not merged. --until-decided adds seeds in looks until the report can decide (see its help).
    """
    from emabench.config import load_config
    from emabench.runs import plan

    if nproc is not None:
        raise ConfigError(
            "--nproc is not supported by sweep (it splits one run over processes): `emabench sweep --jobs N` trains "
            "the sweep's runs in N processes; `emabench run CONFIG --nproc N` trains one custom-model run on N"
        )
    if engine not in plan.ENGINES:
        raise ConfigError(f"--engine: {engine!r} is not one of {', '.join(plan.ENGINES)}")
    options = _ray_options(engine, cpus_per_task, gpus_per_task)
    limit = max_runs or plan.MAX_RUNS
    cap = check_options(seeds, max_seeds, until_decided, force)
    axes = sweep_axes(beta, f"0-{cap - 1}" if cap else seeds, grid, shadows, set_ or [], limit)
    folder_root = runs_dir_path(runs_dir)
    base = load_config(config, set_ or [])
    if shadows:
        base = plan.with_beta_shadows(base, parse_betas(beta or ""))
    described = plan.describe(base, axes, engine, jobs, limit)  # type: ignore[arg-type]  # validates every combination
    set_threads(threads)
    train = functools.partial(
        _train,
        base,
        runs_dir=folder_root,
        quiet=quiet,
        run={
            "jobs": jobs,
            "engine": engine,
            "force": force,
            "mode": "shadows" if shadows else "runs",
            "checkpoint_every": checkpoint_every or 0,
            "plots": plots,
            "max_runs": limit,
            "ray": options,
        },
    )
    with tracking(track_names(track, base.track), folder_root) as trackers:  # checked before anything is said
        if shadows and not quiet:
            _print_shadow_mode(base)
        if not quiet:
            _print_plan(described, engine, jobs, cap)
        if cap:
            run_looks(
                {k: v for k, v in axes.items() if k != "seed"}, cap, lambda grid, record: train(grid, record)[:3], quiet
            )
        else:
            folder, outcomes, stopped, ray_view = train(axes, None, expanded=described.grid)
    if not cap:
        _render(folder, outcomes, stopped=stopped, ray=ray_view)
    check_tracking(trackers)


def _train(
    base: Config,
    axes: dict[str, list[Any]],
    sequential: dict[str, Any] | None,
    *,
    runs_dir: Path,
    quiet: bool,
    run: dict[str, Any],
    expanded: Grid | None = None,
) -> tuple[Path, list[RunOutcome], bool, RayProgress | None]:
    """One call of the sweep with its progress display and Ctrl-C handling: the folder, the outcomes, whether it
    was stopped, and the last Ray counts. ``expanded``: the grid as already expanded (its distinct runs counted)."""
    from emabench.runs.interrupts import StopRequest
    from emabench.runs.plan import count_runs
    from emabench.runs.sweep import sweep as run_sweep

    stop, view = StopRequest(notice=stopping_notice), _RayView()
    total = len(expanded.configs) if expanded is not None else count_runs(axes)
    progress = _progress(run["engine"], total, quiet, view)
    with nothing_left_on_failure(runs_dir), stop.installed(), progress as callbacks:
        folder, outcomes = run_sweep(
            base, axes, runs_dir, stop=stop.is_set, sequential=sequential, expanded=expanded, **run, **callbacks
        )  # fmt: skip
    return folder, outcomes, stop.is_set(), view.last


def _ray_options(engine: str, cpus: int | None, gpus: float | None) -> RayOptions | None:
    """``--cpus-per-task``/``--gpus-per-task`` for Ray's tasks; refused with any other engine."""
    if engine != "ray":
        for name, value in (("--cpus-per-task", cpus), ("--gpus-per-task", gpus)):
            if value is not None:
                raise ConfigError(f"{name}: only with --engine ray (not --engine {engine})")
        return None
    from emabench.runs.ray_cluster import RayOptions

    return RayOptions(cpus_per_task=cpus or 1, gpus_per_task=gpus or 0.0)


class _RayView:
    """The latest Ray counts, kept for the summary after the progress display is gone."""

    def __init__(self) -> None:
        self.last: RayProgress | None = None


@contextlib.contextmanager
def _progress(engine: str, total: int, quiet: bool, view: _RayView) -> Iterator[dict[str, Any]]:
    """The sweep's progress callbacks: finished / running / failed / retried runs on Ray, epochs and stacks here."""
    if engine != "ray":
        with sweep_progress(total, quiet) as (on_epoch, on_stack_done):
            yield {"on_epoch": on_epoch, "on_stack_done": on_stack_done}
        return
    with contextlib.ExitStack() as stack:
        progress = None if quiet else stack.enter_context(progress_bar())
        task = None if progress is None else progress.add_task("runs", total=total, status="")

        def on_ray_progress(counts: RayProgress) -> None:
            view.last = counts
            if progress is not None:
                status = f"{counts.finished} finished, {counts.running} running, {counts.failed} failed, "
                status += f"{counts.retried} retried"
                progress.update(task, completed=counts.finished + counts.failed, status=status)

        yield {"on_ray_progress": on_ray_progress}


def _print_shadow_mode(base: Config) -> None:
    monitor = base.train.early_stopping.monitor
    console.print(
        f"Shadow mode: one trajectory per seed driven by {monitor!r}; betas tracked as "
        f"{', '.join(n for n in base.averagers if n.startswith('ema_'))}."
    )


def _print_plan(described: SweepPlan, engine: str, jobs: int, cap: int = 0) -> None:
    mode = f"{described.stacks} stacked model(s)" if described.stacked else "one model per run"
    where = " on Ray" if engine == "ray" else ""
    for factory, why in described.unstackable.items():
        console.print(
            f"One run at a time: model.stack=vmap cannot run {factory} ({why}).", highlight=False, soft_wrap=True
        )
    if cap:
        from emabench.report.sequential import looks

        seeds = ", ".join(map(str, looks(cap)))
        console.print(
            f"Sweep until decided: up to {described.runs} runs (looks at {seeds} seeds; {jobs} job(s){where})."
        )
        return
    console.print(f"Sweep: {described.runs} runs ({mode}, {jobs} job(s){where}).")
    for line in _same_run_lines(described.grid.same):
        console.print(line, highlight=False, soft_wrap=True)


def _same_run_lines(same: list[SameRun]) -> list[str]:
    """One line per kind of repeated point (the seed set aside): which settings are the same run as which, and why."""
    kinds: dict[tuple[str, str, str], int] = {}
    for point in same:
        key = (_setting(point.requested), _setting(point.same_as), point.why)
        kinds[key] = kinds.get(key, 0) + 1
    return [
        f"Trained once: {asked} is the same run as {kept} ({n} point{'s' if n > 1 else ''}): {why}."
        for (asked, kept, why), n in kinds.items()
    ]


def _setting(values: dict[str, Any]) -> str:
    shown = {key: value for key, value in values.items() if key != "seed"}
    return ", ".join(f"{key.removeprefix('ema.')}={value}" for key, value in shown.items()) or "the base config"


def _render(folder: Path, outcomes: list[RunOutcome], *, stopped: bool, ray: RayProgress | None) -> None:
    """The sweep's outcome counts and where to look next; exit code 130 if it was interrupted, 3 if runs failed."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status.replace("_", " ")] = counts.get(outcome.status.replace("_", " "), 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    resumed = sum(1 for o in outcomes if o.resumed_from and o.status != "skipped")
    summary += f"; {resumed} continued from a checkpoint" if resumed else ""
    if ray is not None and ray.tasks:
        console.print(_traffic(ray), highlight=False)
    if stopped:
        exit_interrupted(f"{summary}; re-run the same command to continue ({folder})")
    console.print(f"Sweep folder: [bold]{folder}[/]  ({summary})")
    if counts.get("locked"):
        console.print(f"{counts['locked']} run(s) are being trained by another emabench process and were left to it.")
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        first = f"{failed[0].folder.name}: {failed[0].error}"
        raise RunError(
            f"{len(failed)} run(s) failed (FAILED in their folders; first: {first}); re-run the same command to "
            "retry them"
        )
    console.print(f"Compare: emabench report {folder}")


def _traffic(ray: RayProgress) -> str:
    """Ray's tasks, retries and the bytes that went over the wire (pickled), in total and per task."""
    to_tasks, from_tasks = ray.bytes_to_tasks / 1024, ray.bytes_from_tasks / 1024
    return (
        f"Ray: {ray.tasks} task(s), {ray.retried} retried; {to_tasks:.1f} KiB sent to tasks and {from_tasks:.1f} KiB "
        f"back ({to_tasks / ray.tasks:.1f} / {from_tasks / ray.tasks:.1f} KiB per task)"
    )
