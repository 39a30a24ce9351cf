"""``emabench report --track mlflow``: the report beside the runs it compares, in MLflow.

The report's runs are copied first (those whose copy is missing or behind, as ``sweep --track`` does for finished
runs). The report goes to the sweep's parent run when every reported run is in one sweep, else to a run of its own
(``report <folder>``, tag ``emabench.kind=report``) keyed by the report's folder:

- its files (``report.md``, ``report.html``, the CSVs, the figures) as artifacts under ``report/``;
- per comparison (a group of runs that differ only in their seed, an averaged model against raw, a selection and a
  metric): metrics ``<group>/<model>/<selection>/<metric>/diff_mean``, ``.../diff_ci_low``, ``.../diff_ci_high`` and,
  for a primary comparison (the others have no verdict), a tag ``<group>/<model>/<selection>/<metric>/verdict``,
  where ``<group>`` is the group's keys and values (``ema.beta 0.99``);
- on each run of the group: the same numbers and verdict as ``report/<model>/<selection>/<metric>/...``, so runs can
  be filtered by verdict: ``tags.`report/ema/final/mse/verdict` = 'better'``.

What is read from the report (handed over by the CLI, nothing of the report package is imported here): the JSON
document (``to_json``): ``by``, and per ``comparison`` row the ``by`` keys, ``task``, ``model``, ``selection``,
``metric``, ``diff_mean``, ``diff_ci_low``, ``diff_ci_high``, ``verdict``; per reported run its ``run_path``,
``task`` and ``by`` values; the paths of the files written.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emabench.runs.sweep_folder import SWEEP, is_sweep_folder
from emabench.tracking.mlflow_copier import FOLDER, KEY, KIND, MlflowCopier, folder_key, now_ms
from emabench.tracking.mlflow_store import why

NUMBERS = ("diff_mean", "diff_ci_low", "diff_ci_high")
ARTIFACTS = "report"
_NOT_IN_A_NAME = re.compile(r"[^\w\-./: ]+")  # what MLflow refuses in a metric or tag name


def report_to_mlflow(
    runs_dir: Path, document: dict[str, Any], written: Sequence[Path], runs: Sequence[dict[str, Any]]
) -> tuple[str, str | None]:
    """:func:`log_report` into the store of ``runs_dir`` (checked first: an ``InputError`` if it cannot be used);
    the store's URI and the copy's failure, if any."""
    from emabench.tracking.mlflow_store import MlflowStore

    store = MlflowStore(runs_dir)
    store.check()
    store.open()
    copier = MlflowCopier(store)
    log_report(copier, document, written, runs)
    return store.uri, copier.failure


def log_report(
    copier: MlflowCopier, document: dict[str, Any], written: Sequence[Path], runs: Sequence[dict[str, Any]]
) -> str | None:
    """Copy the reported ``runs`` (each ``{"run_path", "task", <by keys>}``), then log the report (``document``, the
    files ``written``) to its MLflow run; returns that run's id, or ``None`` when the copy failed (``copier.failure``
    says why)."""
    try:
        return _log_report(copier, document, written, runs)
    except Exception as err:  # MLflow's failure, whatever raised it: the report files are written
        copier.failure = copier.failure or f"MLflow ({copier.store.uri}): {why(err)}"
        return None


def _log_report(
    copier: MlflowCopier, document: dict[str, Any], written: Sequence[Path], runs: Sequence[dict[str, Any]]
) -> str | None:
    by = list(document.get("by", []))
    children = _copy_runs(copier, [Path(r["run_path"]) for r in runs])
    target = _target(copier, [Path(r["run_path"]) for r in runs], Path(written[0]).parent if written else None)
    if copier.failure is not None or target is None:
        return None
    client = copier.store.client
    for path in written:
        client.log_artifact(target, str(path), ARTIFACTS)
    numbers: dict[str, float] = {}
    labels: dict[str, str] = {}
    per_run: dict[str, tuple[dict[str, float], dict[str, str]]] = {}
    for row in document.get("comparison", []):
        name = _name(row["model"], row["selection"], row["metric"])
        group = _name(*(f"{key} {_value(row.get(key))}" for key in by)) or "all"
        values = {f"/{n}": float(row[n]) for n in NUMBERS if isinstance(row.get(n), (int, float))}
        numbers |= {f"{group}/{name}{k}": v for k, v in values.items() if math.isfinite(v)}
        verdict = row.get("verdict")  # primary comparisons only: an exploratory row has none
        if isinstance(verdict, str) and verdict:
            labels[f"{group}/{name}/verdict"] = verdict
        for run in runs:
            if run.get("task") == row.get("task") and all(_value(run.get(k)) == _value(row.get(k)) for k in by):
                mine = per_run.setdefault(str(run["run_path"]), ({}, {}))
                mine[0].update({f"report/{name}{k}": v for k, v in values.items() if math.isfinite(v)})
                if isinstance(verdict, str) and verdict:
                    mine[1][f"report/{name}/verdict"] = verdict
    copier.log(target, _metrics(numbers), tags=labels)
    for path, (values, tags) in per_run.items():
        run_id = children.get(path)
        if run_id is not None:
            copier.log(run_id, _metrics(values), tags=tags)
    return target


def _copy_runs(copier: MlflowCopier, paths: Sequence[Path]) -> dict[str, str]:
    """Copy every reported run whose copy is missing or behind (as children of their sweep's run); their MLflow
    run ids by path."""
    found: dict[str, str] = {}
    for sweep, members in _by_folder(paths).items():
        if sweep is not None:
            copier.attach_sweep(sweep, _spec(sweep))
        else:
            copier.detach_sweep()
        for path in members:
            copier.existing(path)
            run_id = copier.mlflow_run(path)
            if run_id is not None:
                found[str(path)] = run_id
    return found


def _target(copier: MlflowCopier, paths: Sequence[Path], folder: Path | None) -> str | None:
    """The sweep's parent run when all runs are in one sweep, else the report's own run (found or created)."""
    sweeps = set(_by_folder(paths))
    if len(sweeps) == 1 and None not in sweeps:
        (sweep,) = sweeps
        return copier.attach_sweep(sweep, _spec(sweep))
    if folder is None or copier.failure is not None:
        return None
    key = folder_key(folder)
    found = copier.search(f"tags.`{KEY}` = '{key}'")
    if found:
        return str(found[0].info.run_id)
    tags = {KEY: key, FOLDER: str(folder.absolute()), KIND: "report"}
    run = copier.store.client.create_run(copier.store.experiment_id, run_name=f"report {folder.name}", tags=tags)
    return str(run.info.run_id)


def _by_folder(paths: Sequence[Path]) -> dict[Path | None, list[Path]]:
    """Runs by the sweep folder they are in (``None``: not in a sweep)."""
    out: dict[Path | None, list[Path]] = {}
    for path in paths:
        parent = Path(path).parent
        out.setdefault(parent if is_sweep_folder(parent) else None, []).append(Path(path))
    return out


def _spec(sweep: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((sweep / SWEEP).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def _metrics(values: dict[str, float]) -> list[Any]:
    from mlflow.entities import Metric

    stamp = now_ms()
    return [Metric(key, value, stamp, 0) for key, value in values.items()]


def _name(*parts: str) -> str:
    return "/".join(_NOT_IN_A_NAME.sub("_", str(p)) for p in parts)


def _value(value: Any) -> str:
    """A group key's value as text, alike from JSON and from a data frame (NaN and ``None`` are empty)."""
    if hasattr(value, "item"):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)
