"""The shipped example (examples/custom_model.py + .yaml): a user's own nn.Module on a CSV file, three averagers beside
raw, run exactly as its header says (from the repository root), only for fewer epochs."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from emabench.cli import app
from tests.conftest import ROOT


def test_the_example_trains_the_users_model_with_three_averagers(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the config's CSV and factory paths are relative to the repository root
    args = ["run", "examples/custom_model.yaml", "--set", "train.max_epochs=12", "--set", "averagers.swa.start_epoch=6"]
    result = CliRunner().invoke(app, [*args, "--runs-dir", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    (folder,) = tmp_path.iterdir()
    assert (folder / "DONE").exists()
    metrics = pd.read_csv(folder / "metrics.csv")
    assert set(metrics["model"]) == {"raw", "ema", "ema_const", "swa"}
    assert metrics["r2"].min() > 0.5  # all four learned the Friedman target, none is an untouched copy
    history = pd.read_csv(folder / "history.csv")
    assert len(history) == 12


SHORT = ["--set", "train.max_epochs=8", "--set", "averagers.swa.start_epoch=4", "--set", "train.lr_schedule.warmup=0"]


@pytest.mark.parametrize(
    "axes,runs",
    [
        (["--beta", "0.9,0.99", "--seeds", "0,1"], 4),  # 160 steps: the decay passes 0.9 (at ~131) but not 0.99
        (["--grid", "train.optimizer.lr=0.001,0.003", "--seeds", "0"], 2),
        (["--grid", "model.kwargs.dropout=0.0,0.2", "--seeds", "0"], 2),
        (["--beta", "0.9,0.99", "--shadows", "--seeds", "0,1"], 2),
    ],
)
def test_sweeps_of_the_users_model_over_per_run_keys(tmp_path, monkeypatch, axes: list[str], runs: int) -> None:
    """Every per-run key a sweep varies gives runs of their own (a custom model trains one run per unit), with the
    default engine: none crashes, each finishes."""
    monkeypatch.chdir(ROOT)
    args = ["sweep", "examples/custom_model.yaml", *axes, *SHORT, "--set", "ema.update_after_step=10"]
    result = CliRunner().invoke(app, [*args, "--runs-dir", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    (sweep,) = tmp_path.iterdir()
    done = [p for p in sweep.iterdir() if (p / "DONE").is_file()]
    assert len(done) == runs
