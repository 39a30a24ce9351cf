"""``emabench bench sweep``: 40 runs (8 betas × 5 seeds) as one ``emabench sweep`` against one ``emabench run`` of the
same config, all whole processes: the seed study (vectorized with 2 and 1 jobs, a process pool, one run per process
in sequence) and seed 003's digits classifier (LeNet, 8 betas × 5 seeds vectorized with 2 jobs).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from emabench.bench.common import Row, run_command, seed_config

SWEEP_BETAS = (0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995)
SWEEP_SEEDS = "0-4"
DIGITS_EPOCHS = 20  # fixed (no early stopping), so both sides train the same number of epochs


def bench_sweep(quick: bool = False) -> list[Row]:
    root = Path(tempfile.mkdtemp(prefix="emabench-bench-sweep-"))
    variants = {
        "vectorized, --jobs 2": ["--engine", "vectorized", "--jobs", "2"],
        "vectorized, --jobs 1": ["--engine", "vectorized", "--jobs", "1"],
        "process pool, --jobs 2": ["--engine", "process", "--jobs", "2"],
    }
    if not quick:
        variants["sequential, one run at a time in one process"] = ["--engine", "process", "--jobs", "1"]
    one = _seconds(root / "one", "run", str(seed_config()))
    rows = []
    for label, extra in variants.items():
        seconds = _sweep(root / label.replace(" ", "_").replace(",", ""), str(seed_config()), extra)
        target = "<= 3.0" if label.startswith("vectorized, --jobs 2") else ""
        rows.append(Row("sweep", f"seed study: 40 runs ({label}) vs 1 run", seconds, one, "s", target))
    digits = _digits_config()
    fixed = ["--set", f"train.max_epochs={DIGITS_EPOCHS}", "--set", "train.early_stopping.patience=null"]
    one = _seconds(root / "digits-one", "run", digits, *fixed)
    seconds = _sweep(root / "digits", digits, ["--engine", "vectorized", "--jobs", "2", *fixed])
    note = f"LeNet on 8x8 digits, {DIGITS_EPOCHS} epochs each"
    rows.append(Row("sweep", "digits: 40 runs (vectorized, --jobs 2) vs 1 run", seconds, one, "s", "<= 3.0", note))
    return rows


def _digits_config() -> str:
    from emabench.config import shipped_config_path

    return str(shipped_config_path("digits"))


def _sweep(folder: Path, config: str, extra: list[str]) -> float:
    betas = ",".join(f"{b:g}" for b in SWEEP_BETAS)
    return _seconds(folder, "sweep", config, "--beta", betas, "--seeds", SWEEP_SEEDS, *extra)


def _seconds(folder: Path, *args: str) -> float:
    return run_command([sys.executable, "-m", "emabench", *args, "--runs-dir", str(folder), "--quiet"])
