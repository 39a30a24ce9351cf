"""The one exception family emabench raises for things a user can fix.

The CLI maps :class:`EmabenchError` to a one-line message and a non-zero exit code; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class EmabenchError(Exception):
    """A user-facing error: bad input, missing files, an impossible request."""

    exit_code: int = 2


class ConfigError(EmabenchError):
    """The configuration (file, ``--set`` override or CLI option) is invalid."""


class RunError(EmabenchError):
    """A run folder is missing, incomplete or unreadable."""

    exit_code = 3
