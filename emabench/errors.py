"""The one exception family emabench raises for things a user can fix, and the exit codes the CLI maps them to.

- :class:`InputError` (and its kind :class:`ConfigError`), exit code 2: what the user gave cannot be used — an
  option, a config (its file missing, unreadable or not YAML, a key, a value, a ``--set``), a data file, a path
  that does not exist or is not what the command takes (a folder for a file, a folder that is not a run), a run id
  that matches no run or several, folders with nothing to report, a run with no checkpoint to resume. Fix the
  command line or the file and run it again.
- :class:`RunError`, exit code 3: the request was fine but carrying it out failed — results could not be written
  (permission denied, disk full), a run folder's own files (what emabench wrote) are damaged, another process holds
  the run, Ray could not be reached or lost a worker.
- Ctrl-C or SIGTERM: exit code 130 (what finished stays on disk).

Anything else is a bug and keeps its traceback. Every message is one line of at most :data:`MAX_MESSAGE` characters,
whatever it quotes (a 200k-key config must not print megabytes).
"""

from __future__ import annotations

EXIT_BAD_INPUT = 2
EXIT_RUN_ERROR = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

MAX_MESSAGE = 1000  # characters: a few terminal lines, enough for a key, its allowed values and the offending value


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line (newlines and tabs become spaces) and at most ``limit`` characters, saying what was cut."""
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    cut = flat[: max(limit - 40, 0)].rstrip()
    return f"{cut} … ({len(flat) - len(cut):,} more characters)"


def quoted(text: str, limit: int = 120) -> str:
    """``repr(text)``, shortened in the middle past ``limit`` characters: what a user typed, recognisably."""
    shown = repr(text)
    if len(shown) <= limit:
        return shown
    half = (limit - 1) // 2
    return f"{shown[:half]}…{shown[-half:]}"


class EmabenchError(Exception):
    """A user-facing error: one line, capped, mapped by the CLI to :attr:`exit_code`. Raise a subclass."""

    exit_code: int = EXIT_BAD_INPUT

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class InputError(EmabenchError):
    """Bad input (exit code 2): a path, run id or option that does not exist or is not what the command takes."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(InputError):
    """The configuration (file, ``--set`` override or CLI option) is invalid (exit code 2)."""


class RunError(EmabenchError):
    """A run or I/O failure (exit code 3): results not written, a damaged run folder, a run held elsewhere."""

    exit_code = EXIT_RUN_ERROR
