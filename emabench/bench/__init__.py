"""``emabench bench``: measured speed, always as a ratio against a reference run side by side in the same session.

Three sub-benchmarks, each writing rows of one table (``bench.csv``, ``bench.md``):

- ``run``: the training loop vs the seed script (:mod:`emabench.bench.reference`: DataLoader, per-tensor EMA loop,
  sklearn metrics). Per epoch: both in this process, interleaved A/B repetitions, same seed, fixed epochs, median ratio.
  Whole process: ``python -m emabench.bench.reference`` vs ``emabench run``, both for the same fixed epochs.
- ``ema``: one EMA update of emabench vs torch ``AveragedModel`` (``get_ema_multi_avg_fn``), the seed's per-tensor
  loop and, when installed, ema-pytorch (``use_foreach=True``), from the seed MLP to a 25M-parameter MLP; µs and
  GB/s (3 tensors of the model's size are touched: read average, read weights, write average). Plus the EMA
  update's share of one training step of the seed MLP.
- ``sweep``: 8 betas × 5 seeds of the seed study as one ``emabench sweep`` (vectorized engine), as a process pool
  and one run per process in sequence, against one ``emabench run`` of the same config.

The timings are medians of interleaved repetitions; the machine is noisy, so read the ratios, not the digits.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

SWEEP_BETAS = (0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995)
SWEEP_SEEDS = "0-4"


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


# --- run ----------------------------------------------------------------------------------------------------------


def bench_run(repeats: int = 5, epochs: int = 10, process_epochs: int = 100) -> list[Row]:
    from emabench.bench.reference import SeedStudy
    from emabench.config import load_config, with_overrides
    from emabench.tasks.data import make_dataset
    from emabench.train.loop import Trainer

    config = with_overrides(
        load_config(_seed_config()),
        {"device": "cpu", "train.max_epochs": 10_000, "train.early_stopping.patience": None},
    )
    ours, theirs = Trainer([config], make_dataset(config.data, config.task)), SeedStudy(seed=config.seed)
    ours.run_epoch(), theirs.epoch()  # warm-up: allocations, lazy initialisation

    def timed(step: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            for _ in range(epochs):
                step()
            return (time.perf_counter() - start) / epochs * 1e3

        return run

    a, b = median_interleaved(timed(ours.run_epoch), timed(theirs.epoch), repeats)
    rows = [Row("run", "per epoch, seed study (train + evaluate raw and EMA)", a, b, "ms", "<= 0.25")]
    a, b = median_interleaved(*_whole_process_commands(process_epochs), max(1, repeats // 2) * 2 - 1)
    note = f"{process_epochs} epochs each, no early stopping; start-up, data, training, outputs"
    rows.append(Row("run", "whole process (python -m ... )", a, b, "s", "<= 0.5", note))
    return rows


def _seed_config() -> Path:
    """The seed study shipped inside the package: the same file wherever emabench is installed (not the repo's
    ``configs/``, which a ``pip install`` does not have)."""
    from emabench.config import DEFAULT_CONFIG, shipped_config_path

    return shipped_config_path(DEFAULT_CONFIG)


def _run_command(args: Sequence[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _whole_process_commands(epochs: int) -> tuple[Callable[[], float], Callable[[], float]]:
    runs_dir = tempfile.mkdtemp(prefix="emabench-bench-")
    ours = [
        sys.executable,
        "-m",
        "emabench",
        "run",
        str(_seed_config()),
        "--runs-dir",
        runs_dir,
        "--quiet",
        "--force",
        "--set",
        f"train.max_epochs={epochs}",
        "--set",
        "train.early_stopping.patience=null",
    ]
    reference = [
        sys.executable,
        "-m",
        "emabench.bench.reference",
        "--epochs",
        str(epochs),
        "--no-early-stopping",
        "--figure",
        os.path.join(runs_dir, "seed.png"),
    ]
    return (lambda: _run_command(ours)), (lambda: _run_command(reference))


# --- ema ----------------------------------------------------------------------------------------------------------


def _mlp(widths: Sequence[int]) -> torch.nn.Module:
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


EMA_MODELS = {
    "seed MLP (3.5k params)": (20, 64, 32, 1),
    "MLP 1.1M params": (512, 1024, 512, 1),
    "MLP 25.2M params": (2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048),
}


def _updaters(model: torch.nn.Module) -> dict[str, Callable[[], None]]:
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from emabench.averaging import EMA
    from emabench.bench.reference import SeedEMA

    ours = EMA(model, beta=0.999, update_after_step=0, update_every=1)
    torch_avg = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.999), use_buffers=False)
    seed = SeedEMA(model, beta=0.999, update_after_step=0, update_every=1)
    updaters = {
        "emabench EMA": ours.update,
        "torch AveragedModel": lambda: torch_avg.update_parameters(model),
        "seed EMA loop": seed.update,
    }
    try:
        from ema_pytorch import EMA as LucidEMA

        lucid = LucidEMA(model, beta=0.999, update_after_step=0, update_every=1, use_foreach=True)
        updaters["ema-pytorch (foreach)"] = lucid.update
    except ImportError:
        pass
    return updaters


def bench_ema(repeats: int = 5) -> list[Row]:
    rows = []
    for name, widths in EMA_MODELS.items():
        model = _mlp(widths)
        numel = sum(p.numel() for p in model.parameters())
        updaters = _updaters(model)
        calls = max(3, min(2000, int(2e8 // max(numel, 1) // 40)))
        times = {label: [] for label in updaters}
        for _ in range(repeats):
            for label, update in updaters.items():
                for _ in range(3):
                    update()  # past the copy phase, caches warm
                start = time.perf_counter()
                for _ in range(calls):
                    update()
                times[label].append((time.perf_counter() - start) / calls * 1e6)
        ours = statistics.median(times.pop("emabench EMA"))
        gbps = 3 * 4 * numel / (ours * 1e-6) / 1e9
        for label, values in times.items():
            rows.append(
                Row(
                    "ema",
                    f"{name}: vs {label}",
                    ours,
                    statistics.median(values),
                    "us/update",
                    "<= 1.0" if "25.2M" in name and "seed" not in label else "",
                    f"emabench {gbps:.1f} GB/s",
                )
            )
    rows.append(_ema_share_of_step(repeats))
    rows.append(_many_averagers_vs_one(repeats))
    return rows


def _ema_share_of_step(repeats: int) -> Row:
    """The EMA update's share of the real training loop of the seed study (forward, backward, Adam, EMA, dropout
    masks, batching): the EMA's ``update()`` is timed inside the loop, the epoch around it."""
    from emabench.config import load_config, with_overrides
    from emabench.tasks.data import make_dataset
    from emabench.train.loop import Trainer

    config = with_overrides(load_config(_seed_config()), {"device": "cpu"})
    trainer = Trainer([config], make_dataset(config.data, config.task))
    trainer.run_epoch()
    trainer.run_epoch()  # past update_after_step: every update averages
    ema = trainer.averagers["ema"]
    update, spent = ema.update, [0.0]

    def timed_update() -> None:
        start = time.perf_counter()
        update()
        spent[0] += time.perf_counter() - start

    ema.update = timed_update  # an instance attribute shadows the method for this measurement only
    shares, steps = [], -(-trainer.data.x_train.shape[0] // config.train.batch_size)
    try:
        for _ in range(max(repeats, 5)):
            spent[0] = 0.0
            start = time.perf_counter()
            trainer._train_one_epoch()
            shares.append((spent[0], time.perf_counter() - start))
    finally:
        del ema.update
    ema_s, epoch_s = statistics.median(s[0] for s in shares), statistics.median(s[1] for s in shares)
    return Row(
        "ema",
        "seed MLP: EMA update / whole training step (real loop)",
        ema_s / steps * 1e6,
        epoch_s / steps * 1e6,
        "us",
        "<= 0.02",
        "ratio = the EMA's share of a step; the seed's loop: ~0.12",
    )


def _many_averagers_vs_one(repeats: int) -> Row:
    """Per optimizer step: updating every averager of the shipped averagers.yaml (seed EMA, constant EMA, TF EMA, SWA,
    post-hoc EMA with two power profiles: six averaged copies) vs the seed EMA alone, on the seed MLP."""
    from emabench.config import load_config, shipped_config_path, with_overrides
    from emabench.tasks.data import make_dataset
    from emabench.train.averagers import update_all
    from emabench.train.loop import Trainer

    config = with_overrides(load_config(shipped_config_path("averagers")), {"device": "cpu"})
    trainer = Trainer([config], make_dataset(config.data, config.task))
    for _ in range(3):
        trainer.run_epoch()  # past every warm-up and copy phase
    every, seed_only = list(trainer.averagers.values()), [trainer.averagers["ema"]]
    steps = 2000

    def timed(averagers: list) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            for _ in range(steps):
                update_all(averagers)
            return (time.perf_counter() - start) / steps * 1e6

        return run

    many, one = median_interleaved(timed(every), timed(seed_only), repeats)
    return Row(
        "ema",
        "configs/averagers.yaml: all averagers (6 averaged copies) vs the seed EMA alone",
        many,
        one,
        "us/step",
        "",
        "per optimizer step, seed MLP; post-hoc snapshots every 250 steps included",
    )


# --- sweep --------------------------------------------------------------------------------------------------------


def bench_sweep(quick: bool = False) -> list[Row]:
    """40 runs (8 betas × 5 seeds) as one sweep vs one run of the same config, all whole processes."""
    root = Path(tempfile.mkdtemp(prefix="emabench-bench-sweep-"))
    betas = ",".join(f"{b:g}" for b in SWEEP_BETAS)
    base = [sys.executable, "-m", "emabench"]
    one = _run_command([*base, "run", str(_seed_config()), "--runs-dir", str(root / "one"), "--quiet"])
    variants = {
        "vectorized, --jobs 2": ["--engine", "vectorized", "--jobs", "2"],
        "vectorized, --jobs 1": ["--engine", "vectorized", "--jobs", "1"],
        "process pool, --jobs 2": ["--engine", "process", "--jobs", "2"],
    }
    if not quick:
        variants["sequential, one run at a time in one process"] = ["--engine", "process", "--jobs", "1"]
    rows = []
    for label, extra in variants.items():
        folder = root / label.replace(" ", "_").replace(",", "")
        seconds = _run_command(
            [
                *base,
                "sweep",
                str(_seed_config()),
                "--beta",
                betas,
                "--seeds",
                SWEEP_SEEDS,
                "--runs-dir",
                str(folder),
                "--quiet",
                *extra,
            ]
        )
        target = "<= 3.0" if label.startswith("vectorized, --jobs 2") else ""
        rows.append(Row("sweep", f"40 runs ({label}) vs 1 run", seconds, one, "s", target))
    return rows


# --- output -------------------------------------------------------------------------------------------------------


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
