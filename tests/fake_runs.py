"""Finished run folders written directly, for the report's tests: what the runner leaves behind, from given rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from emabench.results.tables import final_metrics
from emabench.runs.folder import RunFolder
from emabench.tasks.base import Task


def write_run(
    path: Path,
    config: dict[str, Any],
    rows: list[dict[str, Any]],
    task: Task,
    *,
    status: str = "completed",
    stop_reason: str = "max_epochs",
    done: bool = True,
    extra: dict[str, Any] | None = None,
) -> RunFolder:
    """config.yaml and history.csv; when ``done``, also metrics.csv (the task's final table, with what exists only at
    the end: ``extra`` as the trainer's final record gives it, test metrics and best states) and DONE; with
    ``extra["predictions"]``, predictions.npz."""
    folder = RunFolder(path).create()
    folder.write_config(yaml.safe_dump(config))
    folder.write_history(rows)
    if extra and extra.get("predictions"):
        folder.write_predictions(extra["predictions"])
    if done:
        folder.write_metrics(final_metrics(rows, task, extra))
        folder.mark_done({"status": status, "stop_reason": stop_reason, "epochs": len(rows), "wall_time_s": 1.0})
    return folder
