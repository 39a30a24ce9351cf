"""Reading a run folder: :class:`RunFiles`, what a run folder's files say (status, DONE's record, config, history,
metrics, task, predictions) and whether they can be trusted (:mod:`emabench.runs.integrity`). Nothing here writes;
:class:`~emabench.runs.folder.RunFolder` adds the lifecycle that does.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emabench.config import Config, parse_yaml, validate_config
from emabench.errors import InputError, RunError
from emabench.runs import integrity
from emabench.runs.encoding import csv_value, decode_predictions
from emabench.runs.layout import CONFIG, DONE, FAILED, HISTORY, INTERRUPTED, METRICS, PREDICTIONS, TASK, file_sha256

if TYPE_CHECKING:
    import pandas as pd

    from emabench.tasks.base import Task
    from emabench.tasks.metric_specs import MetricSet


class RunFiles:
    """A run folder's files as they are on disk, read."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def is_done(self) -> bool:
        return (self.path / DONE).is_file()

    @property
    def status(self) -> str:
        """``completed``/``diverged`` (from DONE), ``failed``, ``interrupted``, ``incomplete``, or ``damaged`` (a DONE
        that is not emabench's)."""
        if self.is_done:
            record = self.done_record()
            return "damaged" if record is None else str(record.get("status", "completed"))
        if (self.path / FAILED).is_file():
            return "failed"
        if (self.path / INTERRUPTED).is_file():
            return "interrupted"
        return "incomplete"

    def done_record(self) -> dict[str, Any] | None:
        """DONE's JSON, or ``None`` when there is none or it is not emabench's (see :meth:`problems`)."""
        return integrity.done_record(self.path)[0]

    def problems(self) -> list[str]:
        """What makes the folder unfit to be read (:func:`emabench.runs.integrity.problems`); empty when it is fine."""
        return integrity.problems(self.path)

    def same_results(self, other: RunFiles) -> bool:
        """Whether ``other`` holds this run's history and final metrics, byte for byte (the same run found twice)."""
        return all(file_sha256(self.path / name) == file_sha256(other.path / name) for name in (HISTORY, METRICS))

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

    def read_config(self) -> Config:
        """The run's ``config.yaml``, validated; an :class:`InputError` if the folder has none."""
        if not (self.path / CONFIG).is_file():
            raise InputError(f"{self.path}: not a run folder (no {CONFIG})")
        source = str(self.path / CONFIG)
        return validate_config(parse_yaml(self.read_config_text(), source), source)

    def read_table(self, name: str) -> pd.DataFrame:
        import pandas as pd

        try:
            return pd.read_csv(self.path / name)
        except (OSError, ValueError) as err:
            raise RunError(f"{self.path / name}: unreadable ({err})") from None

    def read_history(self) -> pd.DataFrame:
        return self.read_table(HISTORY)

    def read_metrics_rows(self) -> list[dict[str, Any]]:
        """``metrics.csv`` as rows (numbers as floats, ``model`` as text), read without pandas."""
        try:
            with open(self.path / METRICS, encoding="utf-8", newline="") as handle:
                return [
                    {k: v if k == "model" else csv_value(v) for k, v in row.items()} for row in csv.DictReader(handle)
                ]
        except (OSError, csv.Error, UnicodeDecodeError) as err:
            raise RunError(f"{self.path / METRICS}: unreadable ({err})") from None

    def task(self) -> Task | MetricSet:
        """The run's task: :meth:`recorded_task`, else ``config.yaml``'s ``task`` (regression when it names none;
        declared with the config's own ``metrics`` when it has some)."""
        from emabench.tasks.declared import config_task_name
        from emabench.tasks.registry import get_task

        document = parse_yaml(self.read_config_text(), str(self.path / CONFIG))
        name = self.recorded_task() or config_task_name(document)
        try:
            return get_task(str(name or "regression"))
        except ValueError as err:
            raise RunError(f"{self.path / CONFIG}: {err}") from None

    def recorded_task(self) -> str | None:
        """``task.json``'s task name (a run tracked by its own loop, :mod:`emabench.track`), or ``None``."""
        try:
            record = json.loads((self.path / TASK).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise RunError(f"{self.path / TASK}: unreadable ({err})") from None
        if not isinstance(record, dict) or not isinstance(record.get("name"), str):
            raise RunError(f"{self.path / TASK}: names no task")
        return record["name"]

    def read_metrics(self) -> pd.DataFrame:
        return self.read_table(METRICS)

    def read_predictions(self) -> dict[str, Any]:
        """``predictions.npz`` as ``{model: array}`` (empty without one)."""
        path = self.path / PREDICTIONS
        return decode_predictions(path) if path.is_file() else {}
