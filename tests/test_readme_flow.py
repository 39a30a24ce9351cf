"""The README's first-hour flow, run through the CLI exactly as the README writes it: ``make run`` → ``source
.venv/bin/activate`` → ``emabench sweep --beta 0.99,0.999 --seeds 0-9`` → ``emabench report`` → ``emabench ls`` →
``emabench show RUN_ID``.

The commands are read from the README block marked ``readme-flow`` and run in order, in an empty folder holding a copy
of ``configs/`` (so ``runs/`` is a temporary folder: the default ``--runs-dir``). ``make run`` is the Makefile's own
``run`` recipe (``emabench run configs/regression.yaml``), ``RUN_ID`` the first run id ``ls`` prints. The ONLY
deviation: ``run`` and ``sweep`` get ``--set`` overrides for a tiny data set and a few epochs (FLOW_SETS), the
same for both, so the run of ``make run`` and the sweep's ``beta=0.999, seed=0`` run still have one config. The
``source`` line is checked, not run: it must activate the venv ``make run`` installs the ``emabench`` script into.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from emabench.cli import app
from tests.conftest import ROOT, TINY_SETS

MARKER = "<!-- readme-flow:"
RUN_ID = re.compile(r"\bregression-seed\d+-[0-9a-f]{8}\b")


def readme_flow() -> list[str]:
    """The commands of the README block after the ``readme-flow`` marker, comments stripped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index(MARKER) :].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def make_run_recipe() -> list[str]:
    """The Makefile's ``run`` recipe as arguments after ``emabench``."""
    recipe = (ROOT / "Makefile").read_text(encoding="utf-8").split("\nrun:", 1)[1].splitlines()[1]
    words = shlex.split(recipe)
    assert words[0].endswith("/emabench"), recipe
    return words[1:]


# The tiny runs, with a faster EMA warm-up so that within their 36 steps the decay passes 0.99 but not 0.999: the
# sweep's two betas are then different runs, as they are in the full-size study (its decay reaches 0.9988).
FLOW_SETS = [*TINY_SETS, "ema.inv_gamma=0.01"]


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """The README's first-hour commands run in order in an empty folder: (folder, each command's output)."""
    folder = tmp_path_factory.mktemp("flow")
    shutil.copytree(ROOT / "configs", folder / "configs")
    runner = CliRunner()
    outputs: dict[str, str] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for command in readme_flow():
            words = shlex.split(command)
            if words[0] == "source":
                continue  # test_the_flow_puts_emabench_on_the_path checks it
            args = make_run_recipe() if words == ["make", "run"] else words[1:]
            if args[0] in ("run", "sweep"):
                args += [part for item in FLOW_SETS for part in ("--set", item)]  # the one documented deviation
            if args == ["show", "RUN_ID"]:
                args = ["show", RUN_ID.search(outputs["ls"]).group(0)]
            result = runner.invoke(app, args)
            assert result.exit_code == 0, f"{command} → exit {result.exit_code}\n{result.output}"
            outputs[args[0]] = result.output
        yield folder, outputs


def test_readme_flow_runs_as_written(flow):
    folder, outputs = flow
    assert [c.split()[:2] for c in readme_flow()] == [
        ["make", "run"],
        ["source", ".venv/bin/activate"],
        ["emabench", "sweep"],
        ["emabench", "report"],
        ["emabench", "ls"],
        ["emabench", "show"],
    ]
    # report: the run of `make run` and the sweep's beta=0.999/seed-0 run are one config, counted once
    assert "same config found twice" in outputs["report"]
    table = pd.read_csv(folder / "runs" / "report.csv")
    assert table["beta"].tolist() == [0.99, 0.999] and table["n_seeds"].tolist() == [10, 10]
    assert "wrong claim among them at most 0.05" in outputs["report"]
    # show: the id from ls exists in two folders (the same run): it is shown, and the other folder named
    assert "Run folder:" in outputs["show"] and "also at" in outputs["show"]
    assert "final validation metrics" in outputs["show"]


def test_the_flow_puts_emabench_on_the_path() -> None:
    """After ``make run`` the next line activates the venv that ``make`` created and installed the script into, before
    the first bare ``emabench``: no "command not found"."""
    flow = readme_flow()
    first_bare = next(i for i, c in enumerate(flow) if c.startswith("emabench "))
    assert flow.index("source .venv/bin/activate") < first_bare
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^VENV\s*:=\s*\.venv$", makefile, re.M) and re.search(
        r"^BIN\s*:=\s*\$\(VENV\)/bin$", makefile, re.M
    )
    assert 'emabench = "emabench.cli:main"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert "\nrun: $(STAMP)" in makefile  # make run installs (the stamp's recipe: pip install -e .) before running


@pytest.mark.slow
def test_report_examples_after_the_flow(flow, monkeypatch):
    """docs/report.md's and docs/command-line.md's report commands, on the runs the first hour leaves."""
    folder, _ = flow
    monkeypatch.chdir(folder)
    runner = CliRunner()
    # emabench report --format json > report.json (the shell's redirection done here)
    result = runner.invoke(app, ["report", "--format", "json"])
    assert result.exit_code == 0, result.output
    # the primary comparisons: ema vs raw on the final MSE, one per beta
    assert json.loads(result.stdout)["family"]["tests"] == 2
    # emabench report runs/sweep-regression-*/ --out report/ (the shell's glob done here)
    sweeps = sorted(str(p.relative_to(folder)) + "/" for p in folder.glob("runs/sweep-regression-*"))
    assert len(sweeps) == 1 and runner.invoke(app, ["report", *sweeps, "--out", "report/"]).exit_code == 0
    assert (folder / "report" / "report.html").is_file()
