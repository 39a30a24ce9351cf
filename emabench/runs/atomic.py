"""Atomic writes and folder creation for everything emabench writes to disk; no run-folder file names here.

Every file is written to a temporary name in the same folder and renamed into place, so a reader never sees a
half-written file. A full disk or any other write error is a :class:`~emabench.errors.RunError` naming the file;
the previous version of that file stays intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from emabench.errors import RunError

TMP_SUFFIX = ".tmp"  # of a write in progress: ``.<name>.<random>.tmp`` next to its target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()


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
        os.fchmod(fd, FILE_MODE)  # mkstemp creates 0600; run files are ordinary files
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


def make_folder(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(f"{path}: cannot create the folder ({err.strerror or err})") from None


def inside(path: str | Path, root: str | Path) -> Path:
    """``path`` resolved, if it lies within ``root``; else a :class:`RunError` (nothing is written outside it)."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if resolved != base and base not in resolved.parents:
        raise RunError(f"{path}: refusing to write outside the runs folder {root}")
    return resolved
