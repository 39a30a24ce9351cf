"""``emabench sweep``: every combination of betas × seeds × grid values, each run into one sweep folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from emabench.cli.common import (
    CheckpointOption,
    ForceOption,
    QuietOption,
    RunsDirOption,
    SetOption,
    ThreadsOption,
    console,
    exit_interrupted,
    handles_errors,
    set_threads,
    stopping_notice,
    sweep_progress,
)
from emabench.errors import ConfigError

if TYPE_CHECKING:
    from emabench.config import Config
    from emabench.runs.plan import SweepPlan
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
    int,
    typer.Option("--jobs", "-j", min=1, help="Worker processes (--engine ray: Ray tasks at a time, 1 CPU each)."),
]
EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="auto: stack runs that share data and architecture into one vectorized model; "
        "vectorized: insist on it; process: one run per process; "
        "ray: auto's stacks as Ray tasks, on the cluster at `RAY_ADDRESS` (else a local Ray), "
        "with the runs folder on a filesystem every node shares (`pip install 'emabench[ray]'`).",
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
    runs_dir: RunsDirOption = Path("runs"),
    force: ForceOption = False,
    quiet: QuietOption = False,
    checkpoint_every: CheckpointOption = None,
    plots: PlotsOption = False,
    threads: ThreadsOption = 1,
    nproc: Annotated[int | None, typer.Option("--nproc", hidden=True)] = None,
) -> None:
    """Run every combination of betas × seeds × grid values, each into its own run folder of one sweep folder.

    Re-running the same sweep skips runs that already finished, continues checkpointed ones and restarts the rest
    (--force: redo all); runs another emabench process is training are left to it. Ctrl-C stops after the current
    epoch, checkpoints unfinished runs and starts nothing new. Then compare them: `emabench report <sweep folder>`.
    """
    from emabench.config import load_config
    from emabench.runs import plan
    from emabench.runs.interrupts import StopRequest
    from emabench.runs.sweep import sweep as run_sweep

    if nproc is not None:
        raise ConfigError(
            "--nproc is not supported by sweep (it splits one run over processes): `emabench sweep --jobs N` trains "
            "the sweep's runs in N processes; `emabench run CONFIG --nproc N` trains one custom-model run on N"
        )
    if engine not in plan.ENGINES:
        raise ConfigError(f"--engine: {engine!r} is not one of {', '.join(plan.ENGINES)}")
    axes = _axes(beta, seeds, grid, shadows)
    base = load_config(config, set_ or [])
    if shadows:
        base = plan.with_beta_shadows(base, parse_betas(beta or ""))
        if not quiet:
            _print_shadow_mode(base)
    described = plan.describe(base, axes, engine, jobs)  # type: ignore[arg-type]  # validates every combination
    if not quiet:
        _print_plan(described, engine, jobs)
    set_threads(threads)
    stop = StopRequest(notice=stopping_notice)
    with stop.installed(), sweep_progress(described.runs, quiet) as (on_epoch, on_stack_done):
        folder, outcomes = run_sweep(
            base,
            axes,
            runs_dir,
            jobs=jobs,
            engine=engine,  # type: ignore[arg-type]
            force=force,
            mode="shadows" if shadows else "runs",
            on_epoch=on_epoch,
            on_stack_done=on_stack_done,
            stop=stop.is_set,
            checkpoint_every=checkpoint_every or 0,
            plots=plots,
        )
    _render(folder, outcomes, stopped=stop.is_set())


def parse_betas(text: str) -> list[float]:
    """``"0.99,0.999"`` → ``[0.99, 0.999]``; every value must be a number in [0, 1)."""
    betas = []
    for part in _items(text, "--beta"):
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"--beta: {part!r} is not a number (allowed: comma-separated values in [0, 1))") from None
        if not 0 <= value < 1:
            raise ConfigError(f"--beta: {value} is outside [0, 1) (allowed: comma-separated values in [0, 1))")
        betas.append(value)
    return betas


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"``, ``"0-9"`` or a mix like ``"0-4,7"`` → a list of distinct seeds ≥ 0 in the given order."""
    seeds: list[int] = []
    for part in _items(text, "--seeds"):
        low, dash, high = part.partition("-")
        try:
            values = range(int(low), int(high) + 1) if dash else [int(part)]
        except ValueError:
            raise ConfigError(f"--seeds: {part!r} is not an integer or a range like 0-9") from None
        if dash and int(high) < int(low):
            raise ConfigError(f"--seeds: range {part!r} is empty (write low-high with low <= high)")
        seeds += [s for s in values if s not in seeds]
    if any(s < 0 for s in seeds):
        raise ConfigError("--seeds: seeds must be >= 0")
    return seeds


def parse_grid_option(text: str) -> tuple[str, list[Any]]:
    """``"train.optimizer.lr=0.001,0.01"`` → ``("train.optimizer.lr", [0.001, 0.01])`` (values parsed as YAML)."""
    from emabench.config import check_key, parse_yaml

    key, sep, raw = text.partition("=")
    if not sep or not raw.strip():
        raise ConfigError(f"--grid {text!r}: expected KEY=V1,V2,... e.g. train.optimizer.lr=0.001,0.003")
    check_key(key, "--grid", text)  # the key exists; an error quotes the whole option
    return key.strip(), [parse_yaml(v, f"--grid {key}") for v in _items(raw, f"--grid {key}")]


def _items(text: str, option: str) -> list[str]:
    parts = [p.strip() for p in text.split(",")]
    if not parts or any(not p for p in parts):
        raise ConfigError(f"{option}: expected a comma-separated list, got {text!r}")
    return parts


def _axes(beta: str | None, seeds: str | None, grid: list[str] | None, shadows: bool) -> dict[str, list[Any]]:
    """The swept keys and their values from ``--beta`` (unless ``--shadows``), ``--grid`` and ``--seeds``."""
    axes: dict[str, list[Any]] = {}
    if shadows and beta is None:
        raise ConfigError("--shadows: give the betas to track with --beta")
    if beta is not None and not shadows:
        axes["ema.beta"] = parse_betas(beta)
    for item in grid or []:
        key, values = parse_grid_option(item)
        axes[key] = values
    if seeds is not None:
        axes["seed"] = parse_seeds(seeds)
    return axes


def _print_shadow_mode(base: Config) -> None:
    monitor = base.train.early_stopping.monitor
    console.print(
        f"Shadow mode: one trajectory per seed driven by {monitor!r}; betas tracked as "
        f"{', '.join(n for n in base.averagers if n.startswith('ema_'))}."
    )


def _print_plan(described: SweepPlan, engine: str, jobs: int) -> None:
    mode = f"{described.stacks} stacked model(s)" if described.stacked else "one model per run"
    where = " on Ray" if engine == "ray" else ""
    console.print(f"Sweep: {described.runs} runs ({mode}, {jobs} job(s){where}).")


def _render(folder: Path, outcomes: list[RunOutcome], *, stopped: bool) -> None:
    """The sweep's outcome counts and where to look next; exit code 130 if it was interrupted."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status.replace("_", " ")] = counts.get(outcome.status.replace("_", " "), 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    resumed = sum(1 for o in outcomes if o.resumed_from and o.status != "skipped")
    summary += f"; {resumed} continued from a checkpoint" if resumed else ""
    if stopped:
        exit_interrupted(f"{summary}; re-run the same command to continue ({folder})")
    console.print(f"Sweep folder: [bold]{folder}[/]  ({summary})")
    if counts.get("locked"):
        console.print(f"{counts['locked']} run(s) are being trained by another emabench process and were left to it.")
    console.print(f"Compare: emabench report {folder}")
