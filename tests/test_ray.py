"""``emabench sweep --engine ray``: without Ray a one-line refusal (fast); with Ray (``pip install 'emabench[ray]'``)
the same results as the local engines, re-runs that skip, and a stop that checkpoints (slow: a local Ray instance
takes seconds to start)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from emabench.cli import app
from emabench.config import Config, with_overrides
from emabench.runs.folder import find_runs
from emabench.runs.sweep import sweep
from emabench.runs.unit import RunOutcome

from .conftest import SEED_CONFIG, TINY_SETS

cli = CliRunner()
TINY = [arg for s in [*TINY_SETS, "device=cpu"] for arg in ("--set", s)]
SWEEP = ["--beta", "0.9,0.99", "--seeds", "0,1", *TINY, "--jobs", "2", "-q"]
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

    def training_started() -> bool:  # asked by the driver while the tasks run
        return any((tmp_path / "ray").rglob("history.csv"))

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
