"""The seed study ships inside the package. ``emabench run`` with no config trains it,
``emabench configs`` lists and prints the shipped configs, ``configs/`` in a clone links to them, ``emabench bench``
finds them wherever emabench is installed — and (slow) a wheel installed into a fresh venv runs from an empty folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import emabench
from emabench.cli import app
from emabench.config import load_config, shipped_config_path, shipped_configs
from emabench.runs.folder import find_runs

from .conftest import ROOT, SEED_CONFIG, TINY_SETS

runner = CliRunner()
TINY = [arg for s in TINY_SETS for arg in ("--set", s)] + ["--set", "device=cpu"]
PACKAGED = Path(emabench.__file__).resolve().parent / "configs"


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_the_shipped_configs_are_the_yaml_files_of_the_package_folder():
    assert shipped_configs() == sorted(p.stem for p in PACKAGED.glob("*.yaml"))
    assert {"regression", "averagers"} <= set(shipped_configs())


def test_configs_lists_every_shipped_config_with_its_description():
    result = invoke("configs")
    assert result.exit_code == 0, result.output
    for name in shipped_configs():
        assert name in result.output
    assert "Seed 001: the regression study" in result.output


@pytest.mark.parametrize("name", ["regression", "averagers", "regression.yaml"])
def test_configs_name_prints_the_file_verbatim_so_a_copy_loads(tmp_path, name):
    result = invoke("configs", name)
    assert result.exit_code == 0
    stem = name.removesuffix(".yaml")
    assert result.stdout == (PACKAGED / f"{stem}.yaml").read_text(encoding="utf-8")
    copy = tmp_path / "mine.yaml"
    copy.write_text(result.stdout)
    assert load_config(copy) == load_config(PACKAGED / f"{stem}.yaml")


def test_the_repository_configs_folder_is_a_link_to_the_packaged_one():
    assert (ROOT / "configs").resolve() == PACKAGED
    assert SEED_CONFIG.resolve() == PACKAGED / "regression.yaml"


def test_git_stores_configs_as_a_symlink_so_a_fresh_clone_has_it():
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "ls-files", "-s", "configs"], cwd=ROOT, capture_output=True, text=True).stdout
    mode, *_ = listed.split() or ["(untracked)"]
    assert mode == "120000", listed  # a symlink entry: `git clone` recreates it on any POSIX system


def test_run_without_a_config_trains_the_shipped_seed_study(tmp_path):
    result = invoke("run", *TINY, "--runs-dir", tmp_path / "a")
    assert result.exit_code == 0, result.output
    assert "seed study shipped with emabench" in result.output and "not both" not in result.output
    assert invoke("run", SEED_CONFIG, *TINY, "--runs-dir", tmp_path / "b", "-q").exit_code == 0
    (shipped,), (repo,) = find_runs([tmp_path / "a"]), find_runs([tmp_path / "b"])
    assert shipped.name == repo.name and shipped.name.startswith("regression-seed0-")  # the same resolved config
    assert yaml.safe_load((shipped.path / "config.yaml").read_text()) == yaml.safe_load(
        (repo.path / "config.yaml").read_text()
    )


def test_sweep_without_a_config_sweeps_the_shipped_seed_study(tmp_path):
    result = invoke("sweep", "--seeds", "0,1", *TINY, "--runs-dir", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    assert sorted(r.name.split("-")[1] for r in find_runs([tmp_path])) == ["seed0", "seed1"]


def test_bench_reads_the_packaged_config_not_the_repository():
    from emabench.bench.common import seed_config

    assert seed_config() == shipped_config_path("regression") == PACKAGED / "regression.yaml"


# --- a non-editable install, from an empty folder (slow: a venv, torch and the dependencies from the local index) --


def _copy_tree(target: Path) -> Path:
    """The working tree as a fresh checkout holds it: no venv, no runs, no build leftovers; links kept as links."""
    top = {".venv", ".git", "runs", "build", "dist", ".pytest_cache", ".ruff_cache"}

    def ignore(folder: str, names: list[str]) -> list[str]:
        at_root = Path(folder) == ROOT
        return [n for n in names if (at_root and n in top) or n == "__pycache__" or n.endswith(".egg-info")]

    shutil.copytree(ROOT, target, symlinks=True, ignore=ignore)
    return target


def _run(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_runs_the_seed_study_from_an_empty_folder(tmp_path):
    source = _copy_tree(tmp_path / "src")
    wheel_cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", "dist"]
    _run([*wheel_cmd, str(source)], tmp_path)  # an absolute path: a bare "src" fails in setuptools' bdist_wheel
    (wheel,) = (tmp_path / "dist").glob("emabench-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    _run([*pip, "torch==2.13.0"], tmp_path)  # first and pinned: a bare `torch` would pull a CUDA build
    _run([*pip, str(wheel)], tmp_path)
    shutil.rmtree(source)  # nothing of the checkout is left to lean on

    empty = tmp_path / "empty"
    empty.mkdir()
    runs = tmp_path / "runs"
    emabench_cli = str(venv / "bin" / "emabench")
    _run([emabench_cli, "run", "--set", "train.max_epochs=2", "--runs-dir", str(runs)], empty)
    assert list(empty.iterdir()) == []
    (folder,) = runs.iterdir()
    assert folder.name.startswith("regression-seed0-") and (folder / "DONE").is_file()
    assert yaml.safe_load((folder / "config.yaml").read_text())["train"]["max_epochs"] == 2

    printed = _run([emabench_cli, "configs", "regression"], empty).stdout
    assert printed == (PACKAGED / "regression.yaml").read_text(encoding="utf-8")
    where = _run(
        [str(venv / "bin" / "python"), "-c", "from emabench.bench.common import seed_config; print(seed_config())"],
        empty,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv) and Path(where).is_file()
