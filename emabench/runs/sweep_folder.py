"""The sweep folder and the report folder: the one module that names their files.

A sweep folder ``<runs_dir>/sweep-<name>-<hash>/`` holds one run folder per setting (:mod:`emabench.runs.folder`) and
``sweep.json``: the sweep's arguments (base config, grid, ``mode``: ``runs`` or ``shadows``, engine, jobs; and for
``sweep --until-decided`` ``sequential``: ``max_seeds``, ``alpha`` and the ``looks`` taken, seeds at each). The
report (``emabench report``) writes, into a folder of the caller's choice: ``report.csv``, ``report.md``,
``report.html``, ``comparison.csv``, ``per_run.csv``, ``versus.csv`` (with ``--versus``) and the figures
``fig_*.png``. Every file is written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emabench.config.identity import identity
from emabench.runs.atomic import atomic_write_bytes, atomic_write_text, make_folder
from emabench.runs.layout import config_hash, safe_name

SWEEP = "sweep.json"

REPORT_CSV, REPORT_MD, REPORT_HTML = "report.csv", "report.md", "report.html"
COMPARISON_CSV, PER_RUN_CSV = "comparison.csv", "per_run.csv"
VERSUS_CSV = "versus.csv"  # report --versus KEY=VALUE only
FIG_PAIRED_STABILITY = "fig_paired_stability.png"
FIG_VAL_LOSS = "fig_val_loss.png"


def fig_vs_beta(metric: str) -> str:
    """The report's figure of ``metric`` (a task's headline: mse, accuracy) against the swept betas."""
    return f"fig_{metric}_vs_beta.png"


def fig_paired(metric: str) -> str:
    """The report's per-seed figure of ``metric``, raw vs each averaged model."""
    return f"fig_paired_{metric}.png"


def fig_curves(metric: str) -> str:
    """The report's figure of ``metric`` over epochs (a task's plot metric: r2, accuracy), mean ± std over seeds."""
    return f"fig_{metric}.png"


def sweep_dir(runs_dir: Path, name: str, spec: dict[str, Any], sequential: dict[str, Any] | None = None) -> Path:
    """``<runs_dir>/sweep-<name>-<hash of the sweep's arguments>``: re-running a sweep reuses its folder (the base
    config hashed as a run's id is, :func:`emabench.config.identity.identity`: its ``report:`` section and neutral
    keys are not). A ``sequential`` sweep (``--until-decided``) is named by its grid but its seeds, and its cap:
    every look trains into the same folder."""
    if sequential is not None:
        seedless = {k: v for k, v in spec["grid"].items() if k != "seed"}
        spec = spec | {"grid": seedless, "sequential": {"max_seeds": sequential["max_seeds"]}}
    base = spec.get("base")
    hashed = spec | {"base": identity(base)} if isinstance(base, dict) else spec
    return runs_dir / safe_name(f"sweep-{name}-{config_hash(hashed)}")


def write_sweep_spec(folder: Path, spec: dict[str, Any]) -> None:
    make_folder(folder)
    atomic_write_text(folder / SWEEP, json.dumps(spec, indent=2, sort_keys=True) + "\n")


def is_sweep_folder(path: Path) -> bool:
    return (path / SWEEP).is_file()


def discard_if_unused(path: Path) -> None:
    """Remove a sweep folder that holds nothing but its ``sweep.json`` (no run was started in it); leave anything
    else as it is."""
    if is_sweep_folder(path) and [entry.name for entry in path.iterdir()] == [SWEEP]:
        (path / SWEEP).unlink()
        path.rmdir()


def swept_keys(folder: Path) -> list[str]:
    """The dotted keys a sweep folder's ``sweep.json`` sweeps (its grid's keys; empty for any other folder)."""
    try:
        spec = json.loads((Path(folder) / SWEEP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    grid = spec.get("grid") if isinstance(spec, dict) else None
    return [str(key) for key in grid] if isinstance(grid, dict) else []


def read_sweep_spec(folder: Path) -> dict[str, Any]:
    """A sweep folder's ``sweep.json`` (empty when it has none or cannot be read)."""
    try:
        spec = json.loads((Path(folder) / SWEEP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return spec if isinstance(spec, dict) else {}


def sweep_mode(run_path: Path) -> str:
    """How the run at ``run_path`` was made: ``runs`` or ``shadows`` (from its sweep's ``sweep.json``), or
    ``single`` (``emabench run``)."""
    try:
        spec = json.loads((Path(run_path).parent / SWEEP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "single"
    return str(spec.get("mode", "runs"))


def write_report_files(folder: Path, files: Mapping[str, str | bytes]) -> list[Path]:
    """Write the report's files (by name) into ``folder``, each atomically: ``report.csv`` and ``report.md`` first,
    then the rest in order. Returns the paths written."""
    make_folder(folder)
    first = [name for name in (REPORT_CSV, REPORT_MD) if name in files]
    written = []
    for name in [*first, *(n for n in files if n not in first)]:
        content = files[name]
        if isinstance(content, bytes):
            atomic_write_bytes(folder / name, content)
        else:
            atomic_write_text(folder / name, content)
        written.append(folder / name)
    return written
