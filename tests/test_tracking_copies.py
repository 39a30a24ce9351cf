"""The copies read back with the trackers' own readers — MLflow's client (``search_runs``, ``get_metric_history``)
and TensorBoard's ``EventAccumulator`` — and compared with ``history.csv``: every value, every step. Skipped where
the ``mlflow`` / ``tensorboard`` extras are not installed (``make test`` installs them when torch stays as it is)."""

from __future__ import annotations

import importlib.util
import math
import shutil
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from emabench.cli import app
from emabench.config import Config, with_overrides
from emabench.runs.folder import RunFolder, find_runs
from emabench.runs.layout import MLFLOW_DB
from emabench.runs.sweep import sweep
from emabench.tracking import tracked
from emabench.tracking.names import Naming
from tests.conftest import TINY_SETS

HAVE_MLFLOW = importlib.util.find_spec("mlflow") is not None
HAVE_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
needs_mlflow = pytest.mark.skipif(not HAVE_MLFLOW, reason="the mlflow extra is not installed")
needs_tensorboard = pytest.mark.skipif(not HAVE_TENSORBOARD, reason="the tensorboard extra is not installed")
pytestmark = [
    pytest.mark.skipif(not (HAVE_MLFLOW or HAVE_TENSORBOARD), reason="no tracking extra installed"),
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated"),  # MLflow's own SQLAlchemy use
]

runner = CliRunner()
SETS = sum((["--set", s] for s in TINY_SETS), [])


@pytest.fixture(scope="session", autouse=True)
def _own_store() -> Iterator[None]:
    """Never a store of the user's (the default one inside each test's runs folder), and no MLflow telemetry."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
            patch.delenv(name, raising=False)
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        yield


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow database with its tables and no experiment, made once (MLflow's migrations take seconds)."""
    from mlflow import MlflowClient

    from emabench.tracking.mlflow_store import _fast_sqlite

    path = tmp_path_factory.mktemp("template") / MLFLOW_DB
    _fast_sqlite(str(path))
    MlflowClient(f"sqlite:///{path}").search_experiments()
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def runs(tmp_path: Path, empty_store: Path) -> Path:
    """A runs folder whose default MLflow store has its tables already."""
    folder = tmp_path / "runs"
    folder.mkdir()
    shutil.copyfile(empty_store, folder / MLFLOW_DB)
    return folder


@pytest.fixture(scope="module")
def tracked_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep of 4 runs in 2 stacks trained by 2 worker processes, copied to what is installed, and reported."""
    root = tmp_path_factory.mktemp("tracked")
    track = (["--track", "mlflow"] if HAVE_MLFLOW else []) + (["--track", "tensorboard"] if HAVE_TENSORBOARD else [])
    args = ["sweep", *SETS, "--beta", "0.5,0.9", "--seeds", "0-1", "--jobs", "2", "--runs-dir", str(root), "--quiet"]
    result = runner.invoke(app, [*args, *track])
    assert result.exit_code == 0, result.output
    if HAVE_MLFLOW:
        (sweep_folder,) = root.glob("sweep-*")
        result = runner.invoke(app, ["report", str(sweep_folder), "--out", str(root / "report"), "--track", "mlflow"])
        assert result.exit_code == 0, result.output
    return root


def client_of(runs_dir: Path) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{runs_dir.absolute() / MLFLOW_DB}")


def mlflow_runs(runs_dir: Path, kind: str = "run") -> list[Any]:
    client = client_of(runs_dir)
    experiment = client.get_experiment_by_name("emabench")
    return list(client.search_runs([experiment.experiment_id], f"tags.`emabench.kind` = '{kind}'"))


def assert_metrics_are_the_history(runs_dir: Path, run: Any) -> None:
    """Every history column is a metric holding every epoch's value, at that epoch, once."""
    client, folder = client_of(runs_dir), RunFolder(run.data.tags["emabench.folder"])
    history = folder.read_history()
    columns = Naming.of(folder.read_config()).columns(history.columns)
    assert columns and set(run.data.metrics) >= {c.key for c in columns.values()}
    for name, column in columns.items():
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, column.key))
        assert logged == list(zip(history["epoch"].tolist(), history[name].tolist())), column.key


# --- MLflow --------------------------------------------------------------------------------------------------


@needs_mlflow
def test_a_sweep_is_a_parent_run_with_a_child_per_run(tracked_sweep: Path):
    (sweep_folder,) = tracked_sweep.glob("sweep-*")
    (parent,) = mlflow_runs(tracked_sweep, "sweep")
    children = mlflow_runs(tracked_sweep)
    folders = find_runs([sweep_folder])
    assert parent.info.run_name == sweep_folder.name and parent.info.status == "FINISHED"
    assert parent.data.params["grid.ema.beta"] == "[0.5, 0.9]" and parent.data.tags["emabench.runs.completed"] == "4"
    assert sorted(r.info.run_name for r in children) == sorted(f.name for f in folders)
    for run in children:
        folder = RunFolder(run.data.tags["emabench.folder"])
        config, done = folder.read_config(), folder.done_info()
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id and run.info.status == "FINISHED"
        assert run.data.tags["emabench.status"] == done["status"]
        assert run.data.tags["emabench.stop_reason"] == done["stop_reason"]
        assert run.data.params["ema.beta"] == str(config.ema.beta) and run.data.params["seed"] == str(config.seed)
        assert run.data.params["train.optimizer.lr"] == str(config.train.optimizer.lr)
        assert run.data.params["run_id"] == folder.name
        assert_metrics_are_the_history(tracked_sweep, run)


@needs_mlflow
def test_config_and_final_metrics_are_artifacts_as_written(tracked_sweep: Path, tmp_path: Path):
    client = client_of(tracked_sweep)
    for run in mlflow_runs(tracked_sweep):
        folder = Path(run.data.tags["emabench.folder"])
        assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"config.yaml", "metrics.csv"}
        for name in ("config.yaml", "metrics.csv"):
            copy = client.download_artifacts(run.info.run_id, name, str(tmp_path))
            assert Path(copy).read_bytes() == (folder / name).read_bytes()


@needs_mlflow
def test_the_report_is_on_the_sweep_run_and_its_verdicts_on_each_run(tracked_sweep: Path):
    client = client_of(tracked_sweep)
    (parent,) = mlflow_runs(tracked_sweep, "sweep")
    written = {p.name for p in (tracked_sweep / "report").iterdir()}
    assert {a.path.removeprefix("report/") for a in client.list_artifacts(parent.info.run_id, "report")} == written
    comparison = pd.read_csv(tracked_sweep / "report" / "comparison.csv")
    children = {r.data.tags["emabench.folder"]: r for r in mlflow_runs(tracked_sweep)}
    for row in comparison.to_dict("records"):
        name = f"{row['model']}/{row['selection']}/{row['metric']}"
        group = f"ema.beta {row['ema.beta']}"
        verdict = row["verdict"] if isinstance(row["verdict"], str) else None  # exploratory rows have none
        assert parent.data.tags.get(f"{group}/{name}/verdict") == verdict
        for number in ("diff_mean", "diff_ci_low", "diff_ci_high"):  # a NaN (too few pairs) is not logged
            logged = parent.data.metrics.get(f"{group}/{name}/{number}", math.nan)
            assert logged == pytest.approx(row[number], rel=1e-12, nan_ok=True)
        members = [r for r in children.values() if r.data.params["ema.beta"] == str(row["ema.beta"])]
        assert len(members) == 2 and all(r.data.tags.get(f"report/{name}/verdict") == verdict for r in members)
    primary = comparison.dropna(subset=["verdict"])
    assert len(primary) > 0  # the primary comparisons carry verdicts
    by_verdict = f"tags.`report/ema/final/mse/verdict` = '{primary['verdict'].iloc[0]}'"
    experiment = client.get_experiment_by_name("emabench").experiment_id
    assert client.search_runs([experiment], by_verdict)  # runs can be filtered by verdict


@needs_mlflow
def test_a_resumed_sweep_continues_the_same_mlflow_runs(tiny_config: Config, runs: Path):
    config = with_overrides(tiny_config, {"train.early_stopping.patience": None, "train.max_epochs": 8})
    asked = [0]

    def stop() -> bool:  # stops the stack a few epochs in
        asked[0] += 1
        return asked[0] > 4

    with tracked(["mlflow"], runs) as trackers:
        folder, outcomes = sweep(config, {"seed": [0, 1]}, runs, stop=stop, checkpoint_every=1)
    assert {o.status for o in outcomes} == {"interrupted"} and trackers.failure is None
    first = {r.info.run_name: r for r in mlflow_runs(runs)}
    assert {r.info.status for r in first.values()} == {"KILLED"}
    with tracked(["mlflow"], runs) as trackers:
        _, outcomes = sweep(config, {"seed": [0, 1]}, runs)
    assert {o.status for o in outcomes} == {"completed"} and {o.resumed_from for o in outcomes} != {0}
    again = {r.info.run_name: r for r in mlflow_runs(runs)}
    assert {n: r.info.run_id for n, r in again.items()} == {n: r.info.run_id for n, r in first.items()}
    assert len(mlflow_runs(runs, "sweep")) == 1
    for run in again.values():
        assert run.info.status == "FINISHED"
        assert_metrics_are_the_history(runs, run)  # epochs trained again after the checkpoint are not logged twice


@needs_mlflow
def test_runs_finished_untracked_are_copied_once_and_restarted_runs_replace_their_copy(tiny_config: Config, runs: Path):
    folder, _ = sweep(tiny_config, {"seed": [0, 1]}, runs)  # not tracked
    with tracked(["mlflow"], runs):
        _, outcomes = sweep(tiny_config, {"seed": [0, 1]}, runs)
    assert {o.status for o in outcomes} == {"skipped"}
    copied = {r.info.run_name: r for r in mlflow_runs(runs)}
    assert sorted(copied) == sorted(f.name for f in find_runs([folder]))
    for run in copied.values():
        assert run.info.status == "FINISHED" and run.data.tags["emabench.history_sha256"]
        assert_metrics_are_the_history(runs, run)
    with tracked(["mlflow"], runs):  # whole already: nothing is sent again
        sweep(tiny_config, {"seed": [0, 1]}, runs)
    assert {r.info.run_id: r.info.end_time for r in mlflow_runs(runs)} == {
        r.info.run_id: r.info.end_time for r in copied.values()
    }
    with tracked(["mlflow"], runs):
        sweep(tiny_config, {"seed": [0, 1]}, runs, force=True)  # trained again from scratch
    client, replaced = client_of(runs), mlflow_runs(runs)
    assert len(replaced) == 2 and not {r.info.run_id for r in replaced} & {r.info.run_id for r in copied.values()}
    assert all(client.get_run(r.info.run_id).info.lifecycle_stage == "deleted" for r in copied.values())


@needs_mlflow
def test_one_run_is_a_run_of_its_own_with_its_figures(runs: Path):
    result = runner.invoke(app, ["run", *SETS, "--runs-dir", str(runs), "--track", "mlflow"])
    assert result.exit_code == 0, result.output
    (run,) = mlflow_runs(runs)
    assert "mlflow.parentRunId" not in run.data.tags and run.info.status == "FINISHED"
    artifacts = {a.path for a in client_of(runs).list_artifacts(run.info.run_id)}
    assert artifacts == {"config.yaml", "metrics.csv", "loss.png", "r2.png"}  # figures drawn after the table
    assert_metrics_are_the_history(runs, run)


# --- MLflow out of reach ----------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@needs_mlflow
@pytest.mark.parametrize("store", ["server", "not a database", "default, not a database", "default, a folder"])
def test_a_store_that_cannot_be_used_is_refused_before_training(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    runs = tmp_path / "runs"
    if store == "server":
        uri = f"http://127.0.0.1:{_closed_port()}"
    elif store == "not a database":
        (tmp_path / "broken.db").write_bytes(b"these bytes are not a SQLite database" * 100)
        uri = f"sqlite:///{tmp_path / 'broken.db'}"
    else:  # the default store, checked without MLflow
        runs.mkdir()
        if store.endswith("folder"):
            (runs / MLFLOW_DB).mkdir()
        else:
            (runs / MLFLOW_DB).write_bytes(b"these bytes are not a SQLite database")
        uri = f"sqlite:///{runs.absolute() / MLFLOW_DB}"
    if not store.startswith("default"):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = runner.invoke(app, ["sweep", *SETS, "--seeds", "0-1", "--runs-dir", str(runs), "--track", "mlflow"])
    assert result.exit_code == 2, result.output
    assert f"--track mlflow: the tracking store {uri} cannot be used" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not find_runs([tmp_path])


@needs_mlflow
def test_a_store_failing_mid_run_exits_3_with_every_run_folder_whole(runs: Path, monkeypatch: pytest.MonkeyPatch):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise MlflowException("the store refused the write")

    monkeypatch.setattr(MlflowClient, "set_terminated", refuse)
    result = runner.invoke(app, ["sweep", *SETS, "--seeds", "0-2", "--runs-dir", str(runs), "--track", "mlflow"])
    assert result.exit_code == 3, result.output
    assert "tracking stopped: MLflow (sqlite:///" in result.output and "the store refused the write" in result.output
    folders = find_runs([runs])
    assert len(folders) == 3 and all(f.is_done and not f.problems() for f in folders)


# --- TensorBoard -----------------------------------------------------------------------------------------------


def tensorboard_scalars(folder: RunFolder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a run's event folders, by history column, as TensorBoard reads it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    naming = Naming.of(folder.read_config())
    scalars: dict[str, list[tuple[int, float]]] = {}
    for name, column in naming.columns(folder.read_history().columns).items():
        where = folder.tensorboard_dir if column.model is None else folder.tensorboard_dir / column.model
        events = EventAccumulator(str(where))
        events.Reload()
        scalars[name] = [(e.step, e.value) for e in events.Scalars(column.metric)]
    return scalars


def assert_events_are_the_history(folder: RunFolder) -> None:
    history = folder.read_history()
    for name, logged in tensorboard_scalars(folder).items():
        expected = [(int(e), float(np.float32(v))) for e, v in zip(history["epoch"], history[name])]
        assert logged == expected, name  # TensorBoard keeps 32-bit floats


@needs_tensorboard
def test_tensorboard_events_are_the_history_with_raw_and_ema_in_one_chart(tracked_sweep: Path):
    folders = find_runs([tracked_sweep])
    assert len(folders) == 4
    for folder in folders:
        assert_events_are_the_history(folder)
        raw, ema = (sorted(p.name for p in (folder.tensorboard_dir / m).iterdir()) for m in ("raw", "ema"))
        assert raw and ema  # one event folder per model: the same tag of each is one chart
    assert not any(".mlflow-artifacts" in str(f.path) for f in folders)  # an artifact's config.yaml is no run


@needs_tensorboard
def test_tensorboard_events_of_a_resumed_run_hold_each_epoch_once(tiny_config: Config, tmp_path: Path):
    config = with_overrides(tiny_config, {"train.early_stopping.patience": None, "train.max_epochs": 8})
    asked = [0]

    def stop() -> bool:
        asked[0] += 1
        return asked[0] > 4

    with tracked(["tensorboard"], tmp_path):
        folder, _ = sweep(config, {"seed": [0, 1]}, tmp_path, stop=stop, checkpoint_every=1)
        sweep(config, {"seed": [0, 1]}, tmp_path)
    for run in find_runs([folder]):
        assert len(run.read_history()) == 8
        assert_events_are_the_history(run)


@needs_mlflow
@pytest.mark.slow
def test_a_ray_sweep_is_copied_by_the_driver_that_writes_its_folders(tiny_config: Config, runs: Path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a local Ray, started and stopped by the sweep
    config = with_overrides(tiny_config, {"track": ["mlflow", "tensorboard"] if HAVE_TENSORBOARD else ["mlflow"]})
    args = ["sweep", *SETS, "--beta", "0.5,0.9", "--seeds", "0-1", "--engine", "ray", "--jobs", "2"]
    result = runner.invoke(app, [*args, "--runs-dir", str(runs), "--set", f"track={config.track}"])
    assert result.exit_code == 0, result.output
    children = mlflow_runs(runs)
    assert len(children) == 4 and {r.info.status for r in children} == {"FINISHED"}
    for run in children:
        assert_metrics_are_the_history(runs, run)
        if HAVE_TENSORBOARD:
            assert_events_are_the_history(RunFolder(run.data.tags["emabench.folder"]))


@needs_mlflow
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_run_refused_after_the_check_leaves_no_store_behind(tmp_path: Path):
    result = runner.invoke(app, ["run", *SETS, "--set", "device=cuda", "--runs-dir", str(tmp_path), "--track",
                                 "mlflow"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert not any(tmp_path.iterdir())  # no mlflow.db, no artifacts folder: nothing written
