"""An exclusive ``flock`` lock on one folder, through a lock file inside it (named by the caller:
:mod:`emabench.runs.folder` owns the run folder's file names).

The kernel releases a ``flock`` if the process dies, so a killed run never leaves a stale lock. The holder unlinks the
file on release; a process that opened the old file just before sees that its inode is no longer the folder's lock
file and tries again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from emabench.errors import RunError
from emabench.runs.atomic import FILE_MODE, make_folder


class RunLock:
    """An exclusive lock on one run folder; :meth:`release` (or leaving the ``with`` block) gives it back."""

    def __init__(self, folder: Path, lock_file: Path, fd: int) -> None:
        self.folder = folder
        self._lock_file = lock_file
        self._fd: int | None = fd

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Unlink the lock file while still holding it, unlock, and remove the folder if nothing else is in it."""
        if self._fd is None:
            return
        self._lock_file.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
        with contextlib.suppress(OSError):
            self.folder.rmdir()  # only succeeds when empty: a run locked but never started leaves no trace


def try_lock(folder: Path, lock_file: Path) -> RunLock | None:
    """Lock ``folder`` (creating it) through ``lock_file`` for the calling process, or ``None`` if another process
    holds it."""
    for _ in range(5):
        make_folder(folder)
        try:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except FileNotFoundError:  # the folder was removed by a releasing holder in between
            continue
        except OSError as err:
            raise RunError(f"{lock_file}: cannot create the lock file ({err.strerror or err})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
                return None
            raise RunError(f"{lock_file}: cannot lock ({err.strerror or err})") from None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(lock_file).st_ino == os.fstat(fd).st_ino:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return RunLock(folder, lock_file, fd)
        os.close(fd)  # we locked a file its holder had just unlinked: try the new one
    return None
