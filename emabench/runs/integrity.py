"""Can a run folder be trusted? What its files hold now against what ``DONE`` recorded when the run finished.

A finished run's ``DONE`` records the sha256 of ``config.yaml``, ``history.csv``, ``metrics.csv`` (and ``task.json``,
where a run tracked by its own loop has one) as they were written (:meth:`~emabench.runs.folder.RunFolder.mark_done`).
:func:`problems` names, in words a user can act on, everything that makes a folder unfit to be read: a missing or
invalid config, a ``DONE`` that is not emabench's, a file changed, removed or added since the run finished, a history
without epochs. ``emabench ls``, ``show`` and ``report`` list such a folder as damaged, with these words, and go on
with the others.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emabench.config import parse_yaml
from emabench.errors import EmabenchError, one_line
from emabench.runs.layout import CONFIG, DONE, HISTORY, RECORDED, TASK, file_sha256


def done_record(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``DONE``'s JSON (``None`` without one), or the problem that makes it unreadable."""
    try:
        text = (path / DONE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as err:
        return None, f"{DONE} unreadable ({type(err).__name__})"
    try:
        record = json.loads(text)
    except ValueError:
        return None, f"{DONE} is not emabench's (not JSON)"
    if not isinstance(record, dict):
        return None, f"{DONE} is not emabench's (not a JSON object)"
    return record, None


def config_problem(path: Path) -> str | None:
    """Why ``config.yaml`` cannot be read as a config (missing, unreadable, not a YAML mapping), or ``None``. Its
    keys are not checked against today's schema: a run of an earlier version is still a run."""
    try:
        text = (path / CONFIG).read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"no {CONFIG}"
    except (OSError, UnicodeDecodeError) as err:
        return f"{CONFIG} unreadable ({type(err).__name__})"
    try:
        document = parse_yaml(text, str(path / CONFIG))
    except EmabenchError as err:
        return f"{CONFIG} is not YAML ({one_line(str(err), 160)})"
    return None if isinstance(document, dict) else f"{CONFIG} is not a mapping of config keys"


def problems(path: Path) -> list[str]:
    """Everything wrong with the run folder at ``path`` (empty: it can be read as it is)."""
    found = [p for p in (config_problem(path),) if p]
    record, unreadable = done_record(path)
    if unreadable:
        return [*found, unreadable]
    if record is None:
        return found  # not finished: nothing more is promised
    recorded = record.get("sha256", {})
    recorded = recorded if isinstance(recorded, dict) else {}
    for name in RECORDED:
        digest = file_sha256(path / name)
        if name == TASK and name not in recorded:  # only a run tracked by its own loop has one
            if digest is not None and recorded:
                found.append(f"{name} added after the run finished")
        elif digest is None:
            if name != CONFIG:  # a missing config is named above
                found.append(f"{name} missing or unreadable")
        elif recorded.get(name, digest) != digest:
            found.append(f"{name} changed after the run finished")
    if not found and not _has_epochs(path / HISTORY):
        found.append(f"{HISTORY} holds no epochs")
    return found


def _has_epochs(path: Path) -> bool:
    """Whether a history file has a header and at least one row (the check for folders whose DONE predates the
    recorded sha256)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return sum(1 for line in handle if line.strip()) > 1
    except (OSError, UnicodeDecodeError):
        return False
