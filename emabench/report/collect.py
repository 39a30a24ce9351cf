"""Reading run folders into tidy frames (the only part of the report that touches the disk, and only to read):
:func:`collect` for the report, :func:`inventory` for ``emabench ls``, :func:`find_run` and :func:`epochs_so_far` for
``emabench show``. Folders without ``DONE`` are skipped by :func:`collect` and returned with their status.

Each run's metrics are its task's (``config.task``, regression when a config predates it): a regression run
brings mse, mae and r2, a classification run accuracy, f1_macro and ece. A run with a held-out test set also brings
each model's metrics on it (``test_<metric>``, and ``test_loss`` for classification: the NLL) and, from its
``<model>@best`` rows, each model's at its best validation epoch (``best_test_<metric>``): :func:`model_rows`; and a
classification run its models' test-set predictions (``predictions.npz``, kept as each sample's predicted class).
A run tracked by its own loop (:mod:`emabench.track`) names its task in ``task.json``, by the metrics it logged and
their directions (``classification(accuracy)``, ``custom(bleu:higher)``: :mod:`emabench.tasks.declared`); that name
is its ``task``. The same config found in two folders (``emabench run`` once, then a sweep that trains the same
setting again) is one run: :func:`collect` keeps the first folder and says which it dropped.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emabench.config import parse_yaml
from emabench.config.identity import identity
from emabench.errors import ConfigError, InputError, RunError
from emabench.report.specs import HAS_TEST, TEST_PREFIX, tested_metrics
from emabench.results.tables import BEST_ROW
from emabench.runs.folder import RunFolder, find_runs
from emabench.runs.layout import is_run_folder
from emabench.runs.sweep_folder import is_sweep_folder, sweep_mode
from emabench.tasks.base import Task
from emabench.tasks.declared import config_task_name
from emabench.tasks.registry import get_task

SHORT_NAMES = {"ema.beta": "beta"}  # how a config key is shown (and may be typed in --by/--where)
ALIASES = {short: key for key, short in SHORT_NAMES.items()}
CURVE_COLUMNS = ["run_id", "model", "epoch", "val_loss", "decay"]  # plus each task's metrics
DEFAULT_TASK = "regression"  # every config written before ``task`` existed is a regression config


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"ema": {"beta": 0.9}}`` → ``{"ema.beta": 0.9}``; lists become strings so they can be grouped."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = str(value) if isinstance(value, list) else value
    return flat


@dataclass
class Collection:
    """The finished runs found (tidy frames) and the folders skipped with the reason."""

    runs: pd.DataFrame  # one row per (run, model): flattened config, task, run_id, status, epochs, model, metrics
    curves: pd.DataFrame  # one row per (run, model, epoch): run_id, model, epoch, val_loss, metrics, decay
    skipped: list[tuple[RunFolder, str]] = field(default_factory=list)
    duplicates: list[tuple[RunFolder, RunFolder]] = field(default_factory=list)  # (kept, dropped): same config
    predictions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # run → model → test-set classes


def collect(roots: Iterable[str | Path], where: Sequence[str] = ()) -> Collection:
    """Read every run folder under ``roots`` whose config matches all ``where`` filters (``KEY=VALUE``).

    Folders without ``DONE`` (incomplete, interrupted) are skipped and returned with their status, damaged ones
    (:func:`emabench.runs.integrity.problems`) with what is wrong. Folders of one config are one run: the first is
    read and the others returned in ``duplicates`` when their history and metrics are the same bytes; when they are
    not (trained with another thread count, device or version), none of them is read and each is skipped as a
    conflict naming the others.
    """
    folders, skipped = [], []
    for folder in find_runs(roots):
        damage = folder.problems()
        if damage:
            skipped.append((folder, f"damaged: {'; '.join(damage)}"))
        else:
            folders.append(folder)
    documents = {f.path: parse_yaml(f.read_config_text(), str(f.path)) for f in folders}
    tasks = {f.path: f.recorded_task() or task_name(documents[f.path]) for f in folders}  # task.json: a tracked run
    configs = {
        path: flatten(document) | named(document) | {"task": tasks[path]} for path, document in documents.items()
    }
    filters = parse_where(where, set().union(*configs.values()) if configs else set())
    rows, curves, duplicates, predictions = [], [], [], {}
    same_config: dict[str, list[RunFolder]] = {}
    for folder in folders:
        if not all(matches(configs[folder.path].get(key), value) for key, value in filters):
            continue
        if not folder.is_done:
            skipped.append((folder, folder.status))
            continue
        same_config.setdefault(canonical(documents[folder.path]), []).append(folder)
    for group in same_config.values():
        kept, *others = group
        if not all(kept.same_results(other) for other in others):
            names = ", ".join(str(f.path) for f in group)
            skipped += [(f, f"conflict: one config, different histories in {names}") for f in group]
            continue
        duplicates += [(kept, other) for other in others]
        config = configs[kept.path]
        task = run_task(kept, config)
        info, history = kept.done_info(), kept.read_history()
        base = config | {
            "run_id": kept.name,
            "run_path": str(kept.path),
            "status": info.get("status", "completed"),
            "stop_reason": info.get("stop_reason", ""),
            "epochs": int(info.get("epochs", len(history))),
            "sweep_mode": sweep_mode(kept.path),
        }
        rows += [base | row for row in model_rows(kept.read_metrics().to_dict("records"), task)]
        curves.append(history_curves(history, kept.name, task))
        if task.name == "classification":
            predictions[kept.name] = {m: np.argmax(p, axis=-1) for m, p in kept.read_predictions().items()}
    curve_frame = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=CURVE_COLUMNS)
    return Collection(pd.DataFrame(rows), curve_frame, skipped, duplicates, predictions)


def model_rows(records: Sequence[dict[str, Any]], task: Task) -> list[dict[str, Any]]:
    """One row per model of a run's ``metrics.csv`` records: ``model``, its final metrics on the validation set,
    :data:`~emabench.report.specs.HAS_TEST`, and with a test set its final metrics on it (``test_<metric>``) and
    those of its ``<model>@best`` row (``best_test_<metric>``: its weights at its best validation epoch; NaN for a
    model without one, as a post-hoc synthesis). The ``@best`` rows are not models of their own."""
    tested = [f"{TEST_PREFIX}{m}" for m in tested_metrics(task)]
    has_test = any(column in record for record in records for column in tested)
    rows: dict[str, dict[str, Any]] = {}
    best: dict[str, dict[str, float]] = {}
    for record in records:
        model = str(record["model"])
        on_test = {c: float(record.get(c, np.nan)) for c in tested} if has_test else {}
        if model.endswith(BEST_ROW):
            best[model.removesuffix(BEST_ROW)] = on_test
            continue
        rows[model] = {"model": model} | {m: float(record.get(m, np.nan)) for m in task.final_metrics} | on_test
    for model, row in rows.items():
        row |= {f"best_{c}": best.get(model, {}).get(c, np.nan) for c in tested} if has_test else {}
        row[HAS_TEST] = has_test
    return list(rows.values())


def named(document: Any) -> dict[str, str]:
    """The undotted keys a run is also known by: its ``task`` and ``averagers`` (the names of its extra averagers,
    ``"none"`` without), so that ``--where averagers=none`` and ``--by averagers`` work as on any key."""
    averagers = document.get("averagers") if isinstance(document, dict) else None
    names = ", ".join(sorted(averagers)) if isinstance(averagers, dict) and averagers else "none"
    return {"task": task_name(document), "averagers": names}


def task_name(document: Any) -> str:
    """The task a parsed config names (``regression`` when it names none; with metrics of its own, declared with
    them: :func:`~emabench.tasks.declared.config_task_name`)."""
    return config_task_name(document) if isinstance(document, dict) else DEFAULT_TASK


def run_task(folder: RunFolder, config: dict[str, Any]) -> Task:
    """The :class:`Task` of a run (from its flattened config), or a :class:`RunError` naming the folder."""
    try:
        return get_task(str(config.get("task", DEFAULT_TASK)))
    except ValueError as err:
        raise RunError(f"{folder.path / 'config.yaml'}: {err}") from None


def canonical(document: Any) -> str:
    """A config as canonical JSON of what identifies its run (:func:`emabench.config.identity.identity`): two
    folders with equal text here hold the same experiment."""
    document = identity(document) if isinstance(document, dict) else document
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)


def history_curves(history: pd.DataFrame, run_id: str, task: Task) -> pd.DataFrame:
    """One run's history in long form: one row per (model, epoch) for every ``<model>_val_loss`` column, with the
    task's metrics (``val_loss`` first) and the decay."""
    models = [c.removesuffix("_val_loss") for c in history.columns if c.endswith("_val_loss")]
    parts = []
    for model in models:
        part = pd.DataFrame({"run_id": run_id, "model": model, "epoch": history["epoch"].astype(int)})
        for metric in (*(m.name for m in task.metrics), "decay"):
            column = f"{model}_{metric}"
            part[metric] = history[column].astype(float) if column in history else np.nan
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CURVE_COLUMNS)


def parse_where(items: Sequence[str], known: set[str]) -> list[tuple[str, Any]]:
    """``["data.noise=0.1"]`` → ``[("data.noise", 0.1)]`` (value parsed as a YAML scalar); unknown keys refused."""
    filters = []
    for text in items:
        key, sep, raw = text.partition("=")
        key = ALIASES.get(key.strip(), key.strip())
        if not sep or not key:
            raise ConfigError(f"--where {text!r}: expected KEY=VALUE with a dotted config key, e.g. data.noise=0.1")
        if known and key not in known:
            raise ConfigError(f"--where: unknown key {key!r}{did_you_mean(key, known)}")
        filters.append((key, parse_yaml(raw, f"--where {key}") if raw.strip() else None))
    return filters


def did_you_mean(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else " (keys are dotted config keys, e.g. ema.beta)"


def matches(value: Any, wanted: Any) -> bool:
    """A config value equals a value typed on the command line (parsed as YAML): numbers within rounding, lists by
    their str (as :func:`flatten` keeps them), anything else by value or str."""
    if isinstance(wanted, list):
        wanted = str(wanted)  # flatten() stores lists as their str()
    numbers = (int, float)
    if isinstance(value, numbers) and isinstance(wanted, numbers) and not isinstance(value, bool):
        return math.isclose(float(value), float(wanted), rel_tol=1e-9, abs_tol=1e-12)
    return value == wanted or (value is not None and wanted is not None and str(value) == str(wanted))


def inventory(roots: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run folder under ``roots``: ``folder`` (its parent), ``is_sweep`` (the parent holds a sweep
    spec), ``run_id``, ``path``, ``status`` (completed, diverged, failed, interrupted, incomplete, or damaged),
    ``epochs`` (from DONE, else the epochs in history.csv so far), ``stop_reason``, ``wall_time_s``, ``problems``
    (what is wrong with a damaged folder, :func:`emabench.runs.integrity.problems`)."""
    rows = []
    for folder in find_runs(roots):
        damage = folder.problems()
        info = folder.done_record() or {}
        rows.append(
            {
                "folder": str(folder.path.parent),
                "is_sweep": is_sweep_folder(folder.path.parent),
                "run_id": folder.name,
                "path": str(folder.path),
                "status": "damaged" if damage else folder.status,
                "epochs": _int(info.get("epochs"), epochs_so_far(folder)),
                "stop_reason": str(info.get("stop_reason", "")),
                "wall_time_s": _float(info.get("wall_time_s")),
                "problems": "; ".join(damage),
            }
        )
    columns = ["folder", "is_sweep", "run_id", "path", "status", "epochs", "stop_reason", "wall_time_s", "problems"]
    return pd.DataFrame(rows, columns=columns)


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def epochs_so_far(folder: RunFolder) -> int:
    """Epochs recorded in a run's history.csv (0 without one); for runs that have no DONE yet."""
    try:
        return len(folder.read_history())
    except RunError:
        return 0


def find_run(spec: str | Path, runs_dir: Path) -> tuple[RunFolder, list[RunFolder]]:
    """A run folder given as a path, or as a run id (or a unique prefix of one) under ``runs_dir``; with the other
    folders that hold the very same run (the same id and config: ``emabench run`` once, then a sweep that trained
    that setting again), which are equivalent to it.

    Several different runs matching is an :class:`InputError` that lists their paths.
    """
    path = Path(spec)
    if is_run_folder(path):
        return RunFolder(path), []
    if not runs_dir.is_dir():
        raise InputError(f"{spec}: not a run folder (no config.yaml), and --runs-dir {runs_dir} does not exist")
    runs = find_runs([runs_dir])
    matches = [f for f in runs if f.name == str(spec)] or [f for f in runs if f.name.startswith(str(spec))]
    if not matches:
        raise InputError(
            f"{spec}: no such run (neither a folder with config.yaml nor a run id under {runs_dir}; "
            "`emabench ls` lists the run ids)"
        )
    if len(matches) > 1 and not _same_run(matches):
        shown = ", ".join(str(f.path) for f in matches[:SHOWN_MATCHES])
        more = f" and {len(matches) - SHOWN_MATCHES} more" if len(matches) > SHOWN_MATCHES else ""
        raise InputError(
            f"{spec}: ambiguous, matches {len(matches)} runs under {runs_dir}: {shown}{more}; "
            "give a longer run id or one of these paths"
        )
    return matches[0], matches[1:]


SHOWN_MATCHES = 8  # an ambiguous `show` lists this many paths, then a count


def _same_run(folders: Sequence[RunFolder]) -> bool:
    """Every folder has one run id and an equal config (one experiment found in several places)."""
    if len({f.name for f in folders}) != 1:
        return False
    texts = {canonical(parse_yaml(f.read_config_text(), str(f.path))) for f in folders}
    return len(texts) == 1
