"""``emabench bench tracking``: what copying a sweep to MLflow or TensorBoard costs, as whole processes.

The 40-run sweep of ``bench sweep`` (8 betas × 5 seeds of the seed study, stacked, ``--jobs 2``) with ``--track
mlflow`` (the default SQLite store, created by the sweep) and with ``--track tensorboard``, each against the same
sweep untracked, in rounds that take the three in turn (each starting a different one), each sweep into a fresh runs
folder. A tracker whose extra is not installed is left out.
"""

from __future__ import annotations

import importlib.util
import statistics
import tempfile
from pathlib import Path

from emabench.bench.common import Row, seed_config
from emabench.bench.sweep import _sweep

VARIANTS = {"untracked": [], "mlflow": ["--track", "mlflow"], "tensorboard": ["--track", "tensorboard"]}
EXTRA_MODULES = {"mlflow": "mlflow", "tensorboard": "tensorboard"}


def bench_tracking(repeats: int = 3) -> list[Row]:
    root = Path(tempfile.mkdtemp(prefix="emabench-bench-tracking-"))
    names = ["untracked", *(n for n, m in EXTRA_MODULES.items() if importlib.util.find_spec(m) is not None)]
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            folder = root / f"{name}-{round_}"
            extra = ["--engine", "vectorized", "--jobs", "2", *VARIANTS[name]]
            seconds[name].append(_sweep(folder, str(seed_config()), extra))
    reference = statistics.median(seconds["untracked"])
    note = f"median of {repeats}, each into a fresh runs folder (MLflow: its SQLite store created by the sweep)"
    return [
        Row(
            "tracking",
            f"seed study: 40 runs (vectorized, --jobs 2) --track {name} vs untracked",
            statistics.median(seconds[name]),
            reference,
            "s",
            "<= 1.2",
            note,
        )  # fmt: skip
        for name in names[1:]
    ]
