"""What a run folder is called and what it holds: the one module that names a run folder's files.

A run folder holds::

    config.yaml   the fully resolved config (re-run it with ``emabench run config.yaml``)
    history.csv   one row per epoch, rewritten atomically after every epoch
    metrics.csv   the final comparison, one row per model
    loss.png      train/validation loss curves, raw vs averaged
    predictions.npz   with a test set: each model's test-set outputs (class probabilities for classification),
                  one float32 array per model (``raw``, ``ema``, …), for calibration and churn across seeds
    r2.png        the task's plot metric per epoch, raw vs averaged (:func:`metric_plot`: r2.png, accuracy.png)
    checkpoint.pt with ``--checkpoint-every`` or after Ctrl-C: the state to continue the run (removed once DONE)
    INTERRUPTED   written when Ctrl-C/SIGTERM stopped the run (JSON: epochs, checkpoint epoch)
    FAILED        written when training the run raised (a user's module or data code, or a bug: JSON with the error
                  and its traceback) or its Ray task was lost for good (its node lost more often than Ray retries);
                  re-running retries it, from its checkpoint if it has one
    task.json     a run tracked by its own loop (:mod:`emabench.track`): its task, named by its metrics and their
                  directions (:mod:`emabench.tasks.declared`); read instead of config.yaml's ``task``
    DONE          written last (JSON: status, stop reason, epochs, wall time, threads, device, and the sha256 of
                  config.yaml, history.csv, metrics.csv and task.json as written); a folder without it is incomplete
    .lock         held (``flock``) by the process training the run, so two sweeps never train it at once
    tensorboard/  with ``--track tensorboard``: the run's event files, one folder per model (:mod:`emabench.tracking`)

A run folder is ``<runs_dir>/[<sweep folder>/]<run id>``, the run id ``<name>-seed<seed>-<hash of the resolved
config>`` (:func:`run_id`). :class:`~emabench.runs.folder.RunFolder` writes and reads these files;
:mod:`emabench.runs.integrity` checks them against what ``DONE`` recorded.

The runs directory itself holds, with ``--track mlflow`` and no ``MLFLOW_TRACKING_URI``, MLflow's copy of the runs:
``mlflow.db`` (the store) and ``.mlflow-artifacts/`` (a dot folder: the walk for run folders skips it, so an
artifact's ``config.yaml`` is never taken for a run).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from emabench.config.identity import identity
from emabench.errors import InputError

CONFIG = "config.yaml"
HISTORY = "history.csv"
METRICS = "metrics.csv"
LOSS_PLOT = "loss.png"
DONE = "DONE"
INTERRUPTED = "INTERRUPTED"
FAILED = "FAILED"
TASK = "task.json"
CHECKPOINT = "checkpoint.pt"
PREDICTIONS = "predictions.npz"
LOCK = ".lock"
TENSORBOARD = "tensorboard"
MLFLOW_DB = "mlflow.db"  # in the runs directory
MLFLOW_ARTIFACTS = ".mlflow-artifacts"  # in the runs directory
MARKERS = frozenset({CONFIG, HISTORY, METRICS, DONE, INTERRUPTED, FAILED, CHECKPOINT})  # any makes a run folder
RECORDED = (CONFIG, HISTORY, METRICS, TASK)  # what DONE records the sha256 of (task.json where there is one)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def metric_plot(metric: str) -> str:
    """The run folder's figure of a metric over epochs: ``r2.png``, ``accuracy.png`` (the task's ``plot_metric``)."""
    return f"{metric}.png"


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text``: no separators, no leading dots, at most 80 characters."""
    cleaned = _UNSAFE.sub("-", text).strip("-.")[:80]
    return cleaned or "run"


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of a resolved config: the same config always lands in the same folder."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def run_hash(config: dict[str, Any]) -> str:
    """The hash that identifies a run: of its resolved config less what cannot change it
    (:func:`emabench.config.identity.identity`)."""
    return config_hash(identity(config))


def run_id(config: dict[str, Any]) -> str:
    """``<name>-seed<seed>-<hash>``, deterministic from the resolved config (:func:`run_hash`)."""
    return safe_name(f"{config['name']}-seed{config['seed']}-{run_hash(config)}")


def is_run_folder(path: Path) -> bool:
    """A folder holding any of a run's files (:data:`MARKERS`): a run folder, damaged or not."""
    try:
        return path.is_dir() and any((path / name).is_file() for name in MARKERS)
    except OSError:
        return False


def find_run_paths(roots: Iterable[str | Path]) -> list[Path]:
    """Every run folder at or below each root (a run folder, a sweep folder or a runs directory), sorted: every
    folder holding one of a run's files, its config missing or not, so a damaged run is listed, not hidden.
    Symbolic links to folders are not followed (a link loop cannot hang the walk)."""
    found: dict[Path, Path] = {}
    for root in map(Path, roots):
        if not root.exists():
            raise InputError(f"{root}: no such folder")
        if is_run_folder(root):
            found[root.resolve()] = root
            continue
        for here, folders, files in os.walk(root):
            folders[:] = sorted(f for f in folders if not f.startswith("."))
            if MARKERS.intersection(files) and not Path(here).name.startswith("."):
                found[Path(here).resolve()] = Path(here)
    return [found[k] for k in sorted(found)]


def file_sha256(path: Path) -> str | None:
    """The sha256 of a file's bytes, or ``None`` when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
