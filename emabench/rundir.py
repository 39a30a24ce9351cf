"""The run folder: the one module that knows its file names, writes them atomically and reads them back.

A run folder holds::

    config.yaml   the fully resolved config (re-run it with ``emabench run config.yaml``)
    history.csv   one row per epoch, rewritten atomically after every epoch
    metrics.csv   the final comparison, one row per model
    loss.png      train/validation loss curves, raw vs averaged
    r2.png        validation R² curves, raw vs averaged
    checkpoint.pt with ``--checkpoint-every`` or after Ctrl-C: the state to continue the run (removed once DONE)
    INTERRUPTED   written when Ctrl-C/SIGTERM stopped the run (JSON: epochs, checkpoint epoch)
    DONE          written last (JSON: status, stop reason, epochs, wall time); a folder without it is incomplete
    .lock         held (``flock``) by the process training the run, so two sweeps never train it at once

Every file is written to a temporary name in the same folder and renamed into place, so a reader never sees a
half-written file. A full disk or any other write error is a :class:`~emabench.errors.RunError` naming the file;
the previous version of that file stays intact.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emabench.errors import RunError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

CONFIG = "config.yaml"
HISTORY = "history.csv"
METRICS = "metrics.csv"
LOSS_PLOT = "loss.png"
R2_PLOT = "r2.png"
DONE = "DONE"
INTERRUPTED = "INTERRUPTED"
CHECKPOINT = "checkpoint.pt"
LOCK = ".lock"
CHECKPOINT_FORMAT = 1  # bump when the layout of Trainer.replica_state changes; older checkpoints are refused
SWEEP = "sweep.json"
REPORT_CSV = "report.csv"
REPORT_MD = "report.md"

TMP_SUFFIX = ".tmp"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text``: no separators, no leading dots, at most 80 characters."""
    cleaned = _UNSAFE.sub("-", text).strip("-.")[:80]
    return cleaned or "run"


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of a resolved config: the same config always lands in the same folder."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def run_id(config: dict[str, Any]) -> str:
    """``<name>-seed<seed>-<hash>``, deterministic from the resolved config."""
    return safe_name(f"{config['name']}-seed{config['seed']}-{config_hash(config)}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Write to a temporary file in the same folder, then rename it over ``path``.

    A reader sees the old or the new file, never a part, whatever happens to this process. ``durable`` also
    fsyncs before the rename (survives a power cut); history rewrites every epoch skip that, markers don't.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    except OSError as err:
        raise RunError(f"{path}: cannot write ({err.strerror or err})") from None
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp creates 0600; run files are ordinary files
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):  # a full disk, a read-only or vanished folder: one line, not a traceback
            raise RunError(f"{path}: cannot write ({err.strerror or err})") from None
        raise


def atomic_write_text(path: Path, text: str, *, durable: bool = False) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def rows_to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    columns = list(columns or (rows[0].keys() if rows else []))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class RunFolder:
    """One run's folder under a runs directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._history: tuple[list[dict[str, Any]], str] = ([], "")  # rows written so far, and their CSV text

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    # --- writing ------------------------------------------------------------------------------------------------
    def create(self) -> RunFolder:
        make_folder(self.path)
        return self

    def clear(self) -> None:
        """Remove everything a previous attempt left (``--force``, restarting an incomplete run), except the lock
        file: it is held by the caller, and a new file would let a second process lock the same run."""
        self._history = ([], "")
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
        atomic_write_text(self.path / HISTORY, self._history[1])

    def append_history(self, row: dict[str, Any]) -> None:
        """Add one epoch's row to the rows written so far and replace ``history.csv`` (whole, atomically); only the
        new row is rendered, so a long run does not pay for its whole history every epoch."""
        rows, text = self._history
        rows.append(dict(row))
        same_columns = len(rows) > 1 and rows[-2].keys() == rows[-1].keys()
        text = text + rows_to_csv([row]).split("\n", 1)[1] if same_columns else rows_to_csv(rows)
        self._history = (rows, text)
        atomic_write_text(self.path / HISTORY, text)

    def write_metrics(self, table: pd.DataFrame) -> None:
        atomic_write_text(self.path / METRICS, table.to_csv(index=False, lineterminator="\n"))

    def save_figure(self, figure: Figure, name: str) -> None:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        atomic_write_bytes(self.path / name, buffer.getvalue())

    def mark_done(self, info: dict[str, Any]) -> None:
        (self.path / INTERRUPTED).unlink(missing_ok=True)
        atomic_write_text(self.path / DONE, json.dumps(info, indent=2, sort_keys=True) + "\n", durable=True)

    def mark_interrupted(self, info: dict[str, Any]) -> None:
        atomic_write_text(self.path / INTERRUPTED, json.dumps(info, indent=2, sort_keys=True) + "\n")

    def clear_interrupted(self) -> None:
        (self.path / INTERRUPTED).unlink(missing_ok=True)

    # --- checkpoints ----------------------------------------------------------------------------------------------
    def write_checkpoint(self, state: dict[str, Any]) -> None:
        """Save a run's state (tensors, numbers, strings, lists and dicts only) atomically as ``checkpoint.pt``."""
        import torch

        _check_plain(state, "checkpoint")
        buffer = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
        atomic_write_bytes(self.path / CHECKPOINT, buffer.getvalue())

    @property
    def has_checkpoint(self) -> bool:
        return (self.path / CHECKPOINT).is_file()

    def read_checkpoint(self) -> dict[str, Any]:
        """The saved state, loaded with ``weights_only=True`` (no code runs) onto the CPU."""
        import torch

        path = self.path / CHECKPOINT
        if not path.is_file():
            raise RunError(f"{self.path}: no {CHECKPOINT} to resume from (the run was not checkpointed)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a truncated or foreign file: torch raises several kinds
            raise RunError(f"{path}: unreadable checkpoint ({type(err).__name__})") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise RunError(f"{path}: not a checkpoint of this emabench version (format {CHECKPOINT_FORMAT})")
        return state

    def remove_checkpoint(self) -> None:
        (self.path / CHECKPOINT).unlink(missing_ok=True)

    # --- locking --------------------------------------------------------------------------------------------------
    def try_lock(self) -> RunLock | None:
        """Lock this run for the calling process (creating its folder), or ``None`` if another process holds it.

        ``flock`` on ``.lock`` inside the folder: released by the kernel if the process dies, so a killed run never
        leaves a stale lock. The holder unlinks the file on release; a process that opened the old file just before
        sees that its inode is no longer the folder's lock file and tries again.
        """
        path = self.path / LOCK
        for _ in range(5):
            self.create()
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
            except FileNotFoundError:  # the folder was removed by a releasing holder in between
                continue
            except OSError as err:
                raise RunError(f"{path}: cannot create the lock file ({err.strerror or err})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    return None
                raise RunError(f"{path}: cannot lock ({err.strerror or err})") from None
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                    return RunLock(self, fd)
            os.close(fd)  # we locked a file its holder had just unlinked: try the new one
        return None

    # --- reading ------------------------------------------------------------------------------------------------
    @property
    def is_done(self) -> bool:
        return (self.path / DONE).is_file()

    @property
    def status(self) -> str:
        """``completed``/``diverged`` (from DONE), ``interrupted``, or ``incomplete``."""
        if self.is_done:
            return str(self.done_info().get("status", "completed"))
        if (self.path / INTERRUPTED).is_file():
            return "interrupted"
        return "incomplete"

    def done_info(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / DONE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise RunError(f"{self.path / DONE}: unreadable ({err})") from None

    def read_config_text(self) -> str:
        try:
            return (self.path / CONFIG).read_text(encoding="utf-8")
        except OSError as err:
            raise RunError(f"{self.path}: no readable {CONFIG} ({err.strerror})") from None

    def read_table(self, name: str) -> pd.DataFrame:
        import pandas as pd

        try:
            return pd.read_csv(self.path / name)
        except (OSError, ValueError) as err:
            raise RunError(f"{self.path / name}: unreadable ({err})") from None

    def read_history(self) -> pd.DataFrame:
        return self.read_table(HISTORY)

    def read_metrics(self) -> pd.DataFrame:
        return self.read_table(METRICS)


def _check_plain(value: Any, where: str) -> None:
    """Refuse anything ``torch.load(weights_only=True)`` would not read back (custom classes, str subclasses)."""
    import torch

    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, where)
            _check_plain(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not (type(value) in (str, int, float, bool, type(None)) or type(value) is torch.Tensor):
        raise TypeError(f"{where}: {type(value).__name__} cannot be saved in a weights-only checkpoint")


class RunLock:
    """An exclusive lock on one run folder; :meth:`release` (or leaving the ``with`` block) gives it back."""

    def __init__(self, folder: RunFolder, fd: int) -> None:
        self.folder = folder
        self._fd: int | None = fd

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Unlink the lock file while still holding it, unlock, and remove the folder if nothing else is in it."""
        if self._fd is None:
            return
        (self.folder.path / LOCK).unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
        with contextlib.suppress(OSError):
            self.folder.path.rmdir()  # only succeeds when empty: a run locked but never started leaves no trace


def inside(path: str | Path, root: str | Path) -> Path:
    """``path`` resolved, if it lies within ``root``; else a :class:`RunError` (nothing is written outside it)."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if resolved != base and base not in resolved.parents:
        raise RunError(f"{path}: refusing to write outside the runs folder {root}")
    return resolved


def is_run_folder(path: Path) -> bool:
    return (path / CONFIG).is_file()


def find_runs(roots: Iterable[str | Path]) -> list[RunFolder]:
    """Every run folder at or below each root (a run folder, a sweep folder or a runs directory), sorted."""
    found: dict[Path, RunFolder] = {}
    for root in map(Path, roots):
        if not root.exists():
            raise RunError(f"{root}: no such folder")
        candidates = [root] if is_run_folder(root) else sorted(p.parent for p in root.rglob(CONFIG))
        for path in candidates:
            if is_run_folder(path) and not path.name.startswith("."):
                found[path.resolve()] = RunFolder(path)
    return [found[k] for k in sorted(found)]


def sweep_dir(runs_dir: Path, name: str, spec: dict[str, Any]) -> Path:
    """``<runs_dir>/sweep-<name>-<hash of the sweep's arguments>``: re-running a sweep reuses its folder."""
    return runs_dir / safe_name(f"sweep-{name}-{config_hash(spec)}")


def make_folder(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(f"{path}: cannot create the folder ({err.strerror or err})") from None


def write_sweep_spec(folder: Path, spec: dict[str, Any]) -> None:
    make_folder(folder)
    atomic_write_text(folder / SWEEP, json.dumps(spec, indent=2, sort_keys=True) + "\n")


def sweep_mode(run_folder: RunFolder) -> str:
    """How the run was made: ``runs`` or ``shadows`` (from its sweep's ``sweep.json``), or ``single`` (``run``)."""
    try:
        spec = json.loads((run_folder.path.parent / SWEEP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "single"
    return str(spec.get("mode", "runs"))


def write_report(folder: Path, csv_text: str, markdown: str) -> tuple[Path, Path]:
    make_folder(folder)
    atomic_write_text(folder / REPORT_CSV, csv_text)
    atomic_write_text(folder / REPORT_MD, markdown)
    return folder / REPORT_CSV, folder / REPORT_MD
