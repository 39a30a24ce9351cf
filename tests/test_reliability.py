"""Faults a long sweep meets, and what survives them: Ctrl-C, SIGTERM, SIGKILL, divergence, a full disk, re-runs,
two sweeps into one folder, hostile names. Subprocess tests run ``python -m emabench`` as a user would."""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from emabench.cli import app
from emabench.config import Config, identity, load_config, with_overrides
from emabench.errors import ConfigError, RunError
from emabench.runs import single
from emabench.runs.atomic import inside
from emabench.runs.folder import RunFolder, find_runs
from emabench.runs.interrupts import StopRequest
from emabench.runs.layout import CHECKPOINT, LOCK, safe_name
from emabench.runs.sweep import sweep
from emabench.runs.sweep_folder import sweep_dir
from emabench.train.loop import Trainer

from .conftest import ROOT, SEED_CONFIG, TINY_SETS

cli = CliRunner()
TINY = [arg for s in [*TINY_SETS, "device=cpu"] for arg in ("--set", s)]
LONG = ["--set", "train.max_epochs=10", "--set", "train.early_stopping.patience=null"]  # no early stop


def invoke(*args: object):
    return cli.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    """Output without the console's line wrapping."""
    return " ".join(text.split())


def interrupt_after(monkeypatch: pytest.MonkeyPatch, epoch: int, signals: int = 1, signum: int = signal.SIGINT):
    """Make the process signal itself (as Ctrl-C or `kill` would) right after the engine finishes ``epoch``."""
    original = Trainer.run_epoch

    def run_epoch(self: Trainer):
        records = original(self)
        if self.epoch == epoch:
            for _ in range(signals):
                os.kill(os.getpid(), signum)
        return records

    monkeypatch.setattr(Trainer, "run_epoch", run_epoch)


def histories(root: Path) -> dict[str, str]:
    return {f.name: (f.path / "history.csv").read_text() for f in find_runs([root])}


# --- resume equality ------------------------------------------------------------------------------------------------

EVERY_AVERAGER = {
    "swa": {"kind": "swa", "start_epoch": 3},
    "posthoc": {"kind": "posthoc", "sigma_rels": [0.05, 0.2], "snapshot_every": 7, "targets": [0.1]},
    "tf": {"kind": "tf_ema", "beta": 0.9},
    "bias_corrected": {"kind": "bias_corrected_ema", "beta": 0.95},
    "power": {"kind": "power_ema", "sigma_rel": 0.1},
    "constant": {"kind": "constant_ema", "beta": 0.9, "update_after_step": 3},
}


def final_tensors(store: dict[str, dict[str, torch.Tensor]], key: str):
    """An ``on_epoch`` callback keeping the latest model and every averager's tensors under ``store[key]``."""

    def on_epoch(trainer: Trainer, records) -> None:
        tensors = {f"model.{k}": v.clone() for k, v in trainer.model.state_dict().items()}
        for name, averager in trainer.averagers.items():
            tensors |= {f"{name}.{k}": v.clone() for k, v in averager.state_dict().items() if torch.is_tensor(v)}
        store[key] = tensors

    return on_epoch


def test_resume_is_bit_identical_with_every_averager(tiny_config: Config, tmp_path: Path):
    cfg = with_overrides(
        tiny_config,
        {
            "train.max_epochs": 8,
            "train.early_stopping.patience": None,
            "averagers": EVERY_AVERAGER,
            "train.swa_lr": {"start_epoch": 3, "swa_lr": 5e-4, "anneal_epochs": 2},  # SWALR from the swa's start
        },
    )
    store: dict[str, dict[str, torch.Tensor]] = {}
    straight = single.run(cfg, tmp_path / "straight", on_epoch=final_tensors(store, "straight"))

    asked: list[bool] = []
    capture = final_tensors(store, "resumed")

    def stop_at_three(trainer: Trainer, records) -> None:
        capture(trainer, records)
        asked.append(trainer.epoch == 3)

    first = single.run(cfg, tmp_path / "resumed", on_epoch=stop_at_three, stop=lambda: any(asked))
    assert (first.status, first.epochs) == ("interrupted", 3)
    assert first.folder.status == "interrupted" and (first.folder.path / CHECKPOINT).is_file()
    state = torch.load(first.folder.path / CHECKPOINT, weights_only=True)  # plain types only
    assert state["epoch"] == 3 and len(state["history"]) == 3

    resumed = single.resume(first.folder.path, on_epoch=capture)
    assert (resumed.status, resumed.resumed_from, resumed.epochs) == ("completed", 3, straight.epochs)
    assert store["straight"].keys() == store["resumed"].keys()
    for name, tensor in store["straight"].items():
        assert torch.equal(tensor, store["resumed"][name]), name
    for name in ("history.csv", "metrics.csv"):
        assert (straight.folder.path / name).read_bytes() == (resumed.folder.path / name).read_bytes()
    assert not (resumed.folder.path / CHECKPOINT).exists()  # DONE runs drop their checkpoint
    assert json.loads((resumed.folder.path / "DONE").read_text())["resumed_from_epoch"] == 3


def test_ctrl_c_saves_the_epoch_then_resume_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    args = ["run", SEED_CONFIG, *TINY, *LONG, "-q"]
    assert invoke(*args, "--runs-dir", tmp_path / "straight").exit_code == 0

    with monkeypatch.context() as patch:
        interrupt_after(patch, epoch=4)
        result = invoke(*args, "--runs-dir", tmp_path / "cut")
    assert result.exit_code == 130, result.output
    assert result.output.startswith("interrupted:") and len(result.output.strip().splitlines()) == 1
    (folder,) = find_runs([tmp_path / "cut"])
    assert folder.status == "interrupted" and len(folder.read_history()) == 4
    assert f"--resume {folder.path}" in result.output.replace("\n", "")

    again = invoke("run", "--resume", folder.path, "-q")
    assert again.exit_code == 0, again.output
    assert "resumed from epoch 4" in flat(again.output)
    assert histories(tmp_path / "straight") == histories(tmp_path / "cut")


def test_sigterm_is_a_ctrl_c_and_rerunning_the_config_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    args = ["run", SEED_CONFIG, *TINY, *LONG, "--runs-dir", tmp_path, "-q"]
    with monkeypatch.context() as patch:
        interrupt_after(patch, epoch=2, signum=signal.SIGTERM)
        assert invoke(*args).exit_code == 130
    again = invoke(*args)  # the same command, not --resume: it continues too
    assert again.exit_code == 0 and "resumed from epoch 2" in flat(again.output)


def test_second_ctrl_c_aborts_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    args = ["run", SEED_CONFIG, *TINY, *LONG, "--runs-dir", tmp_path, "-q", "--checkpoint-every", "2"]
    with monkeypatch.context() as patch:
        interrupt_after(patch, epoch=3, signals=2)
        result = invoke(*args)
    assert result.exit_code == 130 and len(result.output.strip().splitlines()) == 1
    (folder,) = find_runs([tmp_path])
    assert folder.status == "interrupted"
    assert torch.load(folder.path / CHECKPOINT, weights_only=True)["epoch"] == 2  # epoch 3 was not saved
    again = invoke(*args)
    assert again.exit_code == 0 and "resumed from epoch 2" in flat(again.output)
    assert list(folder.read_history()["epoch"]) == list(range(1, 11))


def test_interrupted_stacked_sweep_resumes_bit_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    args = ["sweep", SEED_CONFIG, "--beta", "0.9,0.99", "--seeds", "0,1", *TINY, *LONG, "-q"]
    assert invoke(*args, "--runs-dir", tmp_path / "straight").exit_code == 0
    with monkeypatch.context() as patch:
        interrupt_after(patch, epoch=5)
        result = invoke(*args, "--runs-dir", tmp_path / "cut")
    assert result.exit_code == 130 and "4 interrupted" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    again = invoke(*args, "--runs-dir", tmp_path / "cut")
    assert again.exit_code == 0 and "4 completed" in again.output
    assert histories(tmp_path / "straight") == histories(tmp_path / "cut")
    for folder in find_runs([tmp_path / "cut"]):
        assert folder.done_info()["resumed_from_epoch"] == 5


def test_resumed_runs_restack_by_epoch(tiny_config: Config, tmp_path: Path):
    """Runs that finished before the interrupt leave the stack; the rest resume as a smaller stack, unchanged."""
    base = with_overrides(tiny_config, {"train.early_stopping.patience": None})
    grid = {"train.max_epochs": [3, 10], "ema.beta": [0.5, 0.99], "seed": [0, 1]}
    sweep(base, grid, tmp_path / "straight")
    asked: list[bool] = []
    _, first = sweep(
        base, grid, tmp_path / "cut", on_epoch=lambda t, r: asked.append(t.epoch >= 5), stop=lambda: any(asked)
    )
    assert sorted(o.status for o in first) == ["completed"] * 4 + ["interrupted"] * 4
    _, second = sweep(base, grid, tmp_path / "cut")
    assert sorted((o.status, o.resumed_from) for o in second) == [("completed", 5)] * 4 + [("skipped", 0)] * 4
    assert histories(tmp_path / "straight") == histories(tmp_path / "cut")


def test_stop_in_a_worker_pool(tiny_config: Config, tmp_path: Path):
    """Parallel sweeps: a stop request starts nothing new and reaches running workers; a re-run finishes."""
    base = with_overrides(tiny_config, {"train.max_epochs": 30, "train.early_stopping.patience": None})
    grid = {"seed": [0, 1, 2, 3, 4, 5]}
    finished: list[int] = []
    _, outcomes = sweep(
        base, grid, tmp_path, jobs=2, engine="process", on_stack_done=finished.append, stop=lambda: bool(finished)
    )
    statuses = [o.status for o in outcomes]
    assert "completed" in statuses and set(statuses) <= {"completed", "interrupted", "not_started"}
    assert "not_started" in statuses or "interrupted" in statuses
    _, again = sweep(base, grid, tmp_path, engine="process")
    assert sorted(o.status for o in again) == sorted("skipped" if s == "completed" else "completed" for s in statuses)
    assert all(f.is_done for f in find_runs([tmp_path])) and len(find_runs([tmp_path])) == 6


# --- processes killed from outside ----------------------------------------------------------------------------------


def emabench(*args: object) -> list[str]:
    return [sys.executable, "-m", "emabench", *map(str, args)]


def wait_for(condition, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"process ended first: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out")
        time.sleep(0.01)


def history_rows(runs_dir: Path) -> int:
    try:
        (history,) = runs_dir.glob("*/history.csv")
        return len(pd.read_csv(history))
    except (ValueError, OSError):  # not there yet
        return 0


def test_sigkill_mid_epoch_leaves_a_readable_incomplete_folder(tmp_path: Path):
    forever = ["--set", "train.max_epochs=100000", "--set", "train.early_stopping.patience=null"]
    command = emabench("run", SEED_CONFIG, *TINY, *forever, "--checkpoint-every", "3", "--runs-dir", tmp_path, "-q")
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: history_rows(tmp_path) >= 5, process)
    process.send_signal(signal.SIGKILL)
    process.wait()

    (folder,) = find_runs([tmp_path])
    assert folder.status == "incomplete"
    history = folder.read_history()
    assert len(history) >= 5 and list(history["epoch"]) == list(range(1, len(history) + 1))
    saved = torch.load(folder.path / CHECKPOINT, weights_only=True)["epoch"]
    assert saved >= 3 and saved % 3 == 0
    # the same run continues from its checkpoint: one more epoch, then stop
    epochs: list[int] = []
    outcome = single.resume(folder.path, on_epoch=lambda t, r: epochs.append(t.epoch), stop=lambda: bool(epochs))
    assert (outcome.status, outcome.resumed_from, outcome.epochs) == ("interrupted", saved, saved + 1)
    assert list(folder.read_history()["epoch"]) == list(range(1, saved + 2))
    assert not list(folder.path.glob(".*.tmp"))


EPOCHS = 150  # about a quarter second per tiny run: the signal lands while a later run trains


def test_sigint_sweep_then_rerun_trains_nothing_twice(tmp_path: Path):
    epochs = ["--set", f"train.max_epochs={EPOCHS}", "--set", "train.early_stopping.patience=null"]
    command = emabench("sweep", SEED_CONFIG, "--seeds", "0-2", "--engine", "process", *TINY, *epochs)
    command += ["--runs-dir", str(tmp_path), "-q"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(tmp_path.glob("*/*/DONE")), process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, (out, err)
    message = [line for line in err.splitlines() if line.startswith("interrupted:")]
    assert len(message) == 1 and "completed" in message[0] and "Traceback" not in err, err

    first = {f.name: f for f in find_runs([tmp_path])}
    done_before = {name: (f.path / "DONE").stat().st_mtime_ns for name, f in first.items() if f.is_done}
    saved = {
        name: torch.load(f.path / CHECKPOINT, weights_only=True)["epoch"]
        for name, f in first.items()
        if f.status == "interrupted"
    }
    assert done_before and len(done_before) < 3

    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done_before)} skipped" in rerun.stdout
    runs = find_runs([tmp_path])
    assert len(runs) == 3 and all(f.status == "completed" for f in runs)
    for folder in runs:
        info = folder.done_info()
        if folder.name in done_before:  # not trained again
            assert (folder.path / "DONE").stat().st_mtime_ns == done_before[folder.name]
            assert info["resumed_from_epoch"] == 0
        elif folder.name in saved:  # continued, not restarted
            assert info["resumed_from_epoch"] == saved[folder.name] > 0
        else:  # never started before the interrupt
            assert info["resumed_from_epoch"] == 0
        assert list(folder.read_history()["epoch"]) == list(range(1, EPOCHS + 1))


def test_two_sweeps_into_one_folder_at_once(tmp_path: Path):
    command = emabench("sweep", SEED_CONFIG, "--seeds", "0-5", "--engine", "process", *TINY, "--runs-dir", tmp_path)
    processes = [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    trained = 0
    for out, _ in outputs:
        summary = out.replace("\n", " ")
        trained += int(summary.split(" completed")[0].rsplit("(", 1)[-1]) if " completed" in summary else 0
    assert trained == 6  # every run trained exactly once, by one of the two
    runs = find_runs([tmp_path])
    assert len(runs) == 6 and all(f.status == "completed" for f in runs)
    for folder in runs:
        assert len(folder.read_history()) == folder.done_info()["epochs"]
        assert list(folder.read_metrics()["model"]) == ["raw", "ema"]
        assert not list(folder.path.glob(".*")), list(folder.path.iterdir())  # no lock or temporary files left


def test_history_is_appended_as_if_rewritten(tmp_path: Path):
    from emabench.runs.encoding import rows_to_csv

    folder = RunFolder(tmp_path).create()
    rows = [{"epoch": e, "loss": 1 / e, "lr": 1e-3 if e < 3 else float("nan")} for e in range(1, 6)]
    for i, row in enumerate(rows):
        folder.append_history(row)
        assert (tmp_path / "history.csv").read_text() == rows_to_csv(rows[: i + 1])
    folder.write_history(rows[:2])  # a resumed run starts from its checkpoint's rows
    folder.append_history(rows[2])
    assert (tmp_path / "history.csv").read_text() == rows_to_csv(rows[:3])


# --- locks ------------------------------------------------------------------------------------------------------------


def test_a_locked_run_is_left_to_its_holder(tiny_config: Config, tmp_path: Path):
    folder = RunFolder.for_config(tiny_config, tmp_path)
    with folder.try_lock() as lock:
        assert lock is not None and (folder.path / LOCK).is_file()
        assert folder.try_lock() is None  # another open file description: as another process
        with pytest.raises(RunError, match="another emabench process"):
            single.run(tiny_config, tmp_path)
        _, outcomes = sweep(tiny_config, {"seed": [tiny_config.seed, 7]}, tmp_path / "s")
        assert sorted(o.status for o in outcomes) == ["completed", "completed"]  # a different folder: not locked
    assert not folder.path.exists()  # locked, never trained: released without a trace
    assert single.run(tiny_config, tmp_path).status == "completed"


def test_sweep_skips_runs_locked_elsewhere(tiny_config: Config, tmp_path: Path):
    grid = {"seed": [0, 1]}
    spec = {"base": identity(tiny_config.to_dict()), "grid": grid, "mode": "runs"}
    folder = sweep_dir(tmp_path, tiny_config.name, spec)
    held = RunFolder.for_config(with_overrides(tiny_config, {"seed": 1}), folder).try_lock()
    try:
        _, outcomes = sweep(tiny_config, grid, tmp_path)
    finally:
        held.release()
    assert sorted(o.status for o in outcomes) == ["completed", "locked"]
    _, again = sweep(tiny_config, grid, tmp_path)
    assert sorted(o.status for o in again) == ["completed", "skipped"]


# --- divergence -------------------------------------------------------------------------------------------------------


# With the seed's 2-hidden-layer MLP, Adam at lr=1e3 only blows the losses up to ~1e23 (finite: ReLUs die and Adam's
# step is bounded by lr), which the engine does not call diverged; four hidden layers overflow to inf in epoch 1.
EXPLODES = ["--set", "model.hidden_sizes=[32,32,32,32]"]


def test_lr_1e3_diverges_cleanly_and_the_sweep_goes_on(tmp_path: Path):
    grid = ["--grid", "train.optimizer.lr=0.001,1000"]  # one stacked model: the diverged replica leaves the stack
    result = invoke("sweep", SEED_CONFIG, *TINY, *EXPLODES, *grid, "--seeds", "0,1", "--runs-dir", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    assert "2 completed, 2 diverged" in result.output
    for folder in find_runs([tmp_path]):
        history, info = folder.read_history(), folder.done_info()
        if history["lr"].iloc[0] == 1000:
            assert folder.status == "diverged" and info["stop_reason"] == "diverged"
            assert info["stop_epoch"] == info["epochs"] == len(history) == 1
            assert not math.isfinite(history["train_loss"].iloc[-1])
            assert list(folder.read_metrics()["model"]) == ["raw", "ema"]
        else:
            assert folder.status == "completed" and len(history) > 1
        assert not (folder.path / CHECKPOINT).exists()
    report = invoke("report", "--runs-dir", tmp_path)
    assert "Traceback" not in report.output, report.output


def test_a_diverged_run_alone_and_its_rerun(tmp_path: Path):
    args = ["run", SEED_CONFIG, *TINY, *EXPLODES, "--set", "train.optimizer.lr=1000", "--runs-dir", tmp_path, "-q"]
    result = invoke(*args, "--checkpoint-every", "1")
    assert result.exit_code == 0, result.output
    assert "diverged: diverged after 1 epochs" in flat(result.output)
    (folder,) = find_runs([tmp_path])
    assert folder.status == "diverged"
    assert "Already finished" in invoke(*args).output  # a diverged run is finished: not retried


# --- bad input, bad disks, hostile names ------------------------------------------------------------------------------


def test_resume_refuses_what_it_cannot_do(tmp_path: Path):
    assert invoke("run", SEED_CONFIG, *TINY, "--runs-dir", tmp_path, "-q").exit_code == 0
    (done,) = find_runs([tmp_path])
    cases = {
        "both": (["run", SEED_CONFIG, "--resume", done.path], 2, "not both"),
        "--set": (["run", "--resume", done.path, "--set", "seed=3"], 2, "--set"),
        "not a run": (["run", "--resume", tmp_path], 2, "not a run folder"),  # bad input (exit codes: errors.py)
    }
    for name, (args, code, needle) in cases.items():
        result = invoke(*args)
        assert result.exit_code == code and needle in result.output, (name, result.output)
        assert len(result.output.strip().splitlines()) == 1, (name, result.output)
    assert "Already finished" in invoke("run", "--resume", done.path).output

    (done.path / "DONE").unlink()
    result = invoke("run", "--resume", done.path)
    assert result.exit_code == 2 and "no checkpoint.pt" in result.output  # nothing to resume: bad input
    (done.path / CHECKPOINT).write_bytes(b"not a checkpoint")
    result = invoke("run", "--resume", done.path)
    assert result.exit_code == 3 and "unreadable checkpoint" in result.output
    # re-running the config restarts a run whose checkpoint is unusable
    assert invoke("run", done.path / "config.yaml", "--runs-dir", tmp_path, "-q").exit_code == 0
    assert done.status == "completed"


def test_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from emabench.runs import atomic

    assert invoke("run", SEED_CONFIG, *TINY, "--runs-dir", tmp_path, "-q").exit_code == 0
    (folder,) = find_runs([tmp_path])
    before = (folder.path / "history.csv").read_bytes()

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "replace", no_space)
    with pytest.raises(RunError, match="No space left"):
        folder.write_history([{"epoch": 1}])
    assert (folder.path / "history.csv").read_bytes() == before
    assert not list(folder.path.glob(".*.tmp"))
    result = invoke("run", SEED_CONFIG, *TINY, "--runs-dir", tmp_path, "-q", "--force")
    assert result.exit_code == 3 and "No space left" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_report_skips_and_names_incomplete_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    args = ["sweep", SEED_CONFIG, "--seeds", "0,1", *TINY, *LONG, "--runs-dir", tmp_path, "-q"]
    with monkeypatch.context() as patch:
        interrupt_after(patch, epoch=2)
        assert invoke(*args, "--grid", "train.optimizer.lr=0.002").exit_code == 130
    assert invoke(*args).exit_code == 0
    result = invoke("report", "--runs-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "interrupted" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("name", ["../escape", "a/b", "/abs", "..", ".hidden", "a\x00b", "x" * 65])
def test_hostile_run_names_are_refused(tmp_path: Path, name: str):
    runs_dir = tmp_path / "runs"
    result = invoke("run", SEED_CONFIG, *TINY, "--set", f"name={name!r}", "--runs-dir", runs_dir)
    assert result.exit_code == 2 and "name" in result.output
    assert list(tmp_path.iterdir()) == []


def test_everything_lands_inside_runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    assert invoke("run", SEED_CONFIG, *TINY, "--runs-dir", "sub/../runs", "-q").exit_code == 0
    assert invoke("sweep", SEED_CONFIG, "--seeds", "0,1", *TINY, "--runs-dir", "runs", "-q").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "sub"]
    assert list((tmp_path / "sub").iterdir()) == []
    assert len(find_runs([tmp_path / "runs"])) == 3
    with pytest.raises(RunError, match="outside"):
        inside(tmp_path / "runs" / ".." / "elsewhere", tmp_path / "runs")


def test_safe_name_never_makes_a_path():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.text())
    def check(text: str) -> None:
        name = safe_name(text)
        assert name and len(name) <= 80 and "/" not in name and "\x00" not in name
        assert not name.startswith(".") and name not in (".", "..")
        assert Path(name).name == name

    check()


def test_config_error_names_the_key(tmp_path: Path):
    with pytest.raises(ConfigError, match="name"):
        load_config(SEED_CONFIG, ["name=../x"])


def test_stop_request_defers_then_aborts():
    notices: list[int] = []
    stop = StopRequest(notice=lambda: notices.append(1))
    with stop.installed():
        assert signal.getsignal(signal.SIGINT) == stop.handle
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.is_set() and notices == [1]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_lr_1e3_on_the_seed_architecture_is_marked_diverged(tmp_path: Path):
    """Adam at lr=1e3 on the seed MLP blows the loss up to ~1e20 without reaching inf: diverged_above catches it."""
    result = invoke("run", SEED_CONFIG, *TINY, "--set", "train.optimizer.lr=1000", "--runs-dir", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    (folder,) = find_runs([tmp_path])
    assert folder.status == "diverged" and folder.done_info()["stop_reason"] == "diverged"
    assert folder.read_history()["train_loss"].iloc[-1] > 1e6
