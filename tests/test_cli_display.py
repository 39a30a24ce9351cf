"""What a newcomer reads: ``show`` wraps a config at 80 columns instead of cutting words, epochs are counts, ``ls``
shows the settings of each run beside its id, ``configs`` describes each config in one clean line, installing prints
no deprecation block, and the HTML report's verdicts stay readable in a real browser at desktop and phone widths."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
from typer.testing import CliRunner

from emabench.cli import app
from emabench.cli import common as cli_common
from emabench.tasks.registry import get_task

from .conftest import ROOT, SEED_CONFIG, TINY_SETS
from .fake_runs import write_run

runner = CliRunner()
TINY = [arg for s in [*TINY_SETS, "device=cpu"] for arg in ("--set", s)]

# config.yaml as runs written before every mapping took a line of its own hold it: flow style, wider than 80 columns
FLOW_DATA = (
    "data: {scale_x: true, scale_y: true, test_size: 0.2, split_random_state: 42, stratify: null,\n"
    "  source: make_regression, n_samples: 240, n_features: 20, n_informative: null, noise: 0.1,\n"
    "  random_state: 42}\n"
)


@pytest.fixture(scope="module")
def sweep_runs(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    # betas 0.5 and 0.999: distinct runs (at TINY's 36 steps the warm-up decay stays below 0.9, so 0.99 and 0.999
    # would be the same run, trained once)
    args = ["sweep", SEED_CONFIG, *TINY, "--beta", "0.5,0.999", "--seeds", "0-1", "--runs-dir", runs, "-q"]
    result = runner.invoke(app, [str(a) for a in [*args, "--grid", "train.optimizer.lr=0.001,0.003"]])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["run", str(SEED_CONFIG), *TINY, "--runs-dir", str(runs), "-q"])
    assert result.exit_code == 0, result.output
    return runs


def test_show_wraps_a_wide_config_at_80_columns(sweep_runs, monkeypatch) -> None:
    (folder,) = [p for p in sweep_runs.iterdir() if p.name.startswith("regression-seed0-")]  # `run`'s
    text = (folder / "config.yaml").read_text()
    start, end = text.index("data:\n"), text.index("model:")
    (folder / "config.yaml").write_text(text[:start] + FLOW_DATA + text[end:])  # an older run's layout...
    done = json.loads((folder / "DONE").read_text())
    (folder / "DONE").write_text(json.dumps({k: v for k, v in done.items() if k != "sha256"}))  # ...and DONE
    monkeypatch.setattr(cli_common.console, "width", 80)
    result = runner.invoke(app, ["show", str(folder)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if str(folder) not in line]  # a path is never cut
    assert max(len(line) for line in lines) <= 80
    flat = " ".join(result.output.split())
    for words in ("split_random_state: 42,", "stratify: null,", "n_informative: null,", "random_state: 42}"):
        assert words in flat  # every word whole: wrapped at a space, never cut at the edge


def test_show_counts_epochs_in_whole_numbers(sweep_runs) -> None:
    (folder,) = [p for p in sweep_runs.iterdir() if p.name.startswith("regression-seed0-")]
    result = runner.invoke(app, ["show", str(folder)])
    epochs = json.loads((folder / "DONE").read_text())["epochs"]
    assert re.search(rf"│ raw\s+│ {epochs}\s+│", result.output), result.output
    assert f"{epochs}.0" not in result.output


def test_ls_shows_each_runs_swept_settings(monkeypatch, sweep_runs) -> None:
    monkeypatch.setattr(cli_common.console, "width", 200)
    result = runner.invoke(app, ["ls", "--runs-dir", str(sweep_runs)])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "train.optimizer.lr" in line)
    assert re.search(r"run\s+┃ seed\s+┃ beta\s+┃ train\.optimizer\.lr\s+┃ status", header), header
    rows = [line for line in result.output.splitlines() if re.search(r"regression-seed\d-", line)]
    swept = {tuple(cell.strip() for cell in line.split("│")[2:5]) for line in rows if line.count("│") == 9}
    assert swept == {(s, b, lr) for s in "01" for b in ("0.5", "0.999") for lr in ("0.001", "0.003")}
    # the run of `emabench run`, beside the sweep: its seed and beta
    assert re.search(r"regression-seed0-\w+ │ 0\s+│ 0\.999\s+│ completed", result.output), result.output


def test_configs_describes_each_config_in_one_clean_line(monkeypatch) -> None:
    monkeypatch.setattr(cli_common.console, "width", 400)
    result = runner.invoke(app, ["configs"])
    assert result.exit_code == 0 and "\\" not in result.output, result.output
    assert "--grid train.optimizer.name=sgd,adam,adamw,rmsprop --beta 0.99,0.999" in result.output


def test_the_license_is_an_spdx_expression() -> None:
    """setuptools deprecates ``license = {text = ...}`` with a block printed on every install."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"


@pytest.mark.slow
def test_installing_prints_no_warning_block(tmp_path) -> None:
    """``make``'s ``pip install -q -e .`` (build isolation, the setuptools pyproject.toml asks for) into a fresh venv,
    by this venv's pip (``make`` upgrades pip first; older ones hide what the build prints): no ``!!`` block."""
    from tests.test_packaging import _copy_tree

    source = _copy_tree(tmp_path / "src")
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=300)
    target = ["--python", str(tmp_path / "venv" / "bin" / "python")]
    pip = [sys.executable, "-m", "pip", *target, "install", "-q", "--no-deps", "-e", str(source)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(pip, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "!!" not in output and "deprecated" not in output.lower(), output


# --- the HTML report in a real browser -------------------------------------------------------------------------

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
MEASURE = """<script>
window.addEventListener('load', () => {
  const width = document.documentElement.clientWidth, out = [];
  for (const cell of document.querySelectorAll('td.better, td.worse, td.equivalent, td.open, td.few')) {
    if (cell.closest('.legend')) continue;
    const box = cell.getBoundingClientRect();
    out.push([cell.textContent, box.left >= 0 && box.right <= width + 0.5, cell.scrollWidth <= cell.clientWidth]);
  }
  document.body.setAttribute('data-verdicts', JSON.stringify(out));
});
</script>"""


def _noisy_report(tmp_path: Path) -> Path:
    """A report over 12 seeds of raw vs ema whose differences are noise."""
    task, rng = get_task("regression"), np.random.default_rng(0)
    names = [f"{m}_{c}" for m in ("raw", "ema") for c in ("val_loss", "mse", "mae", "r2")]
    for seed in range(12):
        noise = rng.normal(0, 0.01, size=(20, len(names)))
        history = [
            {"epoch": e + 1, "train_loss": 0.5, "lr": 1e-3, "ema_decay": 0.99, **dict(zip(names, 0.3 + noise[e]))}
            for e in range(20)
        ]
        config = {"name": "noise", "seed": seed, "ema": {"beta": 0.999}}
        write_run(tmp_path / "runs" / f"noise-seed{seed}-{seed:08x}", config, history, task)
    result = runner.invoke(app, ["report", "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    return tmp_path / "r" / "report.html"


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="needs a headless Chromium (apt-get install chromium)")
@pytest.mark.parametrize("width", [1024, 1400, 390])
def test_every_verdict_column_is_in_view_and_uncut_in_a_browser(tmp_path, width: int) -> None:
    page = _noisy_report(tmp_path)
    page.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    command += ["--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'u'}"]
    command += [f"--window-size={width},900", "--dump-dom", page.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    verdicts = json.loads(re.search(r"data-verdicts=\"([^\"]*)\"", dom).group(1).replace("&quot;", '"'))
    assert verdicts and {text for text, _, _ in verdicts} <= {"better", "worse", "equivalent", "inconclusive"}
    assert all(inside and whole for _, inside, whole in verdicts), verdicts
