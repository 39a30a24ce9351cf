"""The CLI through typer's CliRunner: files written, columns, sweep + report, and every bad input."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from emabench.cli import app
from emabench.runs.folder import find_runs

from .conftest import SEED_CONFIG, TINY_SETS

runner = CliRunner()
CPU = ["--set", "device=cpu"]
TINY = [arg for s in TINY_SETS for arg in ("--set", s)] + CPU

HISTORY_COLUMNS = [
    "epoch",
    "train_loss",
    "lr",
    "raw_val_loss",
    "raw_mse",
    "raw_mae",
    "raw_r2",
    "ema_val_loss",
    "ema_mse",
    "ema_mae",
    "ema_r2",
    "ema_decay",
]


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_run_writes_a_complete_run_folder(tmp_path):
    result = invoke("run", SEED_CONFIG, *TINY, "--runs-dir", tmp_path, "--quiet")
    assert result.exit_code == 0, result.output
    (folder,) = find_runs([tmp_path])
    assert sorted(p.name for p in folder.path.iterdir()) == sorted(
        ["config.yaml", "history.csv", "metrics.csv", "loss.png", "r2.png", "DONE"]
    )
    assert str(folder.path) in result.output.replace("\n", "")
    history = pd.read_csv(folder.path / "history.csv")
    assert all(c in history.columns for c in HISTORY_COLUMNS)
    assert list(history["epoch"]) == list(range(1, len(history) + 1))
    metrics = pd.read_csv(folder.path / "metrics.csv")
    assert list(metrics["model"]) == ["raw", "ema"]
    assert {"mse", "mae", "r2", "mse_improvement_pct"} <= set(metrics.columns)
    # metrics are the last epoch's, as the seed's final evaluation
    assert metrics.loc[1, "mse"] == pytest.approx(history["ema_mse"].iloc[-1])
    assert (folder.path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert folder.status == "completed"


def test_resolved_config_reruns_to_the_same_folder(tmp_path):
    assert invoke("run", SEED_CONFIG, *TINY, "--runs-dir", tmp_path, "-q").exit_code == 0
    (folder,) = find_runs([tmp_path])
    again = invoke("run", folder.path / "config.yaml", "--runs-dir", tmp_path, "-q")
    assert again.exit_code == 0 and "Already finished" in again.output
    assert len(find_runs([tmp_path])) == 1


def test_sweep_then_report(tmp_path):
    result = invoke("sweep", SEED_CONFIG, "--beta", "0.5,0.99", "--seeds", "0-2", *TINY, "--runs-dir", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    runs = find_runs([tmp_path])
    assert len(runs) == 6 and all(r.is_done for r in runs)
    assert len({r.path.parent for r in runs}) == 1  # grouped under one sweep folder
    report = invoke("report", "--runs-dir", tmp_path)
    assert report.exit_code == 0, report.output
    table = pd.read_csv(tmp_path / "report.csv")
    assert list(table["beta"]) == [0.5, 0.99]
    assert list(table["n_seeds"]) == [3, 3]
    for column in [
        "raw_mse_mean",
        "raw_mse_std",
        "ema_mse_mean",
        "ema_mae_mean",
        "ema_r2_std",
        "ema_mse_improvement_pct",
        "ema_wins",
    ]:
        assert column in table.columns
    assert (tmp_path / "report.md").read_text().startswith("# ")
    # re-running the same sweep trains nothing
    again = invoke("sweep", SEED_CONFIG, "--beta", "0.5,0.99", "--seeds", "0-2", *TINY, "--runs-dir", tmp_path, "-q")
    assert again.exit_code == 0 and "6 skipped" in again.output


def test_sweep_process_engine_matches_vectorized(tmp_path):
    args = ["--beta", "0.9", "--seeds", "0,1", *TINY, "-q"]
    assert invoke("sweep", SEED_CONFIG, *args, "--runs-dir", tmp_path / "v", "--engine", "vectorized").exit_code == 0
    assert invoke("sweep", SEED_CONFIG, *args, "--runs-dir", tmp_path / "p", "--engine", "process").exit_code == 0
    for v, p in zip(find_runs([tmp_path / "v"]), find_runs([tmp_path / "p"])):
        assert v.name == p.name
        pd.testing.assert_frame_equal(v.read_history(), p.read_history(), atol=1e-5, rtol=1e-5)


BAD_INPUTS = {
    "missing config": (["run", "nope.yaml"], "not found"),
    "unknown --set key": (["run", SEED_CONFIG, "--set", "ema.betta=0.9"], "unknown key 'betta'"),
    "--set without =": (["run", SEED_CONFIG, "--set", "ema.beta"], "KEY=VALUE"),
    "--set out of range": (["run", SEED_CONFIG, "--set", "ema.beta=1"], "ema.beta"),
    "--beta not a number": (["sweep", SEED_CONFIG, "--beta", "0.9,abc"], "--beta: 'abc' is not a number"),
    "--beta out of range": (["sweep", SEED_CONFIG, "--beta", "0.9,1.5"], "outside [0, 1)"),
    "--seeds malformed": (["sweep", SEED_CONFIG, "--seeds", "0-x"], "--seeds"),
    "--engine unknown": (["sweep", SEED_CONFIG, "--engine", "warp"], "--engine"),
    "report nothing": (["report"], "no"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_no_traceback_no_folder(tmp_path, case):
    args, needle = BAD_INPUTS[case]
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    result = invoke(*args, "--runs-dir", runs_dir)
    assert result.exit_code not in (0, 1), result.output  # 1 would be an uncaught exception
    assert needle in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert list(runs_dir.iterdir()) == []


def test_bad_yaml_file_via_cli(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("!!python/object/apply:os.system ['echo hi']\n")
    result = invoke("run", bad, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "invalid YAML" in result.output
    assert not (tmp_path / "runs").exists()


def test_cuda_requested_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    result = invoke("run", SEED_CONFIG, "--set", "device=cuda", "--runs-dir", tmp_path)
    assert result.exit_code == 2 and "CUDA is not available" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [[], ["run"], ["sweep"], ["report"]])
def test_every_help(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.output
