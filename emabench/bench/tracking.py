"""``emabench bench tracking``: what copying a sweep to MLflow or TensorBoard costs, as whole processes.

The 40-run sweep of ``bench sweep`` (8 betas × 5 seeds of the seed study, stacked, ``--jobs 2``) with ``--track
mlflow`` (the default SQLite store, created by the sweep) and with ``--track tensorboard``, each against the same
sweep untracked, in rounds that take the three in turn (each starting a different one), each sweep into a fresh runs
folder. Two rows per tracker: the wall time, and the CPU time of the sweep's processes (the command, its workers and
MLflow's sender: user + system), which other work on a shared machine disturbs far less. A tracker whose extra is
not installed is left out.
"""

from __future__ import annotations

import importlib.util
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emabench.bench.common import Row, seed_config
from emabench.bench.sweep import SWEEP_BETAS, SWEEP_SEEDS

VARIANTS = {"untracked": [], "mlflow": ["--track", "mlflow"], "tensorboard": ["--track", "tensorboard"]}
EXTRA_MODULES = {"mlflow": "mlflow", "tensorboard": "tensorboard"}


def bench_tracking(repeats: int = 3) -> list[Row]:
    root = Path(tempfile.mkdtemp(prefix="emabench-bench-tracking-"))
    names = ["untracked", *(n for n, m in EXTRA_MODULES.items() if importlib.util.find_spec(m) is not None)]
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            seconds, used = _sweep(root / f"{name}-{round_}", VARIANTS[name])
            wall[name].append(seconds)
            cpu[name].append(used)
    note = f"median of {repeats}, each into a fresh runs folder (MLflow: its SQLite store created by the sweep)"
    case = "seed study: 40 runs (vectorized, --jobs 2) --track {} vs untracked{}"
    rows = []
    for name in names[1:]:
        rows.append(Row("tracking", case.format(name, ""), _median(wall[name]), _median(wall["untracked"]), "s",
                        "<= 1.2", note))  # fmt: skip
        rows.append(Row("tracking", case.format(name, ", CPU time"), _median(cpu[name]), _median(cpu["untracked"]),
                        "cpu s", "", "user + system of all its processes"))  # fmt: skip
    return rows


def _sweep(folder: Path, extra: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (the process and every child it waited for) of one sweep."""
    betas = ",".join(f"{b:g}" for b in SWEEP_BETAS)
    args = [sys.executable, "-m", "emabench", "sweep", str(seed_config()), "--beta", betas, "--seeds", SWEEP_SEEDS]
    args += ["--engine", "vectorized", "--jobs", "2", *extra, "--runs-dir", str(folder), "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _median(values: list[float]) -> float:
    return statistics.median(values)
