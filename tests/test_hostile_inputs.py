"""Inputs that once gave a traceback, a hang or a silent misread, through the CLI: each is now a one-line refusal
naming the key, file or column (exit 2), a clean stop (exit 130) or a run error that leaves every started run marked
(exit 3) — and a refused command leaves nothing behind in the runs folder."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emabench.cli import app
from emabench.runs import folder as run_folder
from emabench.runs.atomic import atomic_write_text
from emabench.runs.folder import FAILED, find_runs
from emabench.tasks.registry import get_task

from .conftest import SEED_CONFIG, TINY_SETS
from .fake_runs import write_run

runner = CliRunner()
TINY = [arg for s in [*TINY_SETS, "device=cpu"] for arg in ("--set", s)]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def refused(result, code: int = 2) -> str:
    """The one line a refusal prints (no traceback)."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    return result.output


# Every key spelled out (as configs had to be before defaults), so each test meets the same refusal on older code.
SPELLED_OUT = """\
seed: 0
device: cpu
ema: {beta: 0.9, update_after_step: 0, update_every: 1, inv_gamma: 1.0, power: 1.0, min_value: 0.0}
"""
TRAIN = (
    "train: {batch_size: 8, max_epochs: 2, diverged_above: null, optimizer: {name: adam, lr: 0.001, weight_decay: 0.0},"
    " scheduler: {name: none, monitor: raw, factor: 0.5, patience: 1, threshold: 0.0, threshold_mode: rel,"
    " cooldown: 0, min_lr: 0.0}, early_stopping: {monitor: raw, patience: null}}\n"
)
SPLIT = "test_size: 0.2, split_random_state: 0"
CSV_CONFIG = (
    f"name: csv-run\n{SPELLED_OUT}data: {{source: csv, path: 'PATH', target: y, {SPLIT}}}\n"
    f"model: {{name: mlp, hidden_sizes: [8], dropout: 0.0, init: torch_default}}\n{TRAIN}"
)


def function_config(
    tmp_path: Path, function: str, model: str = "{name: mlp, hidden_sizes: [4], dropout: 0.0, init: torch_default}"
) -> Path:
    config = tmp_path / "f.yaml"
    config.write_text(
        f"name: f\n{SPELLED_OUT}data: {{source: function, function: '{function}', {SPLIT}}}\nmodel: {model}\n{TRAIN}"
    )
    return config


def csv_config(tmp_path: Path, text: str, name: str = "d.csv") -> Path:
    (tmp_path / name).write_text(text)
    config = tmp_path / "c.yaml"
    config.write_text(CSV_CONFIG.replace("PATH", str(tmp_path / name)))
    return config


def rows(n: int = 30, value: str = "1.5") -> str:
    return "".join(f"{i},{value},{i % 3}\n" for i in range(n))


# --- tracebacks -------------------------------------------------------------------------------------------------


def test_a_seed_beyond_64_bits_is_refused(tmp_path) -> None:
    line = refused(invoke("run", SEED_CONFIG, *TINY, "--set", f"seed={2**70}", "--runs-dir", tmp_path / "runs"))
    assert "seed" in line and "less than or equal to 9223372036854775807" in line
    line = refused(invoke("sweep", SEED_CONFIG, *TINY, "--seeds", f"0,{2**70}", "--runs-dir", tmp_path / "runs"))
    assert "seed" in line and not (tmp_path / "runs").exists()


def test_a_csv_file_with_only_its_header_is_refused(tmp_path) -> None:
    line = refused(invoke("run", csv_config(tmp_path, "a,b,y\n"), "--runs-dir", tmp_path / "runs"))
    assert "d.csv has a header but no data rows" in line


@pytest.mark.parametrize("command", ["run", "sweep", "ls", "report", "show"])
def test_a_runs_dir_that_is_a_symlink_loop_is_refused(tmp_path, command: str) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    args = {"run": ["run", SEED_CONFIG, *TINY], "sweep": ["sweep", SEED_CONFIG, *TINY, "--seeds", "0-1"]}
    args |= {"show": ["show", "regression"], "ls": ["ls"], "report": ["report"]}
    result = invoke(*args[command], "--runs-dir", tmp_path / "a")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "leads back to itself" in " ".join(result.output.split())  # typer's usage box wraps it


def test_a_report_over_runs_whose_every_value_is_nan(tmp_path) -> None:
    task = get_task("regression")
    config = {"name": "nan", "seed": 0, "ema": {"beta": 0.999}}
    names = ["train_loss", "lr", *(f"{m}_{c}" for m in ("raw", "ema") for c in ("val_loss", "mse", "mae", "r2"))]
    history = [{"epoch": e, **dict.fromkeys(names, float("nan"))} for e in range(1, 13)]
    for seed in range(3):
        write_run(tmp_path / "runs" / f"nan-seed{seed}-0000000{seed}", config | {"seed": seed}, history, task)
    result = invoke("report", "--runs-dir", tmp_path / "runs", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "report.html").is_file()


# --- hangs --------------------------------------------------------------------------------------------------------


def test_a_csv_file_with_a_million_columns_is_refused_from_its_header(tmp_path) -> None:
    """Refused from the header line alone: parsing the file first (and checking each used column against every
    column) ran for minutes and 1.5 GB. In a process of its own, so that a regression fails instead of hanging."""
    header = ",".join(f"c{i}" for i in range(10**6 - 1)) + ",y\n"
    config = csv_config(tmp_path, header + ",".join(["1"] * 10**6) + "\n")
    command = [sys.executable, "-m", "emabench", "run", str(config), "--runs-dir", str(tmp_path / "runs"), "-q"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)  # a guard against a hang
    assert done.returncode == 2 and "1,000,000 columns, more than the 100,000 allowed" in done.stderr, done.stderr


BLOCKING = """\
import time
from pathlib import Path

def data():
    Path("{marker}").write_text("blocking")
    time.sleep(600)
"""


@pytest.mark.parametrize("part", ["data", pytest.param("model", marks=pytest.mark.slow)])
def test_ctrl_c_while_user_code_blocks_before_training_stops_at_once(tmp_path, part: str) -> None:
    """A data function or a model factory that blocks: the first Ctrl-C stops at once (no "after the current
    epoch": none has begun), exit 130, and nothing is left in the runs folder."""
    marker = tmp_path / "blocking"
    (tmp_path / "user.py").write_text(BLOCKING.format(marker=marker) + "\nmodel = data\n")
    if part == "data":
        config = function_config(tmp_path, "user.py:data")
    else:
        (tmp_path / "ones_data.py").write_text(
            "import numpy\n\ndef data():\n    return numpy.ones((20, 3)), numpy.ones(20)\n"
        )
        config = function_config(tmp_path, "ones_data.py:data", "{name: custom, factory: 'user.py:model'}")
    command = [sys.executable, "-m", "emabench", "run", str(config), "--runs-dir", "runs/here", "-q"]
    process = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        while not marker.exists():  # until the user's code is blocking
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)  # a guard against a hang, not a measure of speed
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "after the current epoch" not in stderr and "Traceback" not in stderr
    assert not (tmp_path / "runs").exists()


# --- silent misreads ------------------------------------------------------------------------------------------


def test_features_that_list_the_target_are_refused(tmp_path) -> None:
    config = csv_config(tmp_path, "a,b,y\n" + rows())
    line = refused(invoke("run", config, "--set", "data.features=[a,y]", "--runs-dir", tmp_path / "runs"))
    assert "data.features: lists the target column 'y'" in line
    line = refused(invoke("run", config, "--set", "data.features=[a,a]", "--runs-dir", tmp_path / "runs"))
    assert "data.features: lists the column 'a' twice" in line


def nan_features():
    x = np.random.default_rng(0).normal(size=(40, 3))
    x[7, 2] = np.nan
    return x, np.arange(40.0)


def test_nan_from_a_data_function_is_refused_as_in_a_csv_file(tmp_path) -> None:
    config = function_config(tmp_path, f"{__name__}:nan_features")
    line = refused(invoke("run", config, "--runs-dir", tmp_path / "runs"))
    assert "returned a missing value (NaN) in x (sample 7)" in line
    line = refused(invoke("run", csv_config(tmp_path, "a,b,y\n1,,2\n" + rows()), "--runs-dir", tmp_path / "runs"))
    assert "column 'b'" in line and "missing value (NaN) (data row 1)" in line
    assert not (tmp_path / "runs").exists()


def test_values_beyond_float32_are_refused_without_numpy_warnings(tmp_path) -> None:
    config = csv_config(tmp_path, "a,b,y\n" + rows(value="1e300"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow encountered" once leaked to the terminal
        line = refused(invoke("run", config, "--runs-dir", tmp_path / "runs"))
    assert "column 'b'" in line and "the value 1e+300 (data row 1)" in line


def test_duplicate_and_unnamed_csv_columns_are_refused(tmp_path) -> None:
    line = refused(invoke("run", csv_config(tmp_path, "a,a,y\n" + rows()), "--runs-dir", tmp_path / "runs"))
    assert "names the column 'a' twice" in line
    line = refused(invoke("run", csv_config(tmp_path, ",a,y\n" + rows()), "--runs-dir", tmp_path / "runs"))
    assert "column 1 of" in line and "has no name" in line


def test_a_csv_path_that_is_a_directory_says_so(tmp_path) -> None:
    (tmp_path / "folder.csv").mkdir()
    config = tmp_path / "c.yaml"
    config.write_text(CSV_CONFIG.replace("PATH", str(tmp_path / "folder.csv")))
    line = refused(invoke("run", config, "--runs-dir", tmp_path / "runs"))
    assert "folder.csv is a directory" in line and "no such file" not in line


EXITING_MODEL = """\
import torch

class Exits(torch.nn.Module):
    def __init__(self, after):
        super().__init__()
        self.linear, self.calls, self.after = torch.nn.Linear(20, 1), 0, after

    def forward(self, x):
        self.calls += 1
        if self.calls > self.after:
            raise SystemExit(0)
        return self.linear(x)

def build(after=0):
    return Exits(after)
"""


@pytest.mark.parametrize(
    ("after", "code", "words"), [(0, 2, "SystemExit: 0"), (3, 3, "training failed after 0 epoch(s) (SystemExit: 0)")]
)
def test_a_model_that_calls_exit_does_not_end_emabench_in_success(tmp_path, after: int, code: int, words: str):
    (tmp_path / "exits.py").write_text(EXITING_MODEL)
    model = f"model={{name: custom, factory: {tmp_path / 'exits.py'}:build, kwargs: {{after: {after}}}}}"
    result = invoke("run", SEED_CONFIG, *TINY, "--set", model, "--runs-dir", tmp_path / "runs", "-q")
    assert result.exit_code == code and words in result.output, result.output


def test_a_refused_data_source_leaves_no_runs_folder(tmp_path) -> None:
    config = csv_config(tmp_path, "a,b,y\n")
    refused(invoke("run", config, "--runs-dir", tmp_path / "new" / "runs"))
    refused(invoke("sweep", config, "--seeds", "0-2", "--runs-dir", tmp_path / "new" / "runs", "-q"))
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    refused(invoke("sweep", config, "--seeds", "0-2", "--runs-dir", tmp_path / "kept", "-q"))
    assert list((tmp_path / "kept").iterdir()) == []  # the folder given stays, holding nothing new


def test_a_full_disk_leaves_every_started_run_marked(tmp_path, monkeypatch) -> None:
    """The disk fills up mid-sweep (history.csv cannot be written from the third write on): the sweep stops with
    exit 3 and every run it started is marked FAILED with the error, not left unmarked."""
    writes = [0]

    def full_disk(path: Path, text: str, **kwargs) -> None:
        if path.name == "history.csv":
            writes[0] += 1
            if writes[0] > 2:
                raise run_folder.RunError(f"{path}: cannot write ({os.strerror(errno.ENOSPC)})")
        atomic_write_text(path, text, **kwargs)

    monkeypatch.setattr(run_folder, "atomic_write_text", full_disk)
    monkeypatch.setattr(run_folder, "HISTORY_EVERY_S", 0.0)
    result = invoke("sweep", SEED_CONFIG, *TINY, "--seeds", "0-3", "--runs-dir", tmp_path / "runs", "-q")
    assert result.exit_code == 3 and "No space left on device" in result.output, result.output
    runs = find_runs([tmp_path / "runs"])
    assert len(runs) == 4 and all(run.status == "failed" for run in runs)
    assert all("No space left on device" in (run.path / FAILED).read_text() for run in runs)


def test_the_exit_of_a_user_data_function_is_one_line(tmp_path) -> None:
    (tmp_path / "quits.py").write_text("import sys\n\ndef data():\n    sys.exit(4)\n")
    config = function_config(tmp_path, f"{tmp_path / 'quits.py'}:data")
    line = refused(invoke("run", config, "--runs-dir", tmp_path / "runs"))
    assert "raised SystemExit: 4" in line and not (tmp_path / "runs").exists()
