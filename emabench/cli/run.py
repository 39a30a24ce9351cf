"""``emabench run``: train one run (or continue one with ``--resume``) and show its final table."""

from __future__ import annotations

import functools
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
    epoch_progress,
    exit_interrupted,
    handles_errors,
    nothing_left_on_failure,
    print_metrics,
    runs_dir_of,
    runs_dir_path,
    set_threads,
    stopping_notice,
    track_names,
    tracking,
)
from emabench.errors import EXIT_INTERRUPTED, ConfigError, RunError

if TYPE_CHECKING:
    from emabench.config import Config
    from emabench.runs.unit import RunOutcome


@handles_errors
def run(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="YAML config, e.g. configs/regression.yaml (default: the seed study shipped with emabench, "
            "`emabench configs regression`; not with --resume).",
            show_default=False,
        ),
    ] = None,
    set_: SetOption = None,
    runs_dir: WriteRunsDirOption = "runs",
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
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc",
            min=1,
            metavar="N",
            help="Train this one run on N processes, data parallel (torch's elastic launcher, as torchrun: gloo on "
            "the CPU, NCCL on CUDA with a GPU per process): each takes its share of every batch, so without dropout "
            "the run equals one process's. Custom models only (`model: {name: custom}`); with --resume too.",
        ),
    ] = 1,
    track: TrackOption = None,
) -> None:
    """Train one run and write its folder: config.yaml, history.csv, metrics.csv, loss.png, r2.png, DONE.

    Without a CONFIG it trains the seed-001 study shipped inside the package (`emabench configs` lists the
    shipped configs; `emabench configs regression > my.yaml` copies one to edit).

    The run folder is `RUNS_DIR/<name>-seed<seed>-<hash>` (the hash of the resolved config); running the same
    config again reuses it (a finished run is shown, not re-trained, unless --force; an interrupted one with a
    checkpoint continues). Ctrl-C stops after the current epoch and saves a checkpoint; a second Ctrl-C aborts at once.
    """
    cfg = _checked_config(config, set_, force, resume)  # before the training stack is imported: a refusal is quick
    folder_root = runs_dir_path(runs_dir)
    names = track_names(track, cfg.track)
    tracked_dir = runs_dir_of(resume) if resume is not None else folder_root
    with nothing_left_on_failure(folder_root):
        if nproc > 1:  # the workers train, with `threads` each; this process launches them
            with tracking(names, tracked_dir) as trackers:
                _run_on_processes(cfg, nproc, resume, folder_root, force, quiet, checkpoint_every, threads)
            check_tracking(trackers)
            return
        from emabench.runs.interrupts import StopRequest

        set_threads(threads)
        stop = StopRequest(notice=stopping_notice)
        with tracking(names, tracked_dir) as trackers:
            if config is None and resume is None and not quiet:
                console.print(
                    "Training the seed study shipped with emabench (`emabench configs regression` prints it)."
                )
            with stop.installed(), epoch_progress(cfg.train.max_epochs, quiet) as on_epoch:
                outcome = _train(cfg, resume, folder_root, force, on_epoch, stop.is_set, checkpoint_every)
            _render(outcome)
            if outcome.status in ("completed", "diverged"):  # the table first: matplotlib costs more than a short run
                outcome.folder.draw_run_figures()
    check_tracking(trackers)
    if stop.is_set():  # Ctrl-C during the last epoch: the run finished, the user still asked to stop
        raise typer.Exit(EXIT_INTERRUPTED)


def _train(
    cfg: Config,
    resume: Path | None,
    runs_dir: Path,
    force: bool,
    on_epoch: Any,
    stop: Any,
    checkpoint_every: int | None,
) -> RunOutcome:
    """Train the run (or continue ``resume``), leaving its figures for after the table."""
    from emabench.runs import single

    common = {"on_epoch": on_epoch, "stop": stop, "checkpoint_every": checkpoint_every, "plots": False}
    if resume is not None:
        return single.resume(resume, **common)
    return single.run(cfg, runs_dir, force=force, **common)


def _run_on_processes(
    cfg: Config,
    nproc: int,
    resume: Path | None,
    runs_dir: Path,
    force: bool,
    quiet: bool,
    checkpoint_every: int | None,
    threads: int,
) -> None:
    """``--nproc N``: the run on N processes; this one launches them, forwards Ctrl-C and shows rank 0's progress."""
    from emabench.runs import data_parallel

    requested: list[bool] = []

    def notice() -> None:
        requested.append(True)
        stopping_notice()

    options = {
        "checkpoint_every": checkpoint_every,
        "threads": threads,
        "progress": functools.partial(epoch_progress, cfg.train.max_epochs, quiet),
        "notice": notice,
    }
    if resume is not None:
        outcome = data_parallel.resume(resume, nproc, **options)
    else:
        outcome = data_parallel.run(cfg, runs_dir, nproc, force=force, **options)
    _render(outcome)
    if outcome.status in ("completed", "diverged"):
        outcome.folder.draw_run_figures()
    if requested:  # Ctrl-C during the last epoch: the run finished, the user still asked to stop
        raise typer.Exit(EXIT_INTERRUPTED)


def _checked_config(config: Path | None, set_: list[str] | None, force: bool, resume: Path | None) -> Config:
    """The config to train: CONFIG with ``--set`` overrides, or the ``--resume`` folder's own."""
    from emabench.config import load_config

    if resume is None:
        return load_config(config, set_ or [])  # no CONFIG: the shipped seed study
    if config is not None:
        raise ConfigError(f"give either CONFIG ({config}) to train or --resume {resume} to continue a run, not both")
    if set_ or force:
        raise ConfigError("--resume continues a run with its own config.yaml: --set and --force do not apply")
    from emabench.runs.folder import RunFolder
    from emabench.runs.single import load_run_config

    return load_run_config(RunFolder(resume))


def _render(outcome: RunOutcome) -> None:
    """How the run ended and its final table; exit code 130 if it was interrupted."""
    if outcome.status == "not_started":
        exit_interrupted("stopped before the first epoch; nothing was trained")
    if outcome.status == "interrupted":
        exit_interrupted(
            f"{outcome.folder.path} stopped after epoch {outcome.epochs} and saved a checkpoint; "
            f"continue with: emabench run --resume {outcome.folder.path}"
        )
    if outcome.status == "failed":
        from emabench.runs.layout import FAILED

        raise RunError(
            f"{outcome.folder.path}: training failed after {outcome.epochs} epoch(s) ({outcome.error}); the traceback "
            f"is in {outcome.folder.path / FAILED}"
        )
    if outcome.status == "skipped":
        console.print(f"Already finished (use --force to re-train): {outcome.folder.path}")
    else:
        resumed = f", resumed from epoch {outcome.resumed_from}" if outcome.resumed_from else ""
        console.print(
            f"Run folder: [bold]{outcome.folder.path}[/]  ({outcome.status}: {outcome.stop_reason} after "
            f"{outcome.epochs} epochs{resumed}, {outcome.wall_time_s:.1f} s)"
        )
    print_metrics(outcome.folder)
