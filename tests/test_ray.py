"""``emabench sweep --engine ray``: without Ray a one-line refusal (fast); with Ray (``pip install 'emabench[ray]'``)
the same results as the local engines, re-runs that skip, a stop that checkpoints (slow: a local Ray instance takes
seconds to start), and on a real two-node cluster started here (tests/raycluster.py): a driver whose runs folder no
worker can see, a node killed mid-sweep, a task that raises. What a task sends and the driver writes is tested
without Ray in tests/test_ray_wire.py."""

from __future__ import annotations

import contextlib
import json
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
from emabench.config import Config, with_overrides
from emabench.runs.folder import find_runs
from emabench.runs.layout import CHECKPOINT
from emabench.runs.sweep import sweep
from emabench.runs.unit import RunOutcome

from .conftest import SEED_CONFIG, TINY_SETS

cli = CliRunner()
TINY = [arg for s in [*TINY_SETS, "device=cpu"] for arg in ("--set", s)]
# betas the tiny runs reach: four different runs (betas they never reach would give two, each trained once)
SWEEP = ["--beta", "0.5,0.7", "--seeds", "0,1", *TINY, "--jobs", "2", "-q"]
GRID = {"ema.beta": [0.9, 0.99], "seed": [0, 1]}


def invoke(*args: object):
    return cli.invoke(app, [str(a) for a in args])


def assert_same_histories(a: Path, b: Path) -> None:
    runs_a, runs_b = find_runs([a]), find_runs([b])
    assert [r.name for r in runs_a] == [r.name for r in runs_b] and len(runs_a) == 4
    for x, y in zip(runs_a, runs_b):
        pd.testing.assert_frame_equal(x.read_history(), y.read_history(), atol=1e-6, rtol=0)


def test_engine_ray_without_ray_is_refused_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    result = invoke("sweep", SEED_CONFIG, *SWEEP, "--engine", "ray", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert result.output.strip() == "error: --engine ray needs Ray: pip install 'emabench[ray]'"
    assert not (tmp_path / "runs").exists()


def test_sweep_help_mentions_ray_and_its_address():
    text = " ".join(invoke("sweep", "--help").output.split())
    assert "ray:" in text and "RAY_ADDRESS" in text


# --- with Ray -------------------------------------------------------------------------------------------------------


@pytest.fixture
def local_ray(monkeypatch):
    """Ray installed, and a local instance (started and stopped by each sweep) rather than a cluster."""
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


@pytest.mark.slow
def test_ray_sweep_matches_vectorized_and_reruns_skip(tmp_path, local_ray):
    ray_run = invoke("sweep", SEED_CONFIG, *SWEEP, "--engine", "ray", "--runs-dir", tmp_path / "ray")
    assert ray_run.exit_code == 0, ray_run.output
    assert "(4 completed)" in ray_run.output
    local = invoke("sweep", SEED_CONFIG, *SWEEP, "--engine", "vectorized", "--runs-dir", tmp_path / "local")
    assert local.exit_code == 0, local.output
    assert_same_histories(tmp_path / "ray", tmp_path / "local")
    for run in find_runs([tmp_path / "ray"]):  # trained once: one row per epoch, finished, nothing left over
        history = run.read_history()
        assert run.is_done and history["epoch"].is_unique and not run.has_checkpoint
    again = invoke("sweep", SEED_CONFIG, *SWEEP, "--engine", "ray", "--runs-dir", tmp_path / "ray")
    assert again.exit_code == 0 and "(4 skipped)" in again.output, again.output


@pytest.mark.slow
def test_ray_stop_checkpoints_running_tasks_and_a_rerun_continues_them(tmp_path, local_ray, tiny_config: Config):
    base = with_overrides(tiny_config, {"train.max_epochs": 1000, "train.early_stopping.patience": None})

    def training_started() -> bool:  # asked by the driver while the tasks run: both tasks are training
        return len(list((tmp_path / "ray").rglob("history.csv"))) == 4

    _, stopped = sweep(base, GRID, tmp_path / "ray", jobs=2, engine="ray", stop=training_started)
    assert sorted(o.status for o in stopped) == ["interrupted"] * 4
    assert all(o.folder.has_checkpoint and 0 < o.epochs < 1000 for o in stopped)

    _, resumed = sweep(base, GRID, tmp_path / "ray", jobs=2, engine="ray")
    assert sorted(o.status for o in resumed) == ["completed"] * 4
    assert all(o.resumed_from == s.epochs for o, s in zip(sorted(resumed, key=_name), sorted(stopped, key=_name)))
    sweep(base, GRID, tmp_path / "local", jobs=1, engine="vectorized")
    assert_same_histories(tmp_path / "ray", tmp_path / "local")


def _name(outcome: RunOutcome) -> str:
    return outcome.folder.name


# --- devices (fast) ---------------------------------------------------------------------------------------------------


def test_device_rules_for_ray_tasks(tiny_config: Config):
    from emabench.errors import ConfigError
    from emabench.runs.ray_cluster import RayOptions, check_devices
    from emabench.runs.ray_task import _placed

    with pytest.raises(ConfigError, match="--gpus-per-task > 0"):
        check_devices({"cuda"}, RayOptions())
    with pytest.raises(ConfigError, match="GPUs would sit idle"):
        check_devices({"cpu"}, RayOptions(gpus_per_task=0.25))
    check_devices({"auto"}, RayOptions(gpus_per_task=0.25))
    check_devices({"auto", "cpu"}, RayOptions())
    auto = with_overrides(tiny_config, {"device": "auto"})
    assert _placed(auto, None).device == "cpu"  # no GPU assigned: never one Ray did not give
    assert _placed(auto, "cuda").device == "cuda"  # the GPU Ray assigned (CUDA_VISIBLE_DEVICES)
    assert _placed(tiny_config, "cuda") is tiny_config  # an explicit device stays
    assert auto.device == "auto"  # the run's config (and so its folder) is unchanged


# --- a real two-node cluster (slow) -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """A head and a second node on this machine (tests/raycluster.py), stopped by the PIDs they started."""
    pytest.importorskip("ray")
    from .raycluster import LocalCluster

    running = LocalCluster()
    try:
        yield running.start()
    finally:
        running.stop()


LONG = {"train.max_epochs": 300, "train.early_stopping.patience": None}  # the seed study's data: ~5 s a unit
LONG_SETS = [arg for k, v in {**LONG, "train.early_stopping.patience": "null"}.items() for arg in ("--set", f"{k}={v}")]
CLUSTER_SWEEP = ["--beta", "0.5,0.7", "--seeds", "0,1", "--set", "device=cpu", "--jobs", "2", "--engine", "ray"]


def driver(cluster, args: list[str], tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    """``emabench sweep ARGS`` as a separate driver process, its runs folder private to it where the machine allows
    (tests/raycluster.py); returns the process, where it can be watched while it runs, and where its runs land."""
    from .raycluster import can_unshare, isolated_driver

    private, copy = tmp_path / "private", tmp_path / "runs"
    private.mkdir()
    copy.mkdir()
    isolated = can_unshare()
    if isolated:
        command = isolated_driver(["sweep", str(SEED_CONFIG), *args], private, copy)
    else:  # no private namespace here: the same sweep, its folder merely unused by the workers
        command = [sys.executable, "-m", "emabench", "sweep", str(SEED_CONFIG), *args, "--runs-dir", str(copy)]
    env = os.environ | cluster.driver_env
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watch = Path(f"/proc/{process.pid}/root") / private.relative_to("/") if isolated else copy
    return process, watch, copy


@pytest.mark.slow
def test_cluster_sweep_writes_only_on_the_driver_and_matches_vectorized(cluster, tmp_path):
    process, _, runs = driver(cluster, [*CLUSTER_SWEEP, *TINY, "-q"], tmp_path)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, (out, err)
    assert "(4 completed)" in out and "2 task(s), 0 retried" in " ".join(out.split()), out
    assert list((tmp_path / "private").iterdir()) == []  # outside the driver, its runs folder was never written
    local = invoke("sweep", SEED_CONFIG, *SWEEP, "--engine", "vectorized", "--runs-dir", tmp_path / "local")
    assert local.exit_code == 0, local.output
    assert_same_histories(runs, tmp_path / "local")
    infos = [run.done_info() for run in find_runs([runs])]
    assert len({info["ray_node"] for info in infos}) == 2  # both nodes trained a unit
    assert all(info["ray_attempt"] == 1 and not run.has_checkpoint for info, run in zip(infos, find_runs([runs])))


def checkpoint_epochs(folder: Path) -> dict[str, int]:
    """The checkpoint epoch of every run under ``folder`` that has one (as the driver has written it)."""
    epochs = {}
    for path in folder.glob("*/*/checkpoint.pt"):
        with contextlib.suppress(Exception):  # replaced meanwhile (atomic rename): read it next time
            epochs[path.parent.name] = int(torch.load(path, weights_only=True)["epoch"])
    return epochs


@pytest.mark.slow
def test_losing_a_node_mid_sweep_costs_only_the_epochs_since_its_checkpoint(cluster, tmp_path):
    args = [*CLUSTER_SWEEP, *LONG_SETS, "--checkpoint-every", "20", "-q"]
    process, watch, runs = driver(cluster, args, tmp_path)
    deadline = time.monotonic() + 120
    while len(seen := checkpoint_epochs(watch)) < 4:  # both tasks (one per node) have checkpointed
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    cluster.nodes["node2"].kill()
    try:
        out, err = process.communicate(timeout=300)
    finally:
        cluster.start_node("node2", f"--address={cluster.address}")  # for the tests after this one
    assert process.returncode == 0, (out, err)
    assert "(4 completed; 2 continued from a checkpoint)" in out, out
    assert "2 task(s), 1 retried" in " ".join(out.split()), out

    _, straight = sweep(with_overrides(seed_on_cpu(), LONG), GRID, tmp_path / "straight", engine="vectorized")
    assert_same_histories(runs, tmp_path / "straight")  # nothing lost, nothing trained twice into the history
    infos = {run.name: run.done_info() for run in find_runs([runs])}
    lost = {name for name, info in infos.items() if info["ray_attempt"] == 2}
    assert len(lost) == 2  # the unit on the lost node, retried once on the head
    for name, info in infos.items():
        assert info["epochs"] == 300 and info["stop_epoch"] == 300
        if name in lost:  # continued from the last checkpoint the driver had received, not from scratch
            assert info["resumed_from_epoch"] >= seen[name] > 0 and info["resumed_from_epoch"] % 20 == 0
        else:
            assert info["resumed_from_epoch"] == 0


def seed_on_cpu() -> Config:
    from emabench.config import load_config

    return load_config(SEED_CONFIG, ["device=cpu"])


@pytest.mark.slow
def test_a_task_that_raises_is_recorded_failed_and_the_rest_complete(cluster, tmp_path):
    runs = tmp_path / "ray"
    command = [sys.executable, "-m", "emabench", "sweep", str(SEED_CONFIG), *CLUSTER_SWEEP, *LONG_SETS, "-q"]
    command += ["--runs-dir", str(runs)]
    env = os.environ | cluster.driver_env
    first = subprocess.Popen(
        [*command, "--checkpoint-every", "5"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while len(checkpoint_epochs(runs)) < 4:
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)  # Ctrl-C: every task checkpoints its runs and stops
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130 and b"4 interrupted" in err, err
    broken = next(run for run in find_runs([runs]))
    state = torch.load(broken.path / CHECKPOINT, weights_only=True)
    state["model"]["values"]["0.weight"] = state["model"]["values"]["0.weight"][:, :-1]  # a layer of the wrong shape
    torch.save(state, broken.path / CHECKPOINT)

    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "2 run(s) failed" in result.stderr and "cannot resume from the checkpoint" in result.stderr, result.stderr
    statuses = {run.name: run.status for run in find_runs([runs])}
    assert sorted(statuses.values()) == ["completed", "completed", "failed", "failed"]  # its unit, and no other
    failure = json.loads((broken.path / "FAILED").read_text())
    assert failure["status"] == "failed" and "cannot resume from the checkpoint" in failure["error"]
    assert failure["attempts"] == 1  # an error is not retried: it would raise again
    assert all(run.has_checkpoint for run in find_runs([runs]) if run.status == "failed")

    sweep(with_overrides(seed_on_cpu(), LONG), GRID, tmp_path / "straight", engine="vectorized")
    straight = {run.name: run for run in find_runs([tmp_path / "straight"])}
    for run in find_runs([runs]):  # the other unit completed, as if nothing had failed
        if run.status == "completed":
            pd.testing.assert_frame_equal(run.read_history(), straight[run.name].read_history(), atol=1e-6, rtol=0)

    (broken.path / CHECKPOINT).unlink()  # the user removes what cannot be read: the next run starts it afresh
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "2 completed, 2 skipped" in again.stdout, (again.stdout, again.stderr)
    for run in find_runs([runs]):  # all finished; stacked alone now, so equal in epochs, not to the last bit
        assert run.status == "completed" and list(run.read_history()["epoch"]) == list(range(1, 301))
