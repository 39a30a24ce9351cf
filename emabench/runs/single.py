"""One run: ``run(config, runs_dir)`` trains it into its run folder (from Python and the CLI alike), ``resume``
continues an interrupted one from its checkpoint.

Every run is trained under a lock on its folder, so no run is trained twice at once; a run already DONE is skipped;
an incomplete one with a checkpoint continues from it.
"""

from __future__ import annotations

from pathlib import Path

from emabench.config import Config
from emabench.errors import InputError, RunError
from emabench.runs import observe
from emabench.runs.folder import RunFolder
from emabench.runs.interrupts import setting_up
from emabench.runs.unit import EpochCallback, RunOutcome, StopCheck, train_stack
from emabench.train.build import check_step_warmups, check_task_functions, runnable_device
from emabench.train.classes import check_classes


def run(
    config: Config,
    runs_dir: str | Path = "runs",
    *,
    force: bool = False,
    on_epoch: EpochCallback | None = None,
    stop: StopCheck | None = None,
    checkpoint_every: int | None = None,
    plots: bool = True,
) -> RunOutcome:
    """Train one run into ``<runs_dir>/<run-id>/``; a run already DONE is skipped unless ``force``.

    An incomplete run with a checkpoint continues from it (unless ``force``); ``checkpoint_every=None`` then keeps
    the checkpoint's own setting. ``plots=False`` leaves the figures to the caller (:meth:`RunFolder.draw_figures`).
    Raises :class:`RunError` if another process is training the same run.
    """
    folder = RunFolder.for_config(config, Path(runs_dir))
    return _run_in(folder, config, force, on_epoch, stop, checkpoint_every, plots)


def resume(
    path: str | Path,
    *,
    on_epoch: EpochCallback | None = None,
    stop: StopCheck | None = None,
    checkpoint_every: int | None = None,
    plots: bool = True,
) -> RunOutcome:
    """Continue the run in folder ``path`` from its checkpoint, with the config in its ``config.yaml``."""
    folder = RunFolder(path)
    config = load_run_config(folder)
    if not folder.is_done:
        folder.checkpoint_for(config)  # a clear error now if there is nothing to resume from
    return _run_in(folder, config, False, on_epoch, stop, checkpoint_every, plots)


def load_run_config(folder: RunFolder) -> Config:
    """The config a run folder was trained with (its ``config.yaml``, validated); a run a loop of the user's own
    tracked (:mod:`emabench.track`) is refused: that loop, not emabench, trains it."""
    if folder.recorded_task() is not None:
        raise InputError(f"{folder.path}: a run tracked by its own loop (emabench.track); run that loop again instead")
    return folder.read_config()


def _run_in(
    folder: RunFolder,
    config: Config,
    force: bool,
    on_epoch: EpochCallback | None,
    stop: StopCheck | None,
    checkpoint_every: int | None,
    plots: bool,
) -> RunOutcome:
    if folder.is_done and not force:
        return _skipped(folder)
    runnable_device(config)  # refuse before the folder is created
    with setting_up():  # it may load the data (a user's function): Ctrl-C stops it at once
        check_step_warmups([config])
        check_task_functions([config])
    check_classes([config])
    lock = folder.try_lock()
    if lock is None:
        raise RunError(f"{folder.path}: another emabench process is training this run")
    with lock:
        if folder.is_done and not force:  # finished by another process since the check above
            return _skipped(folder)
        state = None if force else folder.resume_point(config)
        every = checkpoint_every if checkpoint_every is not None else int(state["checkpoint_every"]) if state else 0
        outcomes = train_stack(
            [config], [folder], on_epoch, stop=stop, checkpoint_every=every, resume=state is not None, plots=plots
        )
        return outcomes[0]


def _skipped(folder: RunFolder) -> RunOutcome:
    """A run already DONE, left as it is (and copied to the run observer if its copy is missing or behind)."""
    observe.current().existing(folder)
    return RunOutcome.skipped(folder)
