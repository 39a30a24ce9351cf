"""The exit codes, through the CLI. 2 = bad input (what the user gave cannot be used), 3 = a run
or I/O failure (writing results, a damaged run folder, a run held elsewhere), 130 = interrupted — every refusal
one line, no traceback; every command's --help states the codes (see :mod:`emabench.errors` for the rule)."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emabench.cli import app
from emabench.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_RUN_ERROR
from emabench.runs.folder import find_runs

from .conftest import SEED_CONFIG, TINY_SETS

runner = CliRunner()
TINY = [arg for s in TINY_SETS for arg in ("--set", s)] + ["--set", "device=cpu"]
COMMANDS = ["run", "sweep", "report", "show", "ls", "configs", "bench"]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def one_line(result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    return result.output


def last_line(result, code: int) -> str:
    """For commands that print before they fail (show prints the config, bench its table): the error line."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A runs folder with one finished tiny run (shared: the refusals below only read it)."""
    runs = tmp_path_factory.mktemp("runs")
    assert invoke("run", SEED_CONFIG, *TINY, "--runs-dir", runs, "-q").exit_code == 0
    return runs


def bad_inputs(tmp: Path, runs: Path) -> dict[str, tuple[list[object], str]]:
    return {
        "config not found": (["run", tmp / "nope.yaml"], "config file not found"),
        "config is a directory": (["run", tmp], "is a directory"),
        "--set unknown key": (["run", "--set", "ema.betta=0.9"], "unknown key 'betta'"),
        "--set bad value": (["run", "--set", "seed=abc"], "--set 'seed=abc'"),
        "--grid unknown key": (["sweep", "--grid", "train.lrr=1,2"], "--grid"),
        "--beta out of range": (["sweep", "--beta", "1.5"], "--beta"),
        "--engine unknown": (["sweep", "--engine", "warp"], "--engine"),
        "--resume not a run": (["run", "--resume", tmp / "empty"], "not a run folder"),
        "--resume and a config": (["run", SEED_CONFIG, "--resume", tmp / "empty"], "not both"),
        "report missing folder": (["report", tmp / "missing"], "no such folder"),
        "report nothing finished": (["report", tmp / "empty"], "no finished runs"),
        "report --by unknown": (["report", runs, "--by", "colour", "--out", tmp], "--by"),
        "report --format unknown": (["report", runs, "--format", "pdf"], "--format"),
        "show no such run": (["show", "nope", "--runs-dir", runs], "no such run"),
        "show missing runs dir": (["show", "nope", "--runs-dir", tmp / "missing"], "does not exist"),
        "ls missing folder": (["ls", tmp / "missing"], "no such folder"),
        "configs unknown name": (["configs", "nope"], "no shipped config 'nope'"),
        "bench unknown case": (["bench", "warp"], "unknown sub-benchmark"),
    }


CASES = list(bad_inputs(Path("/nonexistent"), Path("/nonexistent")))


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2(tmp_path, finished, case):
    (tmp_path / "empty").mkdir()
    args, needle = bad_inputs(tmp_path, finished)[case]
    assert needle in one_line(invoke(*args), EXIT_BAD_INPUT)


def test_a_run_without_a_checkpoint_to_resume_is_bad_input(tmp_path):
    assert invoke("run", SEED_CONFIG, *TINY, "--runs-dir", tmp_path, "-q").exit_code == 0
    (run,) = find_runs([tmp_path])
    (run.path / "DONE").unlink()
    assert "no checkpoint.pt" in one_line(invoke("run", "--resume", run.path), EXIT_BAD_INPUT)


def test_runs_that_cannot_be_written_exit_3(tmp_path):
    (tmp_path / "file").write_text("")
    output = one_line(invoke("run", SEED_CONFIG, *TINY, "--runs-dir", tmp_path / "file" / "runs"), EXIT_RUN_ERROR)
    assert "cannot create the folder" in output


def test_report_files_that_cannot_be_written_exit_3(tmp_path, finished):
    (tmp_path / "file").write_text("")
    output = one_line(invoke("report", finished, "--out", tmp_path / "file" / "out"), EXIT_RUN_ERROR)
    assert "cannot" in output


def test_a_damaged_run_folder_exits_3(tmp_path):
    assert invoke("run", SEED_CONFIG, *TINY, "--runs-dir", tmp_path, "-q").exit_code == 0
    (run,) = find_runs([tmp_path])
    (run.path / "DONE").write_text("{not json")
    assert "damaged, DONE is not emabench's (not JSON)" in last_line(invoke("show", run.path), EXIT_RUN_ERROR)
    listed = invoke("ls", tmp_path)  # ls lists it as damaged and exits 0
    assert listed.exit_code == 0 and "damaged" in listed.output
    (run.path / "DONE").unlink()
    (run.path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert "unreadable checkpoint" in one_line(invoke("run", "--resume", run.path), EXIT_RUN_ERROR)


def test_a_full_disk_exits_3(tmp_path, monkeypatch):
    from emabench.runs import atomic

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "replace", no_space)
    output = one_line(invoke("run", SEED_CONFIG, *TINY, "--runs-dir", tmp_path, "-q"), EXIT_RUN_ERROR)
    assert "No space left" in output


def test_bench_output_that_cannot_be_written_exits_3(tmp_path, monkeypatch):
    from emabench import bench

    monkeypatch.setattr(bench, "bench_run", lambda repeats: [bench.Row("run", "case", 1.0, 2.0, "s")])
    (tmp_path / "file").write_text("")
    output = one_line(invoke("bench", "run", "--out", tmp_path / "file" / "out"), EXIT_RUN_ERROR)
    assert "cannot create the folder" in output  # refused before measuring, not after


def test_an_interrupt_exits_130(tmp_path, monkeypatch):
    from emabench.runs import single

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(single, "run", interrupted)
    result = invoke("run", SEED_CONFIG, *TINY, "--runs-dir", tmp_path)
    assert result.exit_code == EXIT_INTERRUPTED and "interrupted" in result.output


def test_a_usage_error_typer_refuses_is_2_as_well():
    assert invoke("run", "--no-such-option").exit_code == EXIT_BAD_INPUT


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_every_help_states_the_exit_codes(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    assert "Exit codes: 0 done; 2 bad input" in text and "3 run or I/O error" in text and "130 interrupted" in text


def test_the_docs_state_the_exit_codes():
    readme = (Path(__file__).resolve().parents[1] / "docs" / "command-line.md").read_text(encoding="utf-8")
    assert "| 2 | bad input" in readme and "| 3 | run or I/O error" in readme and "| 130 | interrupted" in readme


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_an_unreadable_config_is_bad_input(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads any file (tests/test_yaml_bounds.py simulates the permission error)")
    path = tmp_path / "c.yaml"
    path.write_text(SEED_CONFIG.read_text())
    path.chmod(0)
    assert "cannot read the config" in one_line(invoke("run", path, "--runs-dir", tmp_path), EXIT_BAD_INPUT)


def test_an_empty_runs_dir_is_refused_by_run_too(tmp_path):
    """`--runs-dir ''` would otherwise train into the current folder."""
    result = CliRunner().invoke(app, ["run", "--runs-dir", "", "--set", "train.max_epochs=1", "-q"])
    assert result.exit_code == 2 and "--runs-dir: empty path" in result.output


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_a_step_warmup_longer_than_the_run_is_refused_before_anything_is_written(tmp_path, command):
    """Steps per epoch come from the data, so this is checked once the data is known — still before any folder."""
    warmup = ["--set", "train.lr_schedule.name=cosine", "--set", "train.lr_schedule.per=step"]
    warmup += ["--set", "train.lr_schedule.warmup=1000"]  # TINY: 3 epochs of a few steps
    output = last_line(invoke(command, SEED_CONFIG, *TINY, *warmup, "--runs-dir", tmp_path / "runs"), EXIT_BAD_INPUT)
    assert output.startswith("error: train.lr_schedule.warmup: 1000 is not below the run's ") and "steps" in output
    assert not (tmp_path / "runs").exists()
