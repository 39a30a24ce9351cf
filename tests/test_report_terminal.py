"""The terminal side of ``report``, ``show`` and ``ls``: tables that never split a number at 80, 100 or 120 columns;
``show`` by path, id or prefix, ambiguity listing paths; the same config found twice counted once, and a refusal that
names the keys that differ."""

from __future__ import annotations

import io
import re

import pytest
import yaml
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner

from emabench.cli import app
from emabench.cli import report as report_command
from emabench.cli.tables import fitted_tables, word_widths
from emabench.report.collect import collect, find_run
from emabench.report.frames import build_report
from emabench.report.terminal import display_tables
from emabench.runs.folder import RunFolder
from tests.test_report_multiplicity import sweep
from tests.test_report_tasks import regression_run

runner = CliRunner()
BOX = re.compile(r"[\u2500-\u257f]")  # rich's box-drawing characters


@pytest.fixture(scope="module")
def report():
    return build_report(sweep({(0.995, "avg3"): 0.0015}))


def rendered(width: int, report) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    original = report_command.console
    report_command.console = console
    try:
        report_command.print_report(report)
    finally:
        report_command.console = original
    return console.export_text()


def table_words(text: str) -> list[str]:
    """Every word inside the tables' borders."""
    return [word for line in text.splitlines() if BOX.search(line) for word in BOX.sub(" ", line).split()]


@pytest.mark.parametrize("width", [80, 100, 120])
def test_report_table_never_splits_a_number(report, width):
    text = rendered(width, report)
    assert max(cell_len(line) for line in text.splitlines()) <= width
    labels = {v: label for v, (label, _) in report_command.VERDICT_STYLES.items()}
    (table,) = display_tables(report)
    cells = [labels.get(cell, cell) for row in table.rows for cell in row]
    allowed = {w for text_ in (*table.header, *cells, table.title) for w in text_.split()}
    allowed |= {"(1/2)", "(2/2)", "(1/3)", "(2/3)", "(3/3)"}  # folded tables are numbered
    words = table_words(text)
    assert set(words) <= allowed  # no fragment like "beta=0.9" of "beta=0.99", no "0.00…"
    for word in {w for cell in cells for w in cell.split()}:
        assert word in words  # every word of every cell is on the screen, whole
    if width == 80:
        assert "(1/" in text  # too narrow for one table: the columns were folded, not squeezed


def test_fitted_tables_fold_then_go_vertical():
    header = ["group", "model", "a long number", "another one"]
    rows = [["beta=0.999, data.noise=0.1", "ema", "0.00123456789", "+0.00029 [-0.00031, 0.00088]"]]
    for width in (120, 50, 30):
        console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
        for table in fitted_tables(console, header, rows, keep=2, title="t"):
            console.print(table)
        text = console.export_text()
        assert max(cell_len(line) for line in text.splitlines()) <= width
        words = set(BOX.sub(" ", text).split())  # at 30 columns the row's name is its table's title
        assert {"beta=0.999,", "data.noise=0.1", "0.00123456789", "[-0.00031,"} <= words
    assert "t: beta=0.999," in text  # the last, 30 columns: one field/value table per row
    assert word_widths(["ab cde", "f"]) == (3, 6)


def test_show_accepts_path_id_and_prefix_and_lists_paths_when_ambiguous(tmp_path):
    runs = tmp_path / "runs"
    sweep_folder = runs / "sweep-regression-1"
    first = regression_run(runs, 0, 0.006, 0.005)
    twin = regression_run(sweep_folder, 0, 0.006, 0.005)  # the same config and id, in a sweep
    other = regression_run(sweep_folder, 1, 0.006, 0.005)
    assert first.name == twin.name
    folder, same = find_run(first.name, runs)
    assert folder.path == first.path and [f.path for f in same] == [twin.path]
    by_prefix = runner.invoke(app, ["show", "regression-seed1", "--runs-dir", str(runs)])
    assert by_prefix.exit_code == 0 and str(other.path) in by_prefix.output
    by_id = runner.invoke(app, ["show", first.name, "--runs-dir", str(runs)])
    assert by_id.exit_code == 0, by_id.output
    assert "also at" in by_id.output and str(twin.path) in by_id.output.replace("\n", "")
    by_path = runner.invoke(app, ["show", str(twin.path)])
    assert by_path.exit_code == 0 and "also at" not in by_path.output
    ambiguous = runner.invoke(app, ["show", "regression-seed", "--runs-dir", str(runs)])
    assert ambiguous.exit_code == 2  # a user input that names several runs (exit 2)
    assert "ambiguous, matches 3 runs" in ambiguous.output
    for folder in (first, twin, other):
        assert str(folder.path) in ambiguous.output  # paths, not the same name three times


def test_same_config_twice_is_counted_once_and_said(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(6):
        regression_run(runs / "sweep-a", seed, 0.006 + 0.0001 * seed, 0.005)
    regression_run(runs, 0, 0.006, 0.005)  # `emabench run` of the sweep's seed 0
    collection = collect([runs])
    assert len(collection.duplicates) == 1 and collection.runs["run_id"].nunique() == 6
    kept, dropped = collection.duplicates[0]
    assert kept.path == runs / "regression-seed0-n2000" and dropped.path == runs / "sweep-a" / kept.name
    result = runner.invoke(app, ["report", "--runs-dir", str(runs), "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert f"same config found twice: using {kept.path}, not {dropped.path}" in result.stderr
    assert "n_seeds" in result.stdout


def test_refusal_names_the_keys_that_differ(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(6):
        folder = regression_run(runs, seed, 0.006, 0.005)
        config = yaml.safe_load(folder.read_config_text())
        config["train"]["batch_size"] = 64  # the same seeds again with another batch size
        twin = RunFolder(runs / f"{folder.name}-b64").create()
        twin.write_config(yaml.safe_dump(config))
        for name in ("history.csv", "metrics.csv"):
            (twin.path / name).write_bytes((folder.path / name).read_bytes())
        twin.mark_done(folder.done_info())  # its own DONE: the sha256 of its own files
    result = runner.invoke(app, ["report", "--runs-dir", str(runs), "--by", "ema.beta"])
    assert result.exit_code == 2
    assert "several runs per seed that differ in train.batch_size" in result.output
    grouped = runner.invoke(app, ["report", "--runs-dir", str(runs), "--format", "csv"])  # default: grouped apart
    assert grouped.exit_code == 0, grouped.output
