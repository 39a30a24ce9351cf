"""A run whose training raises (a user's module or data code, or a bug) fails cleanly: exit 3 and one line naming the
run, its folder marked FAILED with the error and the traceback inside, the epochs it finished kept; in a sweep the
other runs finish. No input ends in exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from emabench.cli import app
from emabench.errors import EXIT_RUN_ERROR
from tests.conftest import ROOT

EXAMPLE = ["examples/custom_model.yaml", "--set", "train.max_epochs=4", "--set", "averagers.swa.start_epoch=1"]
EXAMPLE += ["--set", "train.lr_schedule.warmup=0"]


def invoke(monkeypatch: pytest.MonkeyPatch, *args: str):
    monkeypatch.chdir(ROOT)  # the example's paths are relative to the repository root
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("factory", ["fails_in_training", "exits_in_training"])
def test_a_run_that_raises_fails_with_its_traceback(tmp_path: Path, monkeypatch, factory: str) -> None:
    # 20 steps an epoch: the 30th training forward raises, in epoch 2
    model = [
        "--set",
        f"model.factory=tests.custom_models:{factory}",
        "--set",
        "model.kwargs={in_features: 8, after: 30}",
    ]
    result = invoke(monkeypatch, "run", *EXAMPLE, *model, "--runs-dir", str(tmp_path), "-q")
    assert result.exit_code == EXIT_RUN_ERROR, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    (folder,) = tmp_path.iterdir()
    assert f"{folder}: training failed after 1 epoch(s)" in " ".join(result.output.split())
    failed = json.loads((folder / "FAILED").read_text())
    assert failed["status"] == "failed" and failed["epochs"] == 1
    assert "Traceback" in failed["traceback"] and "custom_models.py" in failed["traceback"]
    assert len(pd.read_csv(folder / "history.csv")) == 1  # the finished epoch is kept
    assert not (folder / "DONE").exists()


def test_a_sweep_goes_on_past_a_failed_run_and_exits_3(tmp_path: Path, monkeypatch) -> None:
    model = ["--set", "model.factory=tests.custom_models:fails_in_training"]  # the example's kwargs, ignored
    grid = ["--grid", "model.kwargs.after=1000,30"]  # 1000: never reached in 4 epochs of 20 steps
    result = invoke(monkeypatch, "sweep", *EXAMPLE, *model, *grid, "--runs-dir", str(tmp_path), "-q")
    assert result.exit_code == EXIT_RUN_ERROR, result.output
    assert "1 run(s) failed" in result.output
    (sweep,) = tmp_path.iterdir()
    marks = sorted(
        next(p.name for p in run.iterdir() if p.name in ("DONE", "FAILED")) for run in sweep.iterdir() if run.is_dir()
    )
    assert marks == ["DONE", "FAILED"]
