"""The batch-size scaling rule for an EMA (Busbridge et al., "How to Scale Your EMA", NeurIPS 2023): batch × κ with
SGD's learning rate × κ keeps the training dynamics, and an EMA keeps its course if its decay becomes β^κ. A
half-life counted in samples is that rule (the decay per step ``0.5^(batch / half-life)`` is β^κ when the batch
grows κ-fold); a fixed β is not.

Trains ``configs/batch-scaling.yaml`` (batch 8, lr 0.01, test loss every epoch) at κ = 1, 2, 4, 8, 16 (batch 8κ, lr
0.01κ) with ``emabench sweep``, one sweep folder per κ under ``--runs-dir``, then reads every run's history and
prints, per model, how far its test-loss curve (mean over seeds, epoch by epoch; an epoch is the same number of
samples at every batch size) lies from the κ = 1 curve: the mean over epochs of the absolute difference, and the
largest. ``--figure`` saves the curves. Runs already finished are skipped (``emabench sweep`` is idempotent);
``--no-train`` only reads.

Run: ``.venv/bin/python benchmarks/batch_scaling.py [--seeds 0-9] [--jobs 2] [--runs-dir runs] [--figure PATH]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from emabench.config import parse_yaml
from emabench.runs.folder import find_runs

CONFIG = Path(__file__).resolve().parent.parent / "emabench" / "configs" / "batch-scaling.yaml"
KAPPAS = (1, 2, 4, 8, 16)
BASE_BATCH, BASE_LR = 8, 0.01


def train(seeds: str, jobs: int, runs_dir: Path) -> float:
    """One ``emabench sweep`` per κ; returns the wall time in seconds."""
    start = time.perf_counter()
    for kappa in KAPPAS:
        command = [sys.executable, "-m", "emabench", "sweep", str(CONFIG), "--seeds", seeds, "--jobs", str(jobs)]
        command += ["--set", f"train.batch_size={BASE_BATCH * kappa}", "--set", f"train.optimizer.lr={BASE_LR * kappa}"]
        command += ["--runs-dir", str(runs_dir)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def test_curves(runs_dir: Path) -> pd.DataFrame:
    """Per batch size, model and epoch: the mean test loss over the seeds (columns ``batch``, ``model``, ``epoch``,
    ``test_loss``, ``seeds``), from every finished batch-scaling run under ``runs_dir``."""
    rows = []
    for folder in find_runs([runs_dir]):
        config = parse_yaml(folder.read_config_text(), str(folder.path))
        if config.get("name") != "batch-scaling" or not folder.is_done:
            continue
        history = folder.read_history()
        for column in (c for c in history.columns if c.endswith("_test_loss")):
            rows.append(
                pd.DataFrame(
                    {
                        "batch": config["train"]["batch_size"],
                        "model": column.removesuffix("_test_loss"),
                        "epoch": history["epoch"],
                        "test_loss": history[column],
                        "seed": config["seed"],
                    }
                )
            )
    if not rows:
        raise SystemExit(f"no finished batch-scaling runs under {runs_dir}")
    long = pd.concat(rows, ignore_index=True).dropna(subset=["test_loss"])
    curves = long.groupby(["batch", "model", "epoch"]).agg(test_loss=("test_loss", "mean"), seeds=("seed", "nunique"))
    return curves.reset_index()


def distances(curves: pd.DataFrame) -> pd.DataFrame:
    """Per batch size and model: ``mean_abs`` and ``max_abs``, the mean and largest over epochs of
    ``|L_B(e) − L_8(e)|`` with ``L_B`` the model's mean test loss at batch ``B``."""
    smallest = curves["batch"].min()
    reference = curves[curves["batch"] == smallest].set_index(["model", "epoch"])["test_loss"]
    rows = []
    for (batch, model), part in curves.groupby(["batch", "model"]):
        gap = (part.set_index(["model", "epoch"])["test_loss"] - reference).dropna().abs()
        rows.append({"batch": batch, "model": model, "mean_abs": gap.mean(), "max_abs": gap.max()})
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, column: str) -> str:
    wide = table.pivot(index="batch", columns="model", values=column)
    models = [m for m in ("raw", "ema_samples", "ema_fixed", "ema") if m in wide.columns]
    lines = ["| batch (κ) | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    smallest = int(wide.index.min())
    for batch, row in wide.iterrows():
        cells = " | ".join(f"{row[m]:.4f}" for m in models)
        lines.append(f"| {int(batch)} ({int(batch) // smallest}) | {cells} |")
    return "\n".join(lines)


def figure(curves: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    models = [m for m in ("raw", "ema_samples", "ema_fixed") if m in set(curves["model"])]
    fig = Figure(figsize=(4.2 * len(models), 3.6), layout="constrained")
    axes = fig.subplots(1, len(models), sharey=True, squeeze=False)[0]
    for ax, model in zip(axes, models):
        for batch, part in curves[curves["model"] == model].groupby("batch"):
            ax.plot(part["epoch"], part["test_loss"], label=f"batch {batch}")
        ax.set(title=model, xlabel="epoch (the same samples at every batch size)", yscale="log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("test loss (NLL), mean over seeds")
    axes[0].legend(fontsize=8)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--no-train", action="store_true", help="only read the runs already under --runs-dir")
    args = parser.parse_args()
    if not args.no_train:
        wall = train(args.seeds, args.jobs, args.runs_dir)
        print(f"trained {len(KAPPAS)} sweeps (seeds {args.seeds}) in {wall:.0f} s\n")
    curves = test_curves(args.runs_dir)
    table = distances(curves)
    print(f"Mean over epochs of |test loss(batch) - test loss(batch {curves['batch'].min()})|, means over seeds "
          f"({int(curves['seeds'].min())} seeds):\n")  # fmt: skip
    print(markdown(table, "mean_abs"))
    print("\nThe largest over epochs:\n")
    print(markdown(table, "max_abs"))
    final = curves[curves["epoch"] == curves["epoch"].max()].pivot(index="batch", columns="model", values="test_loss")
    print("\nFinal test loss, mean over seeds:\n")
    print(final.to_string(float_format=lambda v: f"{v:.4f}"))
    if args.figure is not None:
        figure(curves, args.figure)
        print(f"\nwrote {args.figure}")


if __name__ == "__main__":
    main()
