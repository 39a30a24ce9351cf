"""The run folder: the one module that knows its file names, writes them atomically and reads them back.

A run folder holds::

    config.yaml   the fully resolved config (re-run it with ``emabench run config.yaml``)
    history.csv   one row per epoch, rewritten atomically after every epoch
    metrics.csv   the final comparison, one row per model
    loss.png      train/validation loss curves, raw vs averaged
    r2.png        validation R² curves, raw vs averaged
    DONE          written last (JSON: status, stop reason, epochs, wall time); a folder without it is incomplete

Every file is written to a temporary name in the same folder and renamed into place, so a reader never sees a
half-written file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emabench.errors import RunError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

CONFIG = "config.yaml"
HISTORY = "history.csv"
METRICS = "metrics.csv"
LOSS_PLOT = "loss.png"
R2_PLOT = "r2.png"
DONE = "DONE"
INTERRUPTED = "INTERRUPTED"
SWEEP = "sweep.json"
REPORT_CSV = "report.csv"
REPORT_MD = "report.md"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text``: no separators, no leading dots, at most 80 characters."""
    cleaned = _UNSAFE.sub("-", text).strip("-.")[:80]
    return cleaned or "run"


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of a resolved config: the same config always lands in the same folder."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def run_id(config: dict[str, Any]) -> str:
    """``<name>-seed<seed>-<hash>``, deterministic from the resolved config."""
    return safe_name(f"{config['name']}-seed{config['seed']}-{config_hash(config)}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Write to a temporary file in the same folder, then rename it over ``path``.

    A reader sees the old or the new file, never a part, whatever happens to this process. ``durable`` also
    fsyncs before the rename (survives a power cut); history rewrites every epoch skip that, markers don't.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp creates 0600; run files are ordinary files
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, *, durable: bool = False) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def rows_to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    columns = list(columns or (rows[0].keys() if rows else []))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class RunFolder:
    """One run's folder under a runs directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    # --- writing ------------------------------------------------------------------------------------------------
    def create(self) -> RunFolder:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def clear(self) -> None:
        """Remove everything a previous attempt left (used by ``--force`` and for restarting incomplete runs)."""
        if self.path.exists():
            shutil.rmtree(self.path)

    def write_config(self, config_yaml: str) -> None:
        atomic_write_text(self.path / CONFIG, config_yaml)

    def write_history(self, rows: Sequence[dict[str, Any]]) -> None:
        atomic_write_text(self.path / HISTORY, rows_to_csv(rows))

    def write_metrics(self, table: pd.DataFrame) -> None:
        atomic_write_text(self.path / METRICS, table.to_csv(index=False, lineterminator="\n"))

    def save_figure(self, figure: Figure, name: str) -> None:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        atomic_write_bytes(self.path / name, buffer.getvalue())

    def mark_done(self, info: dict[str, Any]) -> None:
        (self.path / INTERRUPTED).unlink(missing_ok=True)
        atomic_write_text(self.path / DONE, json.dumps(info, indent=2, sort_keys=True) + "\n", durable=True)

    def mark_interrupted(self, info: dict[str, Any]) -> None:
        atomic_write_text(self.path / INTERRUPTED, json.dumps(info, indent=2, sort_keys=True) + "\n")

    # --- reading ------------------------------------------------------------------------------------------------
    @property
    def is_done(self) -> bool:
        return (self.path / DONE).is_file()

    @property
    def status(self) -> str:
        """``completed``/``diverged`` (from DONE), ``interrupted``, or ``incomplete``."""
        if self.is_done:
            return str(self.done_info().get("status", "completed"))
        if (self.path / INTERRUPTED).is_file():
            return "interrupted"
        return "incomplete"

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

    def read_table(self, name: str) -> pd.DataFrame:
        import pandas as pd

        try:
            return pd.read_csv(self.path / name)
        except (OSError, ValueError) as err:
            raise RunError(f"{self.path / name}: unreadable ({err})") from None

    def read_history(self) -> pd.DataFrame:
        return self.read_table(HISTORY)

    def read_metrics(self) -> pd.DataFrame:
        return self.read_table(METRICS)


def is_run_folder(path: Path) -> bool:
    return (path / CONFIG).is_file()


def find_runs(roots: Iterable[str | Path]) -> list[RunFolder]:
    """Every run folder at or below each root (a run folder, a sweep folder or a runs directory), sorted."""
    found: dict[Path, RunFolder] = {}
    for root in map(Path, roots):
        if not root.exists():
            raise RunError(f"{root}: no such folder")
        candidates = [root] if is_run_folder(root) else sorted(p.parent for p in root.rglob(CONFIG))
        for path in candidates:
            if is_run_folder(path) and not path.name.startswith("."):
                found[path.resolve()] = RunFolder(path)
    return [found[k] for k in sorted(found)]


def sweep_dir(runs_dir: Path, name: str, spec: dict[str, Any]) -> Path:
    """``<runs_dir>/sweep-<name>-<hash of the sweep's arguments>``: re-running a sweep reuses its folder."""
    return runs_dir / safe_name(f"sweep-{name}-{config_hash(spec)}")


def write_sweep_spec(folder: Path, spec: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / SWEEP, json.dumps(spec, indent=2, sort_keys=True) + "\n")


def write_report(folder: Path, csv_text: str, markdown: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / REPORT_CSV, csv_text)
    atomic_write_text(folder / REPORT_MD, markdown)
    return folder / REPORT_CSV, folder / REPORT_MD
