"""The ``emabench`` command line: each command checks its input, calls the library, renders the result.

This is the only module that prints for humans and maps :class:`~emabench.errors.EmabenchError` to exit codes.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from math import nan
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from emabench.errors import ConfigError, EmabenchError, RunError

app = typer.Typer(
    name="emabench",
    help="Does weight averaging (EMA, Polyak, SWA) help your training, and with which settings?\n\n"
    "Train the seed-001 study (`run`), sweep a grid of settings and seeds (`sweep`), and compare raw vs averaged "
    "models across seeds (`report`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal width
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
ThreadsOption = Annotated[
    int,
    typer.Option(
        "--threads",
        min=1,
        help="torch CPU threads for training in this process (the seed MLP is too small to gain from more; "
        "measured slower with 2).",
    ),
]
CheckpointOption = Annotated[
    int | None,
    typer.Option(
        "--checkpoint-every",
        min=1,
        metavar="N",
        help="Save each unfinished run's checkpoint.pt every N epochs (Ctrl-C always saves one), so a killed run "
        "continues from it when re-run.",
    ),
]

F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(command: F) -> F:
    """Map user errors to one line on stderr and an exit code; Ctrl-C/SIGTERM to exit code 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            return command(*args, **kwargs)
        except EmabenchError as err:
            err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[bold yellow]interrupted:[/] finished epochs and runs are kept on disk")
            raise typer.Exit(130) from None
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stopping_notice() -> None:
    # called from a signal handler: a raw write, no console locks
    os.write(2, b"emabench: stopping after the current epoch (press Ctrl-C again to abort now)\n")


def _exit_interrupted(message: str) -> None:
    err_console.print(f"[bold yellow]interrupted:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(130)


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
    config: Annotated[
        Path | None, typer.Argument(help="YAML config, e.g. configs/regression.yaml (not with --resume).")
    ] = None,
    set_: SetOption = None,
    runs_dir: RunsDirOption = Path("runs"),
    force: ForceOption = False,
    quiet: QuietOption = False,
    checkpoint_every: CheckpointOption = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            metavar="RUN_FOLDER",
            help="Continue an interrupted run from its checkpoint.pt, with the config.yaml in its folder.",
            file_okay=False,
        ),
    ] = None,
    threads: ThreadsOption = 1,
) -> None:
    """Train one run and write its folder: config.yaml, history.csv, metrics.csv, loss.png, r2.png, DONE.

    The run folder is `RUNS_DIR/<name>-seed<seed>-<hash>` (the hash of the resolved config); running the same
    config again reuses it (a finished run is shown, not re-trained, unless --force; an interrupted one with a
    checkpoint continues). Ctrl-C stops after the current epoch and saves a checkpoint; a second Ctrl-C aborts at once.
    """
    from emabench.config import load_config
    from emabench.runs import single as runner
    from emabench.runs.folder import RunFolder
    from emabench.runs.interrupts import StopRequest

    if (config is None) == (resume is None):
        raise ConfigError("give a CONFIG to train, or --resume RUN_FOLDER to continue a run (not both)")
    if resume is not None and (set_ or force):
        raise ConfigError("--resume continues a run with its own config.yaml: --set and --force do not apply")
    cfg = runner.load_run_config(RunFolder(resume)) if resume is not None else load_config(config, set_ or [])
    stop = StopRequest(notice=_stopping_notice)
    _set_threads(threads)
    with stop.installed(), _epoch_progress(cfg.train.max_epochs, quiet) as on_epoch:
        if resume is not None:
            outcome = runner.resume(resume, on_epoch=on_epoch, stop=stop.is_set, checkpoint_every=checkpoint_every)
        else:
            outcome = runner.run(
                cfg, runs_dir, force=force, on_epoch=on_epoch, stop=stop.is_set, checkpoint_every=checkpoint_every
            )
    if outcome.status == "not_started":
        _exit_interrupted("stopped before the first epoch; nothing was trained")
    if outcome.status == "interrupted":
        _exit_interrupted(
            f"{outcome.folder.path} stopped after epoch {outcome.epochs} and saved a checkpoint; "
            f"continue with: emabench run --resume {outcome.folder.path}"
        )
    if outcome.status == "skipped":
        console.print(f"Already finished (use --force to re-train): {outcome.folder.path}")
    else:
        resumed = f", resumed from epoch {outcome.resumed_from}" if outcome.resumed_from else ""
        console.print(
            f"Run folder: [bold]{outcome.folder.path}[/]  ({outcome.status}: {outcome.stop_reason} after "
            f"{outcome.epochs} epochs{resumed}, {outcome.wall_time_s:.1f} s)"
        )
    _print_metrics(outcome.folder)
    if stop.is_set():  # Ctrl-C during the last epoch: the run finished, the user still asked to stop
        raise typer.Exit(130)


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
    jobs: Annotated[
        int,
        typer.Option("--jobs", "-j", min=1, help="Worker processes (--engine ray: Ray tasks at a time, 1 CPU each)."),
    ] = 1,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="auto: stack runs that share data and architecture into one vectorized model; "
            "vectorized: insist on it; process: one run per process; "
            "ray: auto's stacks as Ray tasks, on the cluster at `RAY_ADDRESS` (else a local Ray), "
            "with the runs folder on a filesystem every node shares (`pip install 'emabench[ray]'`).",
        ),
    ] = "auto",
    shadows: Annotated[
        bool,
        typer.Option(
            "--shadows",
            help="Track every --beta as a shadow EMA `ema_<beta>` of ONE training trajectory per seed instead of one "
            "run per beta; training stays driven by the config's monitor (raw, or the `ema` at its own beta).",
        ),
    ] = False,
    runs_dir: RunsDirOption = Path("runs"),
    force: ForceOption = False,
    quiet: QuietOption = False,
    checkpoint_every: CheckpointOption = None,
    plots: Annotated[
        bool, typer.Option("--plots/--no-plots", help="Draw loss.png and r2.png in every run folder (~0.25 s a run).")
    ] = False,
    threads: ThreadsOption = 1,
) -> None:
    """Run every combination of betas × seeds × grid values, each into its own run folder of one sweep folder.

    Re-running the same sweep skips runs that already finished, continues checkpointed ones and restarts the rest
    (--force: redo all); runs another emabench process is training are left to it. Ctrl-C stops after the current
    epoch, checkpoints unfinished runs and starts nothing new. Then compare them: `emabench report <sweep folder>`.
    """
    from emabench.config import load_config
    from emabench.runs import plan
    from emabench.runs import sweep as runner
    from emabench.runs.interrupts import StopRequest

    if engine not in ("auto", "vectorized", "process", "ray"):
        raise ConfigError(f"--engine: {engine!r} is not one of auto, vectorized, process, ray")
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
        base = plan.with_beta_shadows(base, parse_betas(beta or ""))
        if not quiet:
            monitor = base.train.early_stopping.monitor
            console.print(
                f"Shadow mode: one trajectory per seed driven by {monitor!r}; betas tracked as "
                f"{', '.join(n for n in base.averagers if n.startswith('ema_'))}."
            )
    configs = plan.expand_grid(base, axes)  # validates every combination before anything runs
    stacks = plan.plan_stacks(configs, engine, jobs)  # type: ignore[arg-type]
    mode = f"{len(stacks)} stacked model(s)" if len(stacks) < len(configs) else "one model per run"
    if not quiet:
        where = " on Ray" if engine == "ray" else ""
        console.print(f"Sweep: {len(configs)} runs ({mode}, {jobs} job(s){where}).")
    _set_threads(threads)
    stop = StopRequest(notice=_stopping_notice)
    with stop.installed(), _sweep_progress(len(configs), quiet) as (on_epoch, on_stack_done):
        folder, outcomes = runner.sweep(
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
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status.replace("_", " ")] = counts.get(outcome.status.replace("_", " "), 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    resumed = sum(1 for o in outcomes if o.resumed_from and o.status != "skipped")
    summary += f"; {resumed} continued from a checkpoint" if resumed else ""
    if stop.is_set():
        _exit_interrupted(f"{summary}; re-run the same command to continue ({folder})")
    console.print(f"Sweep folder: [bold]{folder}[/]  ({summary})")
    if counts.get("locked"):
        console.print(f"{counts['locked']} run(s) are being trained by another emabench process and were left to it.")
    console.print(f"Compare: emabench report {folder}")


REPORT_FORMATS = ("table", "markdown", "csv", "json")
VERDICT_STYLES = {  # terminal label and colour of each stats verdict
    "better": ("better", "bold green"),
    "worse": ("worse", "bold red"),
    "no significant difference": ("n.s.", "yellow"),
    "insufficient data": ("too few", "magenta"),
}
STATUS_STYLES = {"completed": "green", "diverged": "red", "interrupted": "yellow", "incomplete": "yellow"}


@app.command()
@handles_errors
def report(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Run or sweep folders, one or many (default: everything under --runs-dir)."),
    ] = None,
    runs_dir: RunsDirOption = Path("runs"),
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the report files (default: the one folder given, else --runs-dir)."),
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by",
            metavar="KEY",
            help="Group by this config key (repeatable): --by ema.beta (default: the keys that vary, and ema.beta).",
        ),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            metavar="KEY=VALUE",
            help="Only runs whose config has KEY=VALUE, value parsed as YAML (repeatable): --where data.noise=0.1.",
        ),
    ] = None,
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="table: a coloured table for people; markdown, csv or json: print only that to stdout, for scripts "
            "(the files are written either way).",
        ),
    ] = "table",
    burn_in: Annotated[
        int,
        typer.Option("--burn-in", metavar="N", help="Stability: std of the validation loss after the first N epochs."),
    ] = 9,
) -> None:
    """Compare raw vs averaged models across seeds, from finished run folders (never re-trains).

    Per group of runs that differ only in their seed (e.g. per beta), each
    averaged model vs raw, paired by seed: mean ± std and 95% CI of MSE, MAE
    and R² (final epoch and best epoch), the paired difference with its CI,
    t-test and Wilcoxon p-values, wins and a verdict (better, worse, no
    significant difference); the stability of the validation loss; the decay
    actually reached; the blog's published run beside our seeds.

    Writes report.md, report.html (one self-contained file), report.csv,
    comparison.csv, per_run.csv and fig_*.png.
    """
    from emabench.report import files as rep
    from emabench.report.collect import collect
    from emabench.report.frames import build_report
    from emabench.runs.sweep_folder import REPORT_CSV, REPORT_MD

    if format_ not in REPORT_FORMATS:
        raise ConfigError(f"--format: {format_!r} is not one of {', '.join(REPORT_FORMATS)}")
    roots = paths or [runs_dir]
    collection = collect(roots, where or [])
    for folder, status in collection.skipped:
        err_console.print(f"skipped {status} run: {folder.path}", highlight=False)
    if collection.runs.empty:
        matching = f" matching {' '.join(f'--where {w}' for w in where)}" if where else ""
        raise RunError(f"no finished runs under {', '.join(map(str, roots))}{matching}")
    result = build_report(collection, by or None, burn_in, sources=[str(r) for r in roots])
    files = rep.render_files(result)
    written = rep.write_files(files, out or (roots[0] if len(roots) == 1 else runs_dir))
    if format_ == "table":
        _print_report(result)
        if (collection.runs["sweep_mode"] == "shadows").any():
            console.print(
                "Shadow mode: the ema_<beta> models are shadows of one training trajectory per seed (sweep "
                "--shadows), not runs of their own.",
                highlight=False,
                markup=False,
            )
        console.print(f"Wrote {written[2]} and {len(written) - 1} more files in {written[0].parent}", highlight=False)
        return
    text = {"markdown": files[REPORT_MD], "csv": files[REPORT_CSV], "json": rep.to_json(result)}[format_]
    sys.stdout.write(str(text))
    err_console.print(f"wrote {len(written)} files in {written[0].parent}", highlight=False)


def _print_report(result: Any) -> None:
    """The report's verdict table, verdicts coloured, with its legend."""
    from emabench.report.blocks import display_rows

    header, body = display_rows(result)
    table = Table(title="averaged vs raw, paired by seed (final epoch unless named)")
    for column in header:
        table.add_column(column, overflow="fold")
    for cells in body:
        table.add_row(*(_verdict_cell(c) for c in cells))
    console.print(table)
    legend = ", ".join(
        f"[{style}]{label}[/] = {verdict}" for verdict, (label, style) in VERDICT_STYLES.items() if label != verdict
    )
    console.print(f"Verdicts at the {result.alpha:g} level (paired t-test and Wilcoxon must agree); {legend}.")
    console.print("best-ep: at each model's lowest validation loss, picked on the validation set itself (optimistic).")


def _verdict_cell(text: str) -> str:
    if text in VERDICT_STYLES:
        label, style = VERDICT_STYLES[text]
        return f"[{style}]{label}[/]"
    return escape(text)


@app.command()
@handles_errors
def show(
    run: Annotated[str, typer.Argument(help="A run folder, or a run id (or a unique prefix of one) under --runs-dir.")],
    runs_dir: RunsDirOption = Path("runs"),
) -> None:
    """Print one run's config, status and final metrics table."""
    from rich.syntax import Syntax

    from emabench.report import collect as rep

    folder = rep.find_run(run, runs_dir)
    console.print(f"Run folder: [bold]{escape(str(folder.path))}[/]", highlight=False)
    console.print(Syntax(folder.read_config_text().rstrip(), "yaml", theme="ansi_dark", background_color="default"))
    status = folder.status
    style = STATUS_STYLES.get(status, "white")
    if folder.is_done:
        info = folder.done_info()
        console.print(
            f"[{style}]{status}[/]: {info.get('stop_reason', '')} after {info.get('epochs', '?')} epochs, "
            f"{float(info.get('wall_time_s', nan)):.1f} s",
            highlight=False,
        )
        _print_metrics(folder)
    else:
        console.print(f"[{style}]{status}[/]: {rep.epochs_so_far(folder)} epochs recorded, no final metrics yet")


@app.command(name="ls")
@handles_errors
def ls(
    paths: Annotated[list[Path] | None, typer.Argument(help="Folders to list (default: --runs-dir).")] = None,
    runs_dir: RunsDirOption = Path("runs"),
) -> None:
    """List runs and sweeps with their status (completed, diverged, interrupted, incomplete) and epochs."""
    from emabench.report import collect as rep

    roots = paths or [runs_dir]
    runs = rep.inventory(roots)
    if runs.empty:
        console.print(f"No runs under {', '.join(map(str, roots))}.", highlight=False)
        return
    for folder, part in runs.groupby("folder", sort=True):
        counts = ", ".join(f"{n} {status}" for status, n in sorted(part["status"].value_counts().items()))
        kind = "sweep" if part["is_sweep"].iloc[0] else "runs in"
        console.print(f"[bold]{kind} {escape(folder)}[/]: {len(part)} runs ({counts})", highlight=False, soft_wrap=True)
        table = Table()
        for column in ("run", "status", "epochs", "stop reason", "wall time"):
            table.add_column(column, justify="right" if column in ("epochs", "wall time") else "left")
        for r in part.to_dict("records"):
            style = STATUS_STYLES.get(r["status"], "white")
            wall = "" if r["wall_time_s"] != r["wall_time_s"] else f"{r['wall_time_s']:.1f} s"
            table.add_row(r["run_id"], f"[{style}]{r['status']}[/]", str(r["epochs"]), r["stop_reason"], wall)
        console.print(table)


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


@app.command()
@handles_errors
def bench(
    which: Annotated[
        list[str] | None, typer.Argument(help="Sub-benchmarks to run: run, ema, sweep (default: all three).")
    ] = None,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Interleaved A/B repetitions per case.")] = 5,
    quick: Annotated[bool, typer.Option("--quick", help="Skip the slowest case (40 runs one process each).")] = False,
    threads: Annotated[
        int, typer.Option("--threads", min=1, help="torch intra-op threads for the in-process cases (both sides).")
    ] = 1,
    out: Annotated[Path, typer.Option("--out", help="Folder for bench.csv and bench.md.", file_okay=False)] = Path(
        "runs"
    ),
) -> None:
    """Measure speed against references run side by side: the seed script (per epoch and whole process), torch's
    AveragedModel / ema-pytorch / the seed's EMA loop (one update, up to 25M parameters), and a 40-run sweep vs one
    run. Prints the table and writes bench.csv and bench.md. Ratios are ours / reference (lower is faster)."""
    import torch

    from emabench import bench as benchmarks
    from emabench.runs.atomic import atomic_write_text

    chosen = which or ["run", "ema", "sweep"]
    unknown = [w for w in chosen if w not in ("run", "ema", "sweep")]
    if unknown:
        raise ConfigError(f"bench: unknown sub-benchmark {unknown[0]!r} (allowed: run, ema, sweep)")
    torch.set_num_threads(threads)
    rows: list[Any] = []
    with err_console.status("benchmarking…"):
        if "run" in chosen:
            rows += benchmarks.bench_run(repeats)
        if "ema" in chosen:
            rows += benchmarks.bench_ema(repeats)
        if "sweep" in chosen:
            rows += benchmarks.bench_sweep(quick)
    header = ["benchmark", "case", "ours", "reference", "unit", "ratio", "target"]
    body = [
        [r.benchmark, r.case, f"{r.ours:.4g}", f"{r.reference:.4g}", r.unit, f"{r.ratio:.3f}", r.target] for r in rows
    ]
    _print_table(header, body, title=f"emabench bench — {benchmarks.machine()}")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "bench.csv", benchmarks.to_csv(rows))
    atomic_write_text(out / "bench.md", benchmarks.to_markdown(rows, f"Machine: {benchmarks.machine()}."))
    console.print(f"Wrote {out / 'bench.csv'} and {out / 'bench.md'}")


def main() -> None:
    app(prog_name="emabench")


if __name__ == "__main__":
    sys.exit(main())
