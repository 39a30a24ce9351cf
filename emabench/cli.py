"""The ``emabench`` command line: each command checks its input, calls the library, renders the result.

This is the only module that prints for humans and maps :class:`~emabench.errors.EmabenchError` to exit codes.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
from collections.abc import Callable, Iterator
from math import nan
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from emabench.errors import ConfigError, EmabenchError

app = typer.Typer(
    name="emabench",
    help="Does weight averaging (EMA, Polyak, SWA) help your training, and with which settings?\n\n"
    "Train the seed-001 study (`run`), sweep a grid of settings and seeds (`sweep`), and compare raw vs averaged "
    "models across seeds (`report`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output (CI logs, `| tee`) gets a wide table rather than rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

DEFAULT_CONFIG = Path("configs/regression.yaml")

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a config field by dotted key, value parsed as YAML (repeatable), "
        "e.g. --set train.optimizer.lr=0.01 --set ema.beta=0.99.",
    ),
]
RunsDirOption = Annotated[Path, typer.Option("--runs-dir", help="Folder that holds run folders.", file_okay=False)]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display, only the result.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Re-train runs that are already finished (DONE).")]

F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(command: F) -> F:
    """Map user errors to one line on stderr and an exit code; Ctrl-C/SIGTERM to exit code 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            return command(*args, **kwargs)
        except EmabenchError as err:
            err_console.print(f"[bold red]error:[/] {err}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[bold yellow]interrupted:[/] finished epochs and runs are kept on disk")
            raise typer.Exit(130) from None
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# --- parsing helpers --------------------------------------------------------------------------------------------


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
    from emabench.config import parse_override, parse_yaml

    key, sep, raw = text.partition("=")
    if not sep or not raw.strip():
        raise ConfigError(f"--grid {text!r}: expected KEY=V1,V2,... e.g. train.optimizer.lr=0.001,0.003")
    parse_override(f"{key}=0")  # checks that the key exists
    return key.strip(), [parse_yaml(v, f"--grid {key}") for v in _items(raw, f"--grid {key}")]


def _items(text: str, option: str) -> list[str]:
    parts = [p.strip() for p in text.split(",")]
    if not parts or any(not p for p in parts):
        raise ConfigError(f"{option}: expected a comma-separated list, got {text!r}")
    return parts


# --- commands ---------------------------------------------------------------------------------------------------


@app.command()
@handles_errors
def run(
    config: Annotated[Path, typer.Argument(help="YAML config, e.g. configs/regression.yaml.")],
    set_: SetOption = None,
    runs_dir: RunsDirOption = Path("runs"),
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train one run and write its folder: config.yaml, history.csv, metrics.csv, loss.png, r2.png, DONE.

    The run folder is RUNS_DIR/<name>-seed<seed>-<hash of the resolved config>; running the same config again
    reuses it (a finished run is shown, not re-trained, unless --force).
    """
    from emabench import runner
    from emabench.config import load_config

    cfg = load_config(config, set_ or [])
    with _epoch_progress(cfg.train.max_epochs, quiet) as on_epoch:
        outcome = runner.run(cfg, runs_dir, force=force, on_epoch=on_epoch)
    if outcome.status == "skipped":
        console.print(f"Already finished (use --force to re-train): {outcome.folder.path}")
    else:
        console.print(
            f"Run folder: [bold]{outcome.folder.path}[/]  ({outcome.status}: {outcome.stop_reason} after "
            f"{outcome.epochs} epochs, {outcome.wall_time_s:.1f} s)"
        )
    _print_metrics(outcome.folder)


@app.command()
@handles_errors
def sweep(
    config: Annotated[Path, typer.Argument(help="Base YAML config.")] = DEFAULT_CONFIG,
    beta: Annotated[
        str | None, typer.Option("--beta", "-b", help="EMA betas to sweep, comma-separated, e.g. 0.99,0.999.")
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option("--seeds", help="Seeds: a list 0,1,2 or a range 0-9 (default: the config's)."),
    ] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option("--grid", "-g", metavar="KEY=V1,V2", help="Sweep any other field too (repeatable)."),
    ] = None,
    set_: SetOption = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes.")] = 1,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="auto: stack runs that share data and architecture into one vectorized model; "
            "vectorized: insist on it; process: one run per process.",
        ),
    ] = "auto",
    shadows: Annotated[
        bool,
        typer.Option(
            "--shadows",
            help="Track every --beta as a shadow EMA (ema_<beta>) of ONE training trajectory per seed instead of one "
            "run per beta; training stays driven by the config's monitor (raw, or the `ema` at its own beta).",
        ),
    ] = False,
    runs_dir: RunsDirOption = Path("runs"),
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Run every combination of betas × seeds × grid values, each into its own run folder of one sweep folder.

    Re-running the same sweep skips runs that already finished. Then compare them: emabench report <sweep folder>.
    """
    from emabench import runner
    from emabench.config import load_config

    if engine not in ("auto", "vectorized", "process"):
        raise ConfigError(f"--engine: {engine!r} is not one of auto, vectorized, process")
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
    base = load_config(config, set_ or [])
    if shadows:
        base = runner.with_beta_shadows(base, parse_betas(beta or ""))
        if not quiet:
            monitor = base.train.early_stopping.monitor
            console.print(
                f"Shadow mode: one trajectory per seed driven by {monitor!r}; betas tracked as "
                f"{', '.join(n for n in base.averagers if n.startswith('ema_'))}."
            )
    configs = runner.expand_grid(base, axes)  # validates every combination before anything runs
    stacks = runner.plan_stacks(configs, engine, jobs)  # type: ignore[arg-type]
    mode = f"{len(stacks)} stacked model(s)" if len(stacks) < len(configs) else "one model per run"
    if not quiet:
        console.print(f"Sweep: {len(configs)} runs ({mode}, {jobs} job(s)).")
    with _sweep_progress(len(configs), quiet) as (on_epoch, on_stack_done):
        folder, outcomes = runner.sweep(
            base,
            axes,
            runs_dir,
            jobs=jobs,
            engine=engine,
            force=force,  # type: ignore[arg-type]
            mode="shadows" if shadows else "runs",
            on_epoch=on_epoch,
            on_stack_done=on_stack_done,
        )
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    console.print(f"Sweep folder: [bold]{folder}[/]  ({summary})")
    console.print(f"Compare: emabench report {folder}")


@app.command()
@handles_errors
def report(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Run or sweep folders (default: everything under --runs-dir).")
    ] = None,
    runs_dir: RunsDirOption = Path("runs"),
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where to write report.csv/report.md (default: the one folder given, else --runs-dir).",
        ),
    ] = None,
) -> None:
    """Compare raw vs averaged models across seeds from finished run folders (never re-trains).

    One row per group of runs that differ only in their seed (e.g. per beta), with mean ± std of MSE, MAE and R²
    for each model, the mean paired MSE improvement and the number of seeds where the averaged model won.
    """
    from emabench import report as rep
    from emabench.errors import RunError
    from emabench.rundir import write_report

    roots = paths or [runs_dir]
    collection = rep.collect(roots)
    for folder, status in collection.skipped:
        err_console.print(f"skipped {status} run: {folder.path}")
    if collection.runs.empty:
        raise RunError(f"no finished runs under {', '.join(map(str, roots))}")
    table = rep.summarize_groups(collection.runs)
    target = out or (roots[0] if len(roots) == 1 else runs_dir)
    csv_path, md_path = write_report(target, rep.to_csv(table), rep.to_markdown(table))
    _print_table(*rep.display_rows(table), title="raw vs averaged, across seeds")
    console.print(f"Wrote {csv_path} and {md_path}")


# --- rendering --------------------------------------------------------------------------------------------------


def _print_table(header: list[str], body: list[list[str]], title: str | None = None) -> None:
    table = Table(title=title, show_lines=False)
    for column in header:
        table.add_column(column, overflow="fold")
    for cells in body:
        table.add_row(*cells)
    console.print(table)


def _print_metrics(folder: Any) -> None:
    metrics = folder.read_metrics()
    header = ["model", "epoch", "MSE", "MAE", "R2", "MSE gain", "MAE gain", "R2 gain", "val-loss std"]
    body = [
        [
            str(r["model"]),
            str(r["epoch"]),
            f"{r['mse']:.4f}",
            f"{r['mae']:.4f}",
            f"{r['r2']:.4f}",
            f"{r['mse_improvement_pct']:+.1f}%",
            f"{r['mae_improvement_pct']:+.1f}%",
            f"{r['r2_improvement_pct']:+.2f}%",
            f"{r['val_loss_std']:.4f}",
        ]
        for r in metrics.to_dict("records")
    ]
    _print_table(header, body, title="final validation metrics")


def _progress_bar() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=err_console,
        transient=True,
    )


@contextlib.contextmanager
def _epoch_progress(total: int, quiet: bool) -> Iterator[Callable[..., None] | None]:
    """A progress bar over the epochs of one run (nothing with --quiet)."""
    if quiet:
        yield None
        return
    with _progress_bar() as progress:
        task = progress.add_task("epochs", total=total, status="")

        def on_epoch(trainer: Any, records: list[Any]) -> None:
            row = records[0].row if records else {}
            status = f"val loss raw {row.get('raw_val_loss', nan):.4f}  ema {row.get('ema_val_loss', nan):.4f}"
            progress.update(task, completed=trainer.epoch, status=status)

        yield on_epoch


@contextlib.contextmanager
def _sweep_progress(total: int, quiet: bool) -> Iterator[tuple[Any, Any]]:
    """A progress bar over finished runs: per epoch for stacks trained here, per stack for worker processes."""
    if quiet:
        yield None, None
        return
    with _progress_bar() as progress:
        task = progress.add_task("runs", total=total, status="")
        stopped_here, reported = [0], [0]

        def on_epoch(trainer: Any, records: list[Any]) -> None:
            stopped_here[0] += sum(1 for r in records if r.stop_reason)
            status = f"epoch {trainer.epoch}, {sum(trainer.active)} still training"
            progress.update(task, completed=max(stopped_here[0], reported[0]), status=status)

        def on_stack_done(outcomes: list[Any]) -> None:
            reported[0] += len(outcomes)
            progress.update(task, completed=max(stopped_here[0], reported[0]))

        yield on_epoch, on_stack_done


def main() -> None:
    app(prog_name="emabench")


if __name__ == "__main__":
    sys.exit(main())
