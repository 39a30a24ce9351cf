"""``emabench run --nproc N``: one custom-model run data parallel over N CPU processes (gloo) equals the
same run in one process (no dropout), its folder is written once, by rank 0; Ctrl-C stops every rank with a
checkpoint and ``--resume --nproc`` continues it; what cannot be split over processes is refused in one line."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
from typer.testing import CliRunner

from emabench.cli import app
from emabench.config import Config, dump_yaml, load_config, validate_config, with_overrides
from emabench.runs import folder as run_folder
from emabench.runs import single
from emabench.runs.folder import find_runs
from emabench.runs.layout import CHECKPOINT
from emabench.train.data_parallel import DataParallel

from .conftest import ROOT, SEED_CONFIG

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")

cli = CliRunner()
RUN_FILES = {"config.yaml", "history.csv", "metrics.csv", "loss.png", "r2.png", "DONE"}


def invoke(*args: object):
    return cli.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    return " ".join(text.split())


def custom_config(
    tmp_path: Path, tiny_config: Config, file: str = "dp.yaml", rows: int = 150, **overrides: object
) -> Path:
    """A YAML config of ``tests.custom_models:small_mlp`` (no dropout) on a 150-row CSV table: 120 training rows in
    batches of 25 (the last one 20), so 2 and 4 processes get uneven slices; plateau scheduling, early stopping,
    clipping, gradient accumulation and four averagers, all of which must decide alike on every rank."""
    x = np.random.default_rng(1).normal(size=(rows, 4))
    y = np.sin(x @ np.array([1.0, -2.0, 0.5, 0.3])) + 0.1 * x[:, 0] ** 2
    table = tmp_path / "table.csv"
    table.write_text(
        "a,b,c,d,target\n" + "".join(",".join(f"{v:.6f}" for v in (*row, t)) + "\n" for row, t in zip(x, y))
    )
    raw = tiny_config.to_dict()
    raw["name"] = "dp"
    raw["data"] = {
        "source": "csv",
        "path": str(table),
        "target": "target",
        "scale_y": True,
        "test_size": 0.2,
        "split_random_state": 0,
    }
    raw["model"] = {"name": "custom", "factory": "tests.custom_models:small_mlp", "kwargs": {"in_features": 4}}
    config = with_overrides(
        validate_config(raw),
        {
            "train.batch_size": 25,
            "train.max_epochs": 12,
            "train.optimizer.lr": 0.01,
            "train.grad_clip_norm": 0.5,
            "train.grad_accumulation": 2,
            "train.early_stopping.patience": 4,
            "averagers": {
                "constant": {"kind": "constant_ema", "beta": 0.9},
                "swa": {"kind": "swa", "start_epoch": 3},
                "posthoc": {"kind": "posthoc", "sigma_rels": [0.05, 0.2], "snapshot_every": 5, "targets": [0.1]},
            },
            **overrides,
        },
    )
    path = tmp_path / file
    path.write_text(dump_yaml(config.to_dict()))
    return path


def read(runs: Path, name: str) -> pd.DataFrame:
    (folder,) = find_runs([runs])
    return pd.read_csv(folder.path / name)


def assert_close_frames(ours: pd.DataFrame, single: pd.DataFrame) -> None:
    """Same rows and columns, every number within 1e-5 (relative, or absolute near 0); improvements over raw, in
    percent, are differences of nearly equal numbers, so their relative error is larger: within 1e-3 percentage
    points."""
    assert list(ours.columns) == list(single.columns) and len(ours) == len(single)
    for column in single.columns:
        if single[column].dtype.kind in "fi":
            tolerance = {"rel": 1e-5, "abs": 1e-3 if column.endswith("_pct") else 1e-7}
            for a, b in zip(ours[column], single[column]):
                assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, **tolerance), column
        else:
            assert list(ours[column]) == list(single[column]), column


def assert_equals_one_process(config: Path, tmp_path: Path, nproc: int) -> Path:
    single = invoke("run", config, "--runs-dir", tmp_path / "single", "-q")
    assert single.exit_code == 0, single.output
    result = invoke("run", config, "--runs-dir", tmp_path / "parallel", "--nproc", nproc, "-q")
    assert result.exit_code == 0, result.output
    for name in ("history.csv", "metrics.csv"):
        assert_close_frames(read(tmp_path / "parallel", name), read(tmp_path / "single", name))
    (folder,) = find_runs([tmp_path / "parallel"])
    assert {p.name for p in folder.path.iterdir()} == RUN_FILES  # complete; the checkpoint dropped, no lock left
    assert folder.done_info()["processes"] == nproc
    return folder.path


def test_two_processes_equal_one_and_only_rank_0_writes(tmp_path: Path, tiny_config: Config, monkeypatch):
    """No dropout: the history and final table of 2 processes equal 1 process's (grad accumulation, clipping,
    plateau, early stopping, SWA and post-hoc EMA included), and one process wrote every file, once."""
    writes = tmp_path / "writes.log"

    def logged(write):
        def wrapper(path, *args, **kwargs):
            with open(writes, "a", encoding="utf-8") as log:  # O_APPEND: lines from several processes stay whole
                log.write(f"{os.getpid()} {Path(path).name}\n")
            return write(path, *args, **kwargs)

        return wrapper

    for name in ("atomic_write_text", "atomic_write_bytes"):  # the forked workers inherit the patch
        monkeypatch.setattr(run_folder, name, logged(getattr(run_folder, name)))
    config = custom_config(tmp_path, tiny_config)
    folder = assert_equals_one_process(config, tmp_path, 2)
    lines = [line.split() for line in writes.read_text().splitlines()]
    parallel = [(pid, name) for pid, name in lines if int(pid) != os.getpid()]
    assert len({pid for pid, _ in parallel}) == 1  # rank 0 only
    names = [name for _, name in parallel]
    history = len(pd.read_csv(folder / "history.csv"))
    assert names.count("config.yaml") == names.count("DONE") == names.count("metrics.csv") == 1
    assert 1 <= names.count("history.csv") <= history  # at most once per epoch (throttled, flushed at the end)


def test_a_user_error_on_the_ranks_is_one_line(tmp_path: Path, tiny_config: Config):
    config = custom_config(
        tmp_path, tiny_config, model={"name": "custom", "factory": "tests.custom_models:not_a_module"}
    )
    result = invoke("run", config, "--runs-dir", tmp_path / "runs", "--nproc", 2)
    assert result.exit_code == 2, result.output
    assert flat(result.output) == flat(result.output.strip().splitlines()[0])  # one line, no traceback
    assert "model.factory: tests.custom_models:not_a_module must return a torch.nn.Module" in flat(result.output)
    assert not any((tmp_path / "runs").glob("*/config.yaml"))  # refused before the folder was started


def test_batchnorm_statistics_are_rank_0s_and_the_averagers_are_checked(
    tmp_path: Path, tiny_config: Config, monkeypatch
):
    """BatchNorm: each rank's statistics come from its own rows; they are made rank 0's after every step, so the
    averagers stay the same on every rank (checked every epoch). Without that, the check stops the run (exit 3)."""
    model = {"name": "custom", "factory": "tests.custom_models:batchnorm_mlp", "kwargs": {"in_features": 4}}
    config = custom_config(tmp_path, tiny_config, model=model, **{"train.max_epochs": 4})
    assert invoke("run", config, "--runs-dir", tmp_path / "synced", "--nproc", 2, "-q").exit_code == 0
    monkeypatch.setattr(DataParallel, "synced_buffers", lambda self: None)
    result = invoke("run", config, "--runs-dir", tmp_path / "apart", "--nproc", 2, "-q")
    assert result.exit_code == 3, result.output
    assert "averagers.ema differs across the 2 processes (ranks [1] do not match rank 0)" in flat(result.output)


def test_a_checkpoint_continues_on_another_number_of_processes(tmp_path: Path, tiny_config: Config):
    """A run stopped after epoch 3 in one process continues on 2 and ends as the run never stopped (within 1e-5):
    the checkpoint holds plain tensors and no process count."""
    config = load_config(custom_config(tmp_path, tiny_config, **{"train.early_stopping.patience": None}))
    straight = single.run(config, tmp_path / "straight")
    epochs: list[int] = []
    first = single.run(config, tmp_path / "cut", on_epoch=lambda t, r: epochs.append(t.epoch), stop=lambda: 3 in epochs)
    assert (first.status, first.epochs) == ("interrupted", 3)
    resumed = invoke("run", "--resume", first.folder.path, "--nproc", 2, "-q")
    assert resumed.exit_code == 0 and "resumed from epoch 3" in flat(resumed.output), resumed.output
    assert first.folder.done_info()["processes"] == 2
    for name in ("history.csv", "metrics.csv"):
        assert_close_frames(read(tmp_path / "cut", name), read(tmp_path / "straight", name))
    assert straight.epochs == 12


@pytest.mark.slow
def test_four_processes_equal_one(tmp_path: Path, tiny_config: Config):
    """4 processes, batches of 7: the last batch has 1 row, so 3 ranks compute on a row of weight 0."""
    config = custom_config(tmp_path, tiny_config, **{"train.batch_size": 7, "train.max_epochs": 5})
    assert_equals_one_process(config, tmp_path, 4)


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("size", [1, 2, 7, 25])
def test_each_rank_takes_its_rows_and_the_weights_give_the_batch_mean(world: int, size: int):
    """The ranks' rows cover the batch once, and ``Σ_r weight_r·mean_r / N`` is the batch's mean (DDP's average)."""
    x = torch.arange(size, dtype=torch.float64).view(1, size, 1)
    covered, mean = [], 0.0
    for rank in range(world):
        part, _, _, rows, weight = DataParallel(rank, world, torch.device("cpu")).share(x, x, [])
        covered += part.view(-1).tolist()[:rows]
        mean += weight * float(part.mean()) / world
    assert sorted(covered) == list(range(size))
    assert mean == pytest.approx(float(x.mean()), rel=1e-12)


# --- stopping -------------------------------------------------------------------------------------------------------


def emabench(*args: object) -> list[str]:
    return [sys.executable, "-m", "emabench", *map(str, args)]


def history_rows(runs: Path) -> int:
    try:
        (history,) = runs.glob("*/history.csv")
        return len(history.read_text().splitlines()) - 1  # written whole, atomically
    except (ValueError, OSError):  # not there yet
        return 0


def start_and_signal(command: list[str], runs: Path, rows: int, signals: int) -> subprocess.CompletedProcess:
    """Start ``command``, send SIGINT as soon as ``rows`` epochs are written (the next one has just begun; a second
    one as soon as the launcher has passed the first on, which it says on stderr), and wait for it to end."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while history_rows(runs) < rows:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no epochs written"
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    notice = process.stderr.readline()
    if signals > 1:
        assert "stopping after the current epoch" in notice, notice
        process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, out, notice + err)


LONG = {
    "train.max_epochs": 150,
    "train.early_stopping.patience": None,
    "model.kwargs": {"in_features": 4, "dropout": 0.3},
}


@pytest.mark.slow
def test_ctrl_c_stops_every_rank_and_resume_continues_bit_identical(tmp_path: Path, tiny_config: Config):
    """Ctrl-C to the launcher: every rank stops after the same epoch, rank 0 saves the checkpoint (exit 130);
    ``--resume --nproc 2`` continues it. With dropout (each rank's own stream, saved with the checkpoint) the
    result is bit-identical to the same run never stopped."""
    config = custom_config(tmp_path, tiny_config, **LONG)
    straight = invoke("run", config, "--runs-dir", tmp_path / "straight", "--nproc", 2, "-q")
    assert straight.exit_code == 0, straight.output

    runs = tmp_path / "cut"
    stopped = start_and_signal(emabench("run", config, "--runs-dir", runs, "--nproc", 2, "-q"), runs, 3, 1)
    assert stopped.returncode == 130, stopped.stderr
    interrupted = [line for line in stopped.stderr.splitlines() if line.startswith("interrupted:")]
    assert len(interrupted) == 1 and "Traceback" not in stopped.stderr, stopped.stderr
    (folder,) = find_runs([runs])
    saved = torch.load(folder.path / CHECKPOINT, weights_only=True)
    assert folder.status == "interrupted" and saved["epoch"] == len(folder.read_history()) < 150
    assert len(saved["rank_generators"]) == 2

    resumed = invoke("run", "--resume", folder.path, "--nproc", 2, "-q")
    assert resumed.exit_code == 0, resumed.output
    assert f"resumed from epoch {saved['epoch']}" in flat(resumed.output)
    (reference,) = find_runs([tmp_path / "straight"])
    for name in ("history.csv", "metrics.csv"):
        assert (folder.path / name).read_bytes() == (reference.path / name).read_bytes()


@pytest.mark.slow
def test_a_second_ctrl_c_aborts_every_rank(tmp_path: Path, tiny_config: Config):
    """The second Ctrl-C lands mid-epoch (2,400 training rows in batches of 2, 1,200 all-reduced steps an epoch on two
    ranks, the first Ctrl-C sent as it begins; at 1,200 rows the faster engine sometimes finished the epoch before
    the second Ctrl-C): every rank aborts at once, the launcher returns (no rank left waiting on another), the run
    keeps its last checkpoint and continues from it."""
    slow = {"train.batch_size": 2, "train.grad_accumulation": 1, "train.max_epochs": 4}
    config = custom_config(tmp_path, tiny_config, rows=3000, **(LONG | slow))
    runs = tmp_path / "runs"
    command = emabench("run", config, "--runs-dir", runs, "--nproc", 2, "--checkpoint-every", 1, "-q")
    aborted = start_and_signal(command, runs, 2, 2)
    assert aborted.returncode == 130, aborted.stderr
    last = aborted.stderr.strip().splitlines()[-1]
    assert last == "interrupted: finished epochs and runs are kept on disk", aborted.stderr
    assert "Traceback" not in aborted.stderr, aborted.stderr
    (folder,) = find_runs([runs])
    assert folder.status == "interrupted"
    lock = folder.try_lock()  # no worker holds the run any more (they inherited the launcher's lock)
    assert lock is not None
    lock.release()
    again = invoke("run", config, "--runs-dir", runs, "--nproc", 2, "-q")  # the same command continues it
    assert again.exit_code == 0 and "resumed from epoch" in flat(again.output), again.output


# --- refusals -------------------------------------------------------------------------------------------------------


def refused(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    text = flat(result.output)
    assert len(result.output.strip().splitlines()) == 1 and text.startswith("error:"), result.output
    for needle in needles:
        assert needle in text, text


def test_refusals(tmp_path: Path, tiny_config: Config):
    runs = tmp_path / "runs"
    refused(invoke("run", SEED_CONFIG, "--nproc", 2, "--runs-dir", runs), "stacked model", "sweep --jobs N")
    refused(invoke("sweep", SEED_CONFIG, "--nproc", 2, "--runs-dir", runs), "not supported by sweep", "--jobs N")
    config = custom_config(tmp_path, tiny_config)
    cpus = len(os.sched_getaffinity(0))
    refused(invoke("run", config, "--nproc", 4 * cpus + 1, "--runs-dir", runs), f"at most {4 * cpus}")
    gpus = torch.cuda.device_count()
    cuda = custom_config(tmp_path, tiny_config, "cuda.yaml", device="cuda")
    refused(invoke("run", cuda, "--nproc", max(2, gpus + 1), "--runs-dir", runs), "needs a GPU per process")
    fp16 = custom_config(tmp_path, tiny_config, "fp16.yaml", **{"train.precision": "fp16"})
    refused(invoke("run", fp16, "--nproc", 2, "--runs-dir", runs), "'fp16' needs CUDA")
    stacked_run = tmp_path / "stacked-run"  # a run folder of the seed MLP, continued on 2 processes
    stacked_run.mkdir()
    (stacked_run / "config.yaml").write_text(dump_yaml(tiny_config.to_dict()))
    refused(invoke("run", "--resume", stacked_run, "--nproc", 2), "model.name 'mlp' is a stacked model")
    zero = invoke("run", config, "--nproc", 0, "--runs-dir", runs)  # typer's own range check
    assert zero.exit_code == 2 and "--nproc" in zero.output
    assert not runs.exists() and [p.name for p in stacked_run.iterdir()] == ["config.yaml"]  # nothing written
    assert "--nproc" in flat(invoke("run", "--help").output)
