"""What every benchmark shares: a measured row (ours vs a reference, side by side), interleaved timing, the
machine's description, and the table's CSV/Markdown."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Row:
    """One measured comparison: ``ours`` and ``reference`` in ``unit``; ``ratio = ours / reference``."""

    benchmark: str
    case: str
    ours: float
    reference: float
    unit: str
    target: str = ""
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.reference if self.reference else float("nan")

    def as_dict(self) -> dict[str, object]:
        return {
            "benchmark": self.benchmark,
            "case": self.case,
            "ours": round(self.ours, 6),
            "reference": round(self.reference, 6),
            "unit": self.unit,
            "ratio": round(self.ratio, 4),
            "target": self.target,
            "note": self.note,
        }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def median_interleaved(a: Callable[[], float], b: Callable[[], float], repeats: int) -> tuple[float, float]:
    """Alternate A and B ``repeats`` times (A first, then B first, …) and return both medians."""
    xs, ys = [], []
    for i in range(repeats):
        if i % 2 == 0:
            xs.append(a())
            ys.append(b())
        else:
            ys.append(b())
            xs.append(a())
    return statistics.median(xs), statistics.median(ys)


def seed_config() -> Path:
    """The seed study's config, as shipped inside the package."""
    from emabench.config import shipped_config_path

    return shipped_config_path("regression")


def run_command(args: Sequence[str]) -> float:
    """Wall seconds of one whole process (its output discarded)."""
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def to_markdown(rows: Sequence[Row], header: str) -> str:
    lines = [
        f"# emabench bench\n\n{header}\n",
        "| benchmark | case | ours | reference | unit | ratio | target | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.benchmark} | {r.case} | {r.ours:.4g} | {r.reference:.4g} | {r.unit} | {r.ratio:.3f} | "
            f"{r.target} | {r.note} |"
        )
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[Row]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0].as_dict()), lineterminator="\n")
    writer.writeheader()
    writer.writerows(r.as_dict() for r in rows)
    return buffer.getvalue()
