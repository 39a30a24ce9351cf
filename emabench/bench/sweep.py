"""``emabench bench sweep``: 40 runs (8 betas × 5 seeds) as one ``emabench sweep`` against one ``emabench run`` of the
same config, all whole processes: the seed study (vectorized with 2 and 1 jobs, a process pool, one run per process
in sequence), seed 003's digits classifier (LeNet, 8 betas × 5 seeds vectorized with 2 jobs), and a user's own
``nn.Module`` (20 seeds stacked with ``torch.func``, and one run per process): a residual MLP, and the CNN of
``examples/own_loop.py`` read from its own Dataset (``examples/own_loop_runner.yaml``, in a source checkout).
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
    return rows + _custom_rows(root, quick)


CUSTOM_MODEL = """from torch import nn


class ResidualMLP(nn.Module):
    def __init__(self, in_features, width):
        super().__init__()
        self.inp = nn.Linear(in_features, width)
        self.block = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU())
        self.out = nn.Linear(width, 1)

    def forward(self, x):
        h = self.inp(x)
        return self.out(h + self.block(h))


def build_model(in_features, width=64):
    return ResidualMLP(in_features, width)
"""
CUSTOM_EPOCHS = 30


def _custom_rows(root: Path, quick: bool) -> list[Row]:
    """A user's own module (a residual MLP with LayerNorm, written to a file as a user would) on the seed study's data:
    20 seeds as one ``torch.func`` stack (``model.stack=vmap``) and, unless ``quick``, one run per process (two jobs),
    each against one run of the same config."""
    from emabench.config import load_config, with_overrides
    from emabench.config.yaml_io import dump_yaml
    from emabench.tasks.data import make_dataset

    root.mkdir(parents=True, exist_ok=True)
    (root / "user_model.py").write_text(CUSTOM_MODEL)
    seed_study = load_config(seed_config())
    (features,) = make_dataset(seed_study.data, seed_study.task).sample_shape
    model = {"name": "custom", "factory": f"{root / 'user_model.py'}:build_model"}
    config = with_overrides(
        seed_study,
        {
            "model": {**model, "kwargs": {"in_features": features, "width": 64}},
            "train.max_epochs": CUSTOM_EPOCHS,
            "train.early_stopping.patience": None,
        },
    )
    path = root / "custom.yaml"
    path.write_text(dump_yaml(config.to_dict()))
    one = _seconds(root / "custom-one", "run", str(path))
    seeds = ["--seeds", "0-19"]
    note = f"a residual MLP of the user's on the seed study's data, {CUSTOM_EPOCHS} epochs each"
    vmapped = _seconds(root / "custom-vmap", "sweep", str(path), *seeds, "--set", "model.stack=vmap")
    rows = [Row("sweep", "own nn.Module: 20 runs (model.stack=vmap) vs 1 run", vmapped, one, "s", "<= 4.0", note)]
    if not quick:
        alone = _seconds(root / "custom-none", "sweep", str(path), *seeds, "--jobs", "2")
        case = "own nn.Module: 20 runs (one per process, --jobs 2) vs 1 run"
        rows.append(Row("sweep", case, alone, one, "s", "", note))
    return rows + _own_loop_rows(root, quick)


OWN_LOOP = Path(__file__).resolve().parents[2] / "examples" / "own_loop_runner.yaml"


def _own_loop_rows(root: Path, quick: bool) -> list[Row]:
    """``examples/own_loop.py`` 's CNN (two convolutions, dropout) on its own digits Dataset, read by a DataLoader
    every epoch, Adadelta and StepLR (``examples/own_loop_runner.yaml``): 20 seeds as ``torch.func`` stacks (two
    jobs; unless ``quick`` also one) against one run. Only in a source checkout, where the example is."""
    from emabench.config import load_config, with_overrides
    from emabench.config.yaml_io import dump_yaml

    if not OWN_LOOP.is_file():
        return []
    example = load_config(OWN_LOOP)
    here = OWN_LOOP.parent
    config = with_overrides(
        example,
        {  # the example's paths are relative to the repository root: made absolute for a run from anywhere
            "data.factory": f"{here / 'own_loop_runner.py'}:{example.data.factory.rpartition(':')[2]}",
            "model.factory": f"{here / 'own_loop_runner.py'}:{example.model.factory.rpartition(':')[2]}",
        },
    )
    path = root / "own_loop.yaml"
    path.write_text(dump_yaml(config.to_dict()))
    one = _seconds(root / "own-loop-one", "run", str(path))
    note = f"the own-loop example's CNN on its own Dataset, {config.train.max_epochs} epochs each"
    rows = []
    for jobs in ["2"] if quick else ["2", "1"]:  # two stacks of 10 on the two cores, then one stack of 20 on one
        folder = root / f"own-loop-vmap-{jobs}"
        vmapped = _seconds(folder, "sweep", str(path), "--seeds", "0-19", "--set", "model.stack=vmap", "--jobs", jobs)
        case = f"own-loop CNN: 20 runs (model.stack=vmap, --jobs {jobs}) vs 1 run"
        rows.append(Row("sweep", case, vmapped, one, "s", "<= 4.0" if jobs == "2" else "", note))
    return rows


def _digits_config() -> str:
    from emabench.config import shipped_config_path

    return str(shipped_config_path("digits"))


def _sweep(folder: Path, config: str, extra: list[str]) -> float:
    betas = ",".join(f"{b:g}" for b in SWEEP_BETAS)
    return _seconds(folder, "sweep", config, "--beta", betas, "--seeds", SWEEP_SEEDS, *extra)


def _seconds(folder: Path, *args: str) -> float:
    return run_command([sys.executable, "-m", "emabench", *args, "--runs-dir", str(folder), "--quiet"])
