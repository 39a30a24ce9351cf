"""What every command shares: the consoles, the shared options, error → exit-code mapping, progress bars and tables.

The CLI is the only place that prints for humans and maps :class:`~emabench.errors.EmabenchError` to exit codes
(:func:`handles_errors`; the codes are :mod:`emabench.errors`'s, stated in every command's ``--help`` by
:data:`EXIT_CODES_HELP`); Rich is used nowhere else.
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

from emabench.cli.tables import print_fitted, print_run_metrics
from emabench.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_RUN_ERROR,
    ConfigError,
    EmabenchError,
    RunError,
    one_line,
)

# Piped output (CI logs, `| tee`) gets a wide table rather than rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

EXIT_CODES_HELP = (
    f"Exit codes: 0 done; {EXIT_BAD_INPUT} bad input (an option, a config file, key or value, a path that does not "
    f"exist or cannot be read or is not what the command takes, a run id that matches no run or several); "
    f"{EXIT_RUN_ERROR} run or I/O error (results could not be written, a run folder's files are damaged, another "
    f"process holds the run); {EXIT_INTERRUPTED} interrupted (Ctrl-C or SIGTERM; what finished stays on disk)."
)

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
RunsDirOption = Annotated[
    Path,
    typer.Option(
        "--runs-dir",
        help="Folder that holds run folders.",
        file_okay=False,
        callback=lambda path: _followable(path),
    ),
]
# where runs are written: read as text, so that an empty --runs-dir is refused instead of meaning this folder
WriteRunsDirOption = Annotated[str, typer.Option("--runs-dir", help="Folder that holds run folders.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display, only the result.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Re-train runs that are already finished (DONE).")]
ThreadsOption = Annotated[
    int,
    typer.Option(
        "--threads",
        min=1,
        help="torch CPU threads for training, in this process and in each --jobs worker. A run gives the same bytes "
        "at one thread count whatever its stack, engine or --jobs; other thread counts may round differently "
        "(convolutions, BatchNorm). The seed MLP is too small to gain from more.",
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

TrackOption = Annotated[
    list[str] | None,
    typer.Option(
        "--track",
        metavar="mlflow|tensorboard",
        help="Copy the runs to MLflow (`MLFLOW_TRACKING_URI`, else RUNS_DIR/mlflow.db) or TensorBoard (event files in "
        "each run folder) as they are written (repeatable; replaces the config's `track:`). Needs "
        "`pip install 'emabench[mlflow]'` / `'emabench[tensorboard]'`.",
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
            message = escape(one_line(str(err)))  # one line, capped: already so, but nothing may flood the terminal
            err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[bold yellow]interrupted:[/] finished epochs and runs are kept on disk")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except SystemExit as err:  # exit() in a user's code (a data function, a model): not emabench's success
            message = f"the command was ended by exit({err.code!r}) in code it ran (a data function or model?)"
            err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_RUN_ERROR) from None
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def stopping_notice() -> None:
    # called from a signal handler: a raw write, no console locks
    os.write(2, b"emabench: stopping after the current epoch (press Ctrl-C again to abort now)\n")


def exit_interrupted(message: str) -> None:
    err_console.print(f"[bold yellow]interrupted:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_INTERRUPTED)


STATUS_STYLES = {
    "completed": "green",
    "diverged": "red",
    "failed": "red",
    "interrupted": "yellow",
    "incomplete": "yellow",
    "damaged": "red",
}


def print_table(header: list[str], body: list[list[str]], title: str | None = None) -> None:
    """A table fitted to the terminal that never splits a number (:mod:`emabench.cli.tables`)."""
    print_fitted(console, header, body, title=title)


def print_metrics(folder: Any) -> None:
    """A finished run's final table, in its task's metrics (:func:`emabench.cli.tables.print_run_metrics`)."""
    print_run_metrics(console, folder)


def progress_bar() -> Any:
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
def epoch_progress(total: int, quiet: bool) -> Iterator[Callable[..., None] | None]:
    """A progress bar over the epochs of one run (nothing with --quiet)."""
    if quiet:
        yield None
        return
    with progress_bar() as progress:
        task = progress.add_task("epochs", total=total, status="")

        def on_epoch(trainer: Any, records: list[Any]) -> None:
            row = records[0].row if records else {}
            status = f"val loss raw {row.get('raw_val_loss', nan):.4f}  ema {row.get('ema_val_loss', nan):.4f}"
            progress.update(task, completed=trainer.epoch, status=status)

        yield on_epoch


@contextlib.contextmanager
def sweep_progress(total: int, quiet: bool) -> Iterator[tuple[Any, Any]]:
    """A progress bar over finished runs: per epoch for stacks trained here, per stack for worker processes."""
    if quiet:
        yield None, None
        return
    with progress_bar() as progress:
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


def runs_dir_path(text: str) -> Path:
    """``--runs-dir`` as a path; an empty one is refused rather than read as the current directory."""
    if not text.strip():
        raise ConfigError("--runs-dir: empty path (give a folder, e.g. --runs-dir runs; '.' for this one)")
    path = resolvable(Path(text), "--runs-dir")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--runs-dir: {text} is a file, not a folder")
    return path


def resolvable(path: Path, option: str) -> Path:
    """``path``, if it can be followed to a place (a symbolic link that leads back to itself cannot)."""
    try:
        path.resolve()
    except (RuntimeError, OSError) as err:  # RuntimeError: pathlib's "Symlink loop" before Python 3.13
        reason = "a symbolic link that leads back to itself" if "loop" in str(err).lower() else str(err)
        raise ConfigError(f"{option}: {path} cannot be followed ({reason})") from None
    return path


def _followable(path: Path | None) -> Path | None:
    """``--runs-dir`` of the commands that read run folders: a path that can be followed (typer's callback, so a
    refusal is typer's one-line usage error, exit code 2)."""
    try:
        return resolvable(path, "--runs-dir") if path is not None else None
    except ConfigError as err:
        raise typer.BadParameter(str(err).removeprefix("--runs-dir: ")) from None


@contextlib.contextmanager
def nothing_left_on_failure(runs_dir: Path) -> Iterator[None]:
    """If the block fails or is interrupted, remove what it created under ``runs_dir`` that holds no run: a sweep
    folder with nothing but its ``sweep.json``, and ``runs_dir`` itself (with the parents it needed) when empty. A
    refused data file, a model that cannot be built or a Ctrl-C before training then leaves nothing behind."""
    from emabench.runs.sweep_folder import discard_if_unused

    created = [p for p in (runs_dir, *runs_dir.parents) if not p.exists()]  # deepest first
    before = set(os.listdir(runs_dir)) if runs_dir.is_dir() else set()
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            for name in sorted(set(os.listdir(runs_dir)) - before) if runs_dir.is_dir() else []:
                discard_if_unused(runs_dir / name)
            for folder in created:
                folder.rmdir()  # only an empty folder goes
        raise


def track_names(option: list[str] | None, configured: list[str]) -> list[str]:
    """``--track`` values (comma-separated or repeated) if given, else the config's ``track:``; each checked."""
    from emabench.config import TRACKERS

    if option is None:
        return list(configured)
    names = [name.strip() for value in option for name in value.split(",") if name.strip()]
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"--track: {name!r} is not one of {', '.join(TRACKERS)}")
    return list(dict.fromkeys(names))


@contextlib.contextmanager
def tracking(names: list[str], runs_dir: Path) -> Iterator[Any]:
    """The trackers ``names``, checked before anything trains (exit code 2 when one cannot be used), copying every
    run folder written inside the block; ``None`` when there are none."""
    if not names:
        yield None
        return
    from emabench.tracking import tracked

    with contextlib.ExitStack() as stack:
        with err_console.status(f"opening {', '.join(names)}…"):
            trackers = stack.enter_context(tracked(names, runs_dir))
        yield trackers


def check_tracking(trackers: Any) -> None:
    """Exit code 3 when a tracker stopped copying mid-way (the run folders are whole)."""
    failure = trackers.failure if trackers is not None else None
    if failure:
        raise RunError(
            f"tracking stopped: {failure}; the run folders are complete, re-run the same command to copy them again"
        )


def runs_dir_of(run_folder: Path) -> Path:
    """The runs directory a run folder is in (a sweep's run is one level deeper): where the default MLflow store is."""
    from emabench.runs.sweep_folder import is_sweep_folder

    parent = Path(run_folder).absolute().parent
    return parent.parent if is_sweep_folder(parent) else parent
