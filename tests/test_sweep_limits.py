"""Sweeps that cannot hang or flood: a grid over the stated limit is refused up front,
the open files stay bounded whatever the sweep's size, no folder is left for a run that did not start, and options
that contradict each other are refused in one line naming both — never silently dropped or misread."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from emabench.cli import app
from emabench.config import Config
from emabench.errors import ConfigError, RunError
from emabench.runs import plan
from emabench.runs.folder import RunFolder, find_runs
from emabench.runs.layout import LOCK
from emabench.runs.sweep import sweep

from .conftest import SEED_CONFIG, TINY_SETS

cli = CliRunner()
TINY = [arg for s in [*TINY_SETS, "device=cpu"] for arg in ("--set", s)]


def invoke(*args: object):
    return cli.invoke(app, [str(a) for a in args])


def one_line_refusal(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    for needle in needles:
        assert needle in result.output, (needle, result.output)


# --- item 8: the size of a sweep --------------------------------------------------------------------------------------


def test_a_huge_seed_range_is_refused_at_once_and_writes_nothing(tmp_path: Path):
    result = invoke("sweep", SEED_CONFIG, "--seeds", "0-100000", "--runs-dir", tmp_path / "runs")
    one_line_refusal(result, "100001 seeds", "--max-runs 1000")
    # a range far beyond memory is counted, not listed
    result = invoke("sweep", SEED_CONFIG, "--seeds", "0-1000000000000", "--runs-dir", tmp_path / "runs")
    one_line_refusal(result, "1000000000001 seeds")
    assert not (tmp_path / "runs").exists()


def test_the_grid_is_counted_across_axes_and_max_runs_allows_more(tmp_path: Path):
    # beta 0.5 and 0.99 (0.9 and 0.99 would be the same run: TINY's warm-up decay stays below 0.9)
    args = ["sweep", SEED_CONFIG, "--beta", "0.5,0.99", "--seeds", "0,1", *TINY, "--runs-dir", tmp_path, "-q"]
    one_line_refusal(invoke(*args, "--max-runs", "3"), "4 runs (2 ema.beta × 2 seed)", "--max-runs 4")
    assert list(tmp_path.iterdir()) == []
    result = invoke(*args, "--max-runs", "4")
    assert result.exit_code == 0 and "(4 completed)" in result.output, result.output


def test_the_library_refuses_the_same_way(tiny_config: Config, tmp_path: Path):
    with pytest.raises(ConfigError, match="more than --max-runs 1000"):
        sweep(tiny_config, {"seed": range(1001)}, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_max_runs_default_is_the_libraries():
    text = " ".join(invoke("sweep", "--help").output.split())
    assert f"(default {plan.MAX_RUNS})" in text


def lock_files_open() -> int:
    """How many run locks this process holds: open descriptors on ``.lock`` files."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.basename(_target(fd)) == LOCK)


def _target(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:  # closed meanwhile (the listing's own descriptor)
        return ""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to count open files")
def test_open_files_stay_bounded_by_the_stack_limit(tiny_config: Config, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(plan, "MAX_STACK", 3)
    held: list[int] = []
    grid = {"seed": list(range(8))}
    _, outcomes = sweep(tiny_config, grid, tmp_path / "capped", on_epoch=lambda t, r: held.append(lock_files_open()))
    assert sorted(o.status for o in outcomes) == ["completed"] * 8
    assert held and max(held) == 3  # one unit of at most 3 runs at a time, not 8 locks at once
    monkeypatch.setattr(plan, "MAX_STACK", 256)
    sweep(tiny_config, grid, tmp_path / "whole")
    for a, b in zip(find_runs([tmp_path / "capped"]), find_runs([tmp_path / "whole"])):  # stacks are independent
        pd.testing.assert_frame_equal(a.read_history(), b.read_history(), atol=1e-6, rtol=0)


def test_the_stack_limit_follows_the_open_file_limit(monkeypatch):
    monkeypatch.setattr(plan.resource, "getrlimit", lambda _: (200, 4096))
    assert plan.stack_limit(1) == 200 - plan.RESERVED_FDS
    assert plan.stack_limit(4) == (200 - plan.RESERVED_FDS) // 4
    assert plan.stack_limit(1000) == 1
    monkeypatch.setattr(plan.resource, "getrlimit", lambda _: (plan.resource.RLIM_INFINITY,) * 2)
    assert plan.stack_limit(2) == plan.MAX_STACK
    units = plan.plan_stacks([_config(s) for s in range(600)], "auto", 1)
    assert [len(u) for u in units] == [200, 200, 200]  # cut evenly, each under the limit


def _config(seed: int) -> Config:
    from emabench.config import load_config

    return load_config(SEED_CONFIG, [f"seed={seed}", "device=cpu"])


def test_a_claim_that_fails_leaves_no_folder(tiny_config: Config, tmp_path: Path, monkeypatch):
    calls: list[int] = []
    real = RunFolder.try_lock

    def third_fails(self: RunFolder):
        calls.append(1)
        if len(calls) == 3:  # e.g. "Too many open files"
            raise RunError(f"{self.path}: cannot create the lock file (Too many open files)")
        return real(self)

    monkeypatch.setattr(RunFolder, "try_lock", third_fails)
    with pytest.raises(RunError, match="Too many open files"):
        sweep(tiny_config, {"seed": list(range(5))}, tmp_path)
    (sweep_folder,) = tmp_path.iterdir()
    assert [p.name for p in sweep_folder.iterdir()] == ["sweep.json"]  # the two locked runs left no folder


def test_a_stopped_sweep_leaves_no_folder_for_runs_it_did_not_start(tiny_config: Config, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(plan, "MAX_STACK", 2)
    finished: list[object] = []
    _, outcomes = sweep(
        tiny_config, {"seed": list(range(6))}, tmp_path, on_stack_done=finished.append, stop=lambda: bool(finished)
    )
    statuses = sorted(o.status for o in outcomes)
    assert statuses == ["completed"] * 2 + ["not_started"] * 4
    assert len(find_runs([tmp_path])) == 2
    (sweep_folder,) = tmp_path.iterdir()
    assert len([p for p in sweep_folder.iterdir() if p.is_dir()]) == 2


# --- item 9: options that contradict each other -----------------------------------------------------------------------

CONTRADICTIONS = {
    "--beta twice": (["--beta", "0.99,0.99"], ["--beta: 0.99 is listed twice"]),
    "--seeds twice": (["--seeds", "0-3,2"], ["--seeds: 2 is listed twice"]),
    "--grid value twice": (["--grid", "train.optimizer.lr=0.001,1e-3"], ["--grid train.optimizer.lr", "twice"]),
    "--beta and --grid ema.beta": (["--beta", "0.9", "--grid", "ema.beta=0.99"], ["--beta and --grid ema.beta"]),
    "--grid inside --grid": (
        ["--grid", "ema.beta=0.9", "--grid", "ema={beta: 0.99}"],
        ["--grid ema.beta and --grid ema"],
    ),
    "--seeds and --grid seed": (["--grid", "seed=1,2", "--seeds", "3"], ["--grid seed and --seeds both sweep seed"]),
    "--set of --seeds": (["--set", "seed=3", "--seeds", "0-1"], ["--set seed=3 and --seeds both set seed"]),
    "--set of --beta": (["--set", "ema.beta=0.9", "--beta", "0.99"], ["--set ema.beta=0.9 and --beta"]),
    "--set of a --grid key": (
        ["--set", "train.optimizer={lr: 0.1}", "--grid", "train.optimizer.lr=0.01,0.1"],
        ["--set train.optimizer={lr: 0.1} and --grid train.optimizer.lr"],
    ),
    "empty --runs-dir": (["--runs-dir", ""], ["--runs-dir: empty path"]),
    "--cpus-per-task without ray": (["--cpus-per-task", "2"], ["--cpus-per-task: only with --engine ray"]),
    "--gpus-per-task without ray": (["--gpus-per-task", "0.5", "--engine", "process"], ["--engine process"]),
}


@pytest.mark.parametrize("case", CONTRADICTIONS, ids=list(CONTRADICTIONS))
def test_contradicting_options_are_refused_naming_both(case: str, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty --runs-dir would mean here
    args, needles = CONTRADICTIONS[case]
    one_line_refusal(invoke("sweep", SEED_CONFIG, *TINY, *args), *needles)
    assert list(tmp_path.iterdir()) == []


def test_the_same_run_from_two_spellings_is_trained_once(tmp_path: Path):
    # 1 and 1.0 read as different YAML values, but validate to the same config: named before training, trained once
    result = invoke("sweep", SEED_CONFIG, *TINY, "--grid", "train.optimizer.lr=1,1.0", "--runs-dir", tmp_path)
    assert result.exit_code == 0, result.output
    named = "Trained once: train.optimizer.lr=1.0 is the same run as train.optimizer.lr=1 (1 point): the same config"
    assert named in " ".join(result.output.split())
    assert "(1 completed)" in result.output


def test_a_file_as_runs_dir_is_refused(tmp_path: Path):
    (tmp_path / "f").write_text("")
    one_line_refusal(invoke("sweep", SEED_CONFIG, *TINY, "--runs-dir", tmp_path / "f"), "is a file, not a folder")
