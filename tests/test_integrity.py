"""What a run folder says can be trusted: DONE records the sha256 of config.yaml, history.csv and metrics.csv as
written, and ``ls``, ``show`` and ``report`` list a folder whose files changed or went missing since as damaged
(saying what is wrong) while going on with the others; one config found in two folders with different histories
is a conflict, not silently one of them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emabench.cli import app
from emabench.runs.folder import find_runs
from emabench.runs.integrity import problems
from tests.conftest import SEED_CONFIG, TINY_SETS

TINY = [a for s in [*TINY_SETS, "device=cpu"] for a in ("--set", s)]


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def sweep_runs(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    assert invoke("sweep", SEED_CONFIG, *TINY, "--seeds", "0-5", "--runs-dir", runs, "-q").exit_code == 0
    return runs


@pytest.fixture
def runs(sweep_runs: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "runs"
    shutil.copytree(sweep_runs, copy)
    return copy


def damage(folder: Path, how: str) -> None:
    if how == "config edited":
        text = (folder / "config.yaml").read_text()
        (folder / "config.yaml").write_text(text.replace("beta: 0.999", "beta: 0.5"))
    elif how == "config deleted":
        (folder / "config.yaml").unlink()
    elif how == "history cut to its header":
        (folder / "history.csv").write_text((folder / "history.csv").read_text().splitlines()[0] + "\n")
    elif how == "garbage DONE":
        (folder / "DONE").write_text("garbage\n")
    elif how == "metrics damaged":
        (folder / "metrics.csv").write_text("x,y\n")


EXPECTED = {
    "config edited": "config.yaml changed after the run finished",
    "config deleted": "no config.yaml",
    "history cut to its header": "history.csv changed after the run finished",
    "garbage DONE": "DONE is not emabench's (not JSON)",
    "metrics damaged": "metrics.csv changed after the run finished",
}


def test_done_records_the_files_sha256(sweep_runs: Path) -> None:
    for folder in find_runs([sweep_runs]):
        recorded = folder.done_info()["sha256"]
        assert set(recorded) == {"config.yaml", "history.csv", "metrics.csv"}
        assert folder.done_info()["threads"] == 1
        assert problems(folder.path) == []


@pytest.mark.parametrize("how", list(EXPECTED))
def test_a_damaged_run_is_listed_and_skipped_and_the_rest_reported(runs: Path, how: str) -> None:
    folders = find_runs([runs])
    damage(folders[0].path, how)
    assert problems(folders[0].path) == [EXPECTED[how]]
    listed = invoke("ls", runs)
    assert listed.exit_code == 0, listed.output
    text = " ".join(listed.output.split())
    assert "6 runs (5 completed, 1 damaged)" in text and f"damaged {folders[0].name}: {EXPECTED[how]}" in text
    report = invoke("report", runs, "--out", runs / "report", "--format", "csv")
    assert report.exit_code == 0, report.output
    assert f"{folders[0].path}: damaged: {EXPECTED[how]}" in " ".join(report.stderr.split())
    assert "1 run folder(s) skipped (1 damaged); the report covers the rest." in report.stderr
    assert ",5," in report.stdout  # n_seeds of the one group: the five intact runs


def test_one_config_in_two_folders_with_different_histories_is_a_conflict(runs: Path) -> None:
    first = find_runs([runs])[0]
    twin = runs / first.name
    shutil.copytree(first.path, twin)  # the same run (config, id) at the top of the runs folder...
    history = (twin / "history.csv").read_text().replace("1,", "1.0,", 1)  # ...but another history
    (twin / "history.csv").write_text(history)
    done = json.loads((twin / "DONE").read_text())
    (twin / "DONE").unlink()
    from emabench.runs.folder import RunFolder

    RunFolder(twin).mark_done({k: v for k, v in done.items() if k != "sha256"})  # consistent in itself
    report = invoke("report", runs, "--out", runs / "report", "--format", "csv")
    assert report.exit_code == 0, report.output
    text = " ".join(report.stderr.split())
    assert f"conflict: one config, different histories in {twin}, {first.path}" in text
    assert "2 run folder(s) skipped (2 conflict)" in text
