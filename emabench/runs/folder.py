"""The run folder's lifecycle on disk: :class:`RunFolder` writes the files :mod:`emabench.runs.layout` names (and
reads them as :class:`~emabench.runs.reading.RunFiles`).

The lifecycle, in :class:`RunFolder`'s methods: :meth:`~RunFolder.start` (clear what a previous attempt left, create,
write the config), :meth:`~RunFolder.record_epoch` (append a history row), :meth:`~RunFolder.save_checkpoint`,
:meth:`~RunFolder.interrupt`, :meth:`~RunFolder.fail`, :meth:`~RunFolder.resume` (history cut back to the checkpoint's
epoch) and :meth:`~RunFolder.finish` (metrics, figures, DONE with the files' sha256, then the checkpoint dropped).
Every file is written atomically (:mod:`emabench.runs.atomic`). The sweep folder's and the report's file names are in
:mod:`emabench.runs.sweep_folder`. Each step of the lifecycle, once on disk, is told to the process's run observer
(:mod:`emabench.runs.observe`: a tracker keeping a copy in MLflow or TensorBoard, or nobody).
"""

from __future__ import annotations

import io
import json
import math
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emabench.config import Config, dump_yaml
from emabench.errors import InputError, RunError
from emabench.runs import observe
from emabench.runs.atomic import TMP_SUFFIX, atomic_write_bytes, atomic_write_text, inside, make_folder
from emabench.runs.encoding import (
    decode_checkpoint,
    encode_checkpoint,
    encode_predictions,
    rows_to_csv,
)
from emabench.runs.layout import (
    CHECKPOINT,
    CONFIG,
    DONE,
    FAILED,
    HISTORY,
    INTERRUPTED,
    LOCK,
    LOSS_PLOT,
    METRICS,
    PREDICTIONS,
    RECORDED,
    TASK,
    TENSORBOARD,
    file_sha256,
    find_run_paths,
    metric_plot,
    run_hash,
    run_id,
)
from emabench.runs.lock import RunLock, try_lock
from emabench.runs.reading import RunFiles

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from emabench.tasks.base import Task
    from emabench.tasks.metric_specs import MetricSet

HISTORY_EVERY_S = 2.0  # history.csv is rewritten at most this often while a run trains (always at its end)


def _document(config: Config | Mapping[str, Any]) -> dict[str, Any]:
    """A config as plain types, as ``config.yaml`` records it: a :class:`Config` without its ``track:`` section (where
    copies go is not part of the run), or the mapping of a tracked run (:mod:`emabench.track`)."""
    if isinstance(config, Config):
        return {key: value for key, value in config.to_dict().items() if key != "track"}
    return dict(config)


class RunFolder(RunFiles):
    """One run's folder under a runs directory."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self._history: tuple[list[dict[str, Any]], str] = ([], "")  # rows so far, and their CSV text
        self._unwritten = False  # rows not yet in history.csv
        self._written_at = -math.inf  # when history.csv was last written (time.monotonic())

    @classmethod
    def for_config(cls, config: Config | Mapping[str, Any], runs_dir: str | Path) -> RunFolder:
        """``<runs_dir>/<run id>``: where ``config`` is trained."""
        folder = Path(runs_dir) / run_id(_document(config))
        inside(folder, runs_dir)  # run ids are sanitized; this keeps it so
        return cls(folder)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def tensorboard_dir(self) -> Path:
        """Where ``--track tensorboard`` writes the run's event files."""
        return self.path / TENSORBOARD

    def copied_files(self) -> list[Path]:
        """The files a tracker keeps beside its copy of the run: ``config.yaml``, ``metrics.csv`` and the figures,
        those that exist."""
        named = [self.path / CONFIG, self.path / METRICS]
        return [p for p in named if p.is_file()] + sorted(p for p in self.path.glob("*.png") if p.is_file())

    # --- the lifecycle ----------------------------------------------------------------------------------------------
    def start(self, config: Config | Mapping[str, Any]) -> None:
        """A fresh start: clear what a previous attempt left, create the folder, write the resolved config."""
        self.clear()
        self.create().write_config(dump_yaml(_document(config)))
        observe.current().started(self, config)

    def record_epoch(self, row: dict[str, Any]) -> None:
        """One finished epoch's history row: kept, and ``history.csv`` rewritten at most every
        :data:`HISTORY_EVERY_S` seconds while the run trains (a sweep of hundreds of runs would otherwise spend more
        on renaming files than on a short epoch); every row is on disk at a checkpoint, a stop and the run's end."""
        self._remember(row)
        if time.monotonic() - self._written_at >= HISTORY_EVERY_S:
            self.flush_history()

    def flush_history(self) -> None:
        """Write the rows not yet on disk (``history.csv``, whole and atomically)."""
        if self._unwritten:
            atomic_write_text(self.path / HISTORY, self._history[1])
            self._unwritten, self._written_at = False, time.monotonic()
            observe.current().flushed(self, self._history[0])

    def finish(
        self,
        history: Sequence[dict[str, Any]],
        extra: dict[str, Any],
        info: dict[str, Any],
        *,
        task: Task | MetricSet,
        seed: int,
        plots: bool = True,
    ) -> None:
        """The run's end: ``metrics.csv`` from its history (``task``'s metrics; ``extra``: what exists only at the
        end, :func:`~emabench.results.tables.final_metrics`), ``predictions.npz`` (with a test set), the figures
        (``plots``; titled with the run and its ``seed``), ``DONE`` with ``info``, then the checkpoint is dropped."""
        from emabench.results.tables import final_metrics

        self.flush_history()
        self.write_metrics(final_metrics(history, task, extra))
        if extra.get("predictions"):
            self.write_predictions(extra["predictions"])
        if plots:
            self.draw_figures(history, task, seed)
        self.mark_done(info)
        self.remove_checkpoint()  # after DONE: a run killed in between only leaves a spare file
        observe.current().ended(self, str(info.get("status", "completed")))

    def draw_run_figures(self) -> None:
        """:meth:`draw_figures` from what the folder holds (a finished run's history and config)."""
        from emabench.tasks.user import task_of

        config = self.read_config()
        self.draw_figures(self.read_history().to_dict("records"), task_of(config), config.seed)

    def draw_figures(self, history: Sequence[dict[str, Any]], task: Task, seed: int) -> None:
        """``loss.png`` and the task's metric figure (``r2.png``, ``accuracy.png``), titled with the run and seed.
        ``emabench run`` draws them after showing the final table (matplotlib costs more than a short run)."""
        import pandas as pd

        from emabench.results.figures import loss_figure, metric_figure

        frame = pd.DataFrame(history)
        run = f"{self.name} (seed {seed})"
        self.save_figure(loss_figure(frame, task, run), LOSS_PLOT)
        self.save_figure(metric_figure(frame, task, run=run), metric_plot(task.plot_metric))

    def interrupt(self, info: dict[str, Any]) -> None:
        """Mark the run stopped before its end (its checkpoint, if any, lets it continue); marked even when its
        last history rows cannot be written (a full disk)."""
        try:
            self.flush_history()
        finally:
            self.mark_interrupted(info)
        observe.current().ended(self, "interrupted")

    def fail(self, config: Config | Mapping[str, Any], info: dict[str, Any]) -> None:
        """Mark the run failed (its training raised, its task was lost for good, the disk is full); a checkpoint, if
        any, stays to continue from. A run that failed before it started gets its config too, so it is listed
        (``emabench ls``) and counted. The mark comes before the history rows not yet written (on a full disk the
        few bytes of the mark may still fit)."""
        if not (self.path / CONFIG).is_file():
            self.create().write_config(dump_yaml(_document(config)))
        (self.path / INTERRUPTED).unlink(missing_ok=True)
        atomic_write_text(self.path / FAILED, json.dumps(info, indent=2, sort_keys=True) + "\n", durable=True)
        self.flush_history()
        observe.current().ended(self, "failed")

    def resume(self, history: Sequence[dict[str, Any]]) -> None:
        """Continue from the checkpoint: drop partial writes and the interrupted or failed mark, and cut
        ``history.csv`` back to the checkpoint's rows (epochs after it are trained again)."""
        observe.current().resumed(self, history)
        self.remove_partial_writes()
        self.clear_interrupted()
        self.write_history(history)

    def save_checkpoint(self, config: Config, state: dict[str, Any]) -> None:
        """The run's own state (see :func:`encode_checkpoint`), tagged with the hash of ``config``."""
        self.flush_history()
        self.write_checkpoint_bytes(encode_checkpoint(state, run_hash(config.to_dict())))

    def checkpoint_for(self, config: Config) -> dict[str, Any]:
        """The checkpoint, if it was saved for ``config``; else an :class:`InputError` (none) or a :class:`RunError`
        (unreadable, or saved for another config)."""
        return self.checkpoint_file_for(config)[1]

    def checkpoint_file_for(self, config: Config) -> tuple[bytes, dict[str, Any]]:
        """The checkpoint's bytes (``checkpoint.pt`` as it is) and its state, if saved for ``config``."""
        path = self.path / CHECKPOINT
        if not path.is_file():  # a user's --resume of a run that has none: bad input (exit 2)
            raise InputError(f"{self.path}: no {CHECKPOINT} to resume from (the run was not checkpointed)")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise RunError(f"{path}: unreadable checkpoint ({err.strerror or err})") from None
        state = decode_checkpoint(data, path)
        if state.get("config_hash") != run_hash(config.to_dict()):
            raise RunError(f"{self.path}: the checkpoint was saved for a different config than its config.yaml")
        return data, state

    def resume_point(self, config: Config) -> dict[str, Any] | None:
        """The checkpoint the run can continue from, or ``None`` (DONE, none, unreadable or saved for another
        config)."""
        if self.is_done or not self.has_checkpoint:
            return None
        try:
            return self.checkpoint_for(config)
        except RunError:
            return None

    # --- writing ------------------------------------------------------------------------------------------------
    def create(self) -> RunFolder:
        make_folder(self.path)
        return self

    def clear(self) -> None:
        """Remove everything a previous attempt left (``--force``, restarting an incomplete run), except the lock
        file: it is held by the caller, and a new file would let a second process lock the same run."""
        self._history, self._unwritten = ([], ""), False
        if not self.path.is_dir():
            return
        for entry in self.path.iterdir():
            if entry.name == LOCK:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)

    def remove_partial_writes(self) -> None:
        """Delete temporary files of writes a killed process never renamed into place."""
        for entry in self.path.glob(f".*{TMP_SUFFIX}"):
            entry.unlink(missing_ok=True)

    def write_config(self, config_yaml: str) -> None:
        atomic_write_text(self.path / CONFIG, config_yaml)

    def write_history(self, rows: Sequence[dict[str, Any]]) -> None:
        self._history = ([dict(row) for row in rows], rows_to_csv(rows))
        self._unwritten = True
        self.flush_history()

    def append_history(self, row: dict[str, Any]) -> None:
        """Add one epoch's row to the rows written so far and replace ``history.csv`` (whole, atomically) now."""
        self._remember(row)
        self.flush_history()

    def _remember(self, row: dict[str, Any]) -> None:
        """Add a row to the history text; only the new row is rendered, so a long run does not pay for its whole
        history every epoch."""
        rows, text = self._history
        rows.append(dict(row))
        same_columns = len(rows) > 1 and rows[-2].keys() == rows[-1].keys()
        text = text + rows_to_csv([row]).split("\n", 1)[1] if same_columns else rows_to_csv(rows)
        self._history, self._unwritten = (rows, text), True

    def write_task(self, task: MetricSet) -> None:
        """``task.json``: a tracked run's task by name (what is read back) and each metric's direction (for people)."""
        directions = {m.name: "higher" if m.higher_is_better else "lower" for m in task.metrics}
        atomic_write_text(self.path / TASK, json.dumps({"name": task.name, "metrics": directions}, indent=2) + "\n")

    def write_metrics(self, rows: Sequence[dict[str, Any]]) -> None:
        from emabench.results.tables import metrics_columns

        atomic_write_text(self.path / METRICS, rows_to_csv(rows, metrics_columns(rows)))

    def write_predictions(self, predictions: dict[str, Any]) -> None:
        """``predictions.npz``: one float32 array per model (:func:`~emabench.runs.encoding.encode_predictions`)."""
        atomic_write_bytes(self.path / PREDICTIONS, encode_predictions(predictions))

    def save_figure(self, figure: Figure, name: str) -> None:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        atomic_write_bytes(self.path / name, buffer.getvalue())
        observe.current().figure_saved(self, name)

    def mark_done(self, info: dict[str, Any]) -> None:
        """``DONE`` with ``info`` and the sha256 of the files the run is read by (what :mod:`.integrity` checks)."""
        self.clear_interrupted()
        sha256 = {name: file_sha256(self.path / name) for name in RECORDED}
        info = info | {"sha256": {name: digest for name, digest in sha256.items() if digest is not None}}
        atomic_write_text(self.path / DONE, json.dumps(info, indent=2, sort_keys=True) + "\n", durable=True)

    def mark_interrupted(self, info: dict[str, Any]) -> None:
        atomic_write_text(self.path / INTERRUPTED, json.dumps(info, indent=2, sort_keys=True) + "\n")

    def clear_interrupted(self) -> None:
        """Drop the marks of an earlier attempt that did not finish (INTERRUPTED, FAILED)."""
        (self.path / INTERRUPTED).unlink(missing_ok=True)
        (self.path / FAILED).unlink(missing_ok=True)

    # --- checkpoints ----------------------------------------------------------------------------------------------
    def write_checkpoint_bytes(self, data: bytes) -> None:
        """``checkpoint.pt``, atomically, from :func:`encode_checkpoint` 's bytes (made here or in a Ray task)."""
        atomic_write_bytes(self.path / CHECKPOINT, data)

    @property
    def has_checkpoint(self) -> bool:
        return (self.path / CHECKPOINT).is_file()

    def remove_checkpoint(self) -> None:
        (self.path / CHECKPOINT).unlink(missing_ok=True)

    # --- locking --------------------------------------------------------------------------------------------------
    def try_lock(self) -> RunLock | None:
        """Lock this run for the calling process (creating its folder), or ``None`` if another process holds it
        (``flock`` on ``.lock`` inside the folder, see :mod:`emabench.runs.lock`)."""
        return try_lock(self.path, self.path / LOCK)


def find_runs(roots: Iterable[str | Path]) -> list[RunFolder]:
    """Every run folder at or below each root (:func:`~emabench.runs.layout.find_run_paths`), sorted."""
    return [RunFolder(path) for path in find_run_paths(roots)]
