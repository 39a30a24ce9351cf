"""The report's verdicts through the command line, on a study trained here where averaging clearly helps
(examples/positive_control.yaml: plain SGD at a high constant learning rate, 30% of the labels flipped): the averaged
model is ``better`` at 5 seeds, an averager equal to raw (``constant_ema`` with ``beta: 0``) is ``equivalent``;
``--baseline`` works for every model the report lists; ``--primary`` and ``--margin`` choose the question; the
config's ``report:`` section asks it too and never moves a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emabench.cli import app
from emabench.config import load_config, with_overrides
from emabench.runs.folder import run_id

CONTROL = Path(__file__).parents[1] / "examples" / "positive_control.yaml"
runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    """The positive control, 5 seeds."""
    runs = tmp_path_factory.mktemp("control")
    result = invoke("sweep", CONTROL, "--seeds", "0-4", "--runs-dir", runs, "--quiet")
    assert result.exit_code == 0, result.output
    return runs


def report_json(runs: Path, tmp_path: Path, *args: object) -> dict:
    result = invoke("report", runs, "--out", tmp_path / "out", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def primary(document: dict) -> dict[str, dict]:
    return {row["model"]: row for row in document["comparison"] if row["role"] == "primary"}


def test_the_positive_control_is_better_at_five_seeds_and_an_average_equal_to_raw_is_equivalent(control, tmp_path):
    shown = invoke("report", control, "--out", tmp_path / "shown")
    assert shown.exit_code == 0 and "better" in shown.output and "equivalent" in shown.output
    document = report_json(control, tmp_path)
    rows = primary(document)
    assert rows["ema"]["verdict"] == "better" and rows["ema"]["n"] == 5 and rows["ema"]["wins"] == 5
    assert rows["ema"]["evidence"] == "t-test alone: assumes normal differences (5 seeds cannot test without it)"
    assert rows["same"]["verdict"] == "equivalent" and rows["same"]["diff_mean"] == 0.0
    assert document["family"]["tests"] == 2 and document["question"]["baseline"] == "raw"
    assert document["question"]["primary"]["classification"]["column"] == "accuracy"
    assert document["question"]["primary"]["classification"]["evaluated_on"] == "validation"
    exploratory = [row for row in document["comparison"] if row["role"] == "exploratory"]
    assert exploratory and {row["verdict"] for row in exploratory} == {""}


@pytest.mark.parametrize(
    "baseline", [pytest.param("raw", marks=pytest.mark.slow), "ema", pytest.param("same", marks=pytest.mark.slow)]
)
def test_baseline_works_for_every_model_the_report_lists(control, tmp_path, baseline):
    document = report_json(control, tmp_path, "--baseline", baseline)
    rows = primary(document)
    assert set(rows) == {"raw", "ema", "same"} - {baseline}
    assert {row["baseline"] for row in document["comparison"]} == {baseline}
    expected = {
        "raw": {"ema": "better", "same": "equivalent"},
        "ema": {"raw": "worse", "same": "worse"},
        "same": {"raw": "equivalent", "ema": "better"},
    }[baseline]
    assert {model: row["verdict"] for model, row in rows.items()} == expected
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert f"each model against {baseline}" in markdown


def test_primary_and_margin_choose_the_question(control, tmp_path):
    document = report_json(control, tmp_path, "--primary", "f1_macro", "--margin", "0.5%")
    rows = primary(document)
    assert {row["metric"] for row in rows.values()} == {"f1_macro"}
    assert rows["ema"]["margin"] == pytest.approx(0.005 * rows["ema"]["baseline_mean"])


@pytest.mark.slow
def test_a_best_epoch_primary_with_an_absolute_margin(control, tmp_path):
    best = primary(report_json(control, tmp_path, "--primary", "best_accuracy", "--margin", "0.02"))
    assert {(row["selection"], row["margin"]) for row in best.values()} == {("best", 0.02)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--primary", "mse"], "--primary: 'mse' is not a compared column of task classification (allowed: accuracy"),
        (["--margin", "abc"], "--margin: 'abc' is not a margin: give a positive number (0.005) or a percentage (1%)"),
        (["--margin", "-0.1"], "--margin: '-0.1' is not a margin"),
        (["--baseline", "swa"], "--baseline: no model 'swa' in these runs (models: raw, ema, same)"),
    ],
)
def test_bad_question_options_are_one_line(control, tmp_path, args, message):
    result = invoke("report", control, "--out", tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output.replace("\n", " ") and "Traceback" not in result.output


def test_the_config_report_section_asks_the_question_and_never_moves_a_run(control, tmp_path):
    base = load_config(CONTROL)
    asked = with_overrides(base, {"report.primary": "f1_macro", "report.margin": "2%"})
    assert run_id(asked.to_dict()) == run_id(base.to_dict())  # how a run is reported is not what was trained
    runs = tmp_path / "runs"
    result = invoke(
        "sweep", CONTROL, "--seeds", "0-1", "--runs-dir", runs, "-q", "--set", "report.primary=f1_macro",
        "--set", "report.margin=2%",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = report_json(runs, tmp_path)
    assert {row["metric"] for row in primary(document).values()} == {"f1_macro"}
    assert document["question"]["primary"]["classification"]["margin"] == pytest.approx(0.02)
    assert "report.primary" not in document["by"]  # how to report is never a group key


@pytest.mark.slow
def test_until_decided_stops_when_every_comparison_is_decided_and_the_report_applies_its_looks(tmp_path):
    runs = tmp_path / "runs"
    result = invoke("sweep", CONTROL, "--until-decided", "--runs-dir", runs, "--quiet")
    assert result.exit_code == 0, result.output
    output = result.output.replace("\n", " ")
    # at 10 seeds the control's p-values (t 0.003, sign-flip 0.006) pass a fixed design's 0.025 but not the second
    # look's nominal level: it takes the third
    assert all(f"Look {k}/3: {n} seeds" in output for k, n in [(1, 5), (2, 10), (3, 20)])
    assert "Stopped after look 3 (every primary comparison decided)" in output
    (folder,) = runs.glob("sweep-control-*")
    record = json.loads((folder / "sweep.json").read_text())["sequential"]
    assert record == {"max_seeds": 20, "alpha": 0.05, "looks": [5, 10, 20]}
    assert len(list(folder.glob("control-seed*"))) == 20  # each look trained only its new seeds
    document = report_json(folder, tmp_path)
    assert document["question"]["sequential"] == {"max_seeds": 20, "looks": [5, 10, 20]}
    rows = primary(document)
    assert (rows["ema"]["verdict"], rows["ema"]["decided_at"]) == ("better", 20)
    assert (rows["same"]["verdict"], rows["same"]["decided_at"]) == ("equivalent", 5)
    assert rows["same"]["level"] < 0.025 / 100  # the first look's nominal level: almost nothing spent at 5 of 20
    assert 0.02 < rows["ema"]["level"] < 0.025  # the last look's: nearly all of the family's share


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--until-decided", "--seeds", "0-4"], "--seeds: --until-decided chooses the seeds itself"),
        (["--max-seeds", "10"], "--max-seeds: only with --until-decided"),
        (["--until-decided", "--force"], "--force: not with --until-decided"),
    ],
)
def test_until_decided_refuses_what_contradicts_it(tmp_path, args, message):
    result = invoke("sweep", CONTROL, "--runs-dir", tmp_path, *args)
    assert result.exit_code == 2 and message in result.output.replace("\n", " ")
