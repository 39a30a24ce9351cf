"""A runs folder holding several studies — the normal state after a day of work — reports by default: one section
per sweep folder or per config name of single runs, each with its own groups and verdicts; ``--format json`` and a
glob of sweep folders work there; every refusal names the differing keys as ``--by``/``--where`` take them
(``averagers`` included)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from emabench.cli import app
from emabench.report.collect import collect
from emabench.report.files import studies_json
from emabench.report.frames import build_studies
from emabench.report.studies import study_labels
from emabench.runs.sweep_folder import write_sweep_spec
from emabench.tasks.regression import Regression
from tests.fake_runs import write_run

runner = CliRunner()
EPOCHS = 6
SEEDS = range(4)


def run(path, seed, beta, *, name="regression", averagers=None, gain=0.001):
    """A finished regression run: raw's final MSE 0.01 + seed/1000, ema ``gain`` lower, each averager as ema."""
    config = {
        "name": name,
        "seed": seed,
        "device": "cpu",
        "data": {"n_samples": 500, "n_features": 5, "noise": 0.1, "random_state": 0, "test_size": 0.2},
        "train": {"batch_size": 32, "max_epochs": EPOCHS},
        "ema": {"beta": beta, "update_every": 1},
        "averagers": averagers or {},
    }
    rows = []
    for epoch in range(1, EPOCHS + 1):
        row = {"epoch": epoch, "train_loss": 1.0 / epoch, "lr": 1e-3}
        raw = 0.01 + seed / 1000 + 0.1 / epoch
        for model in ("raw", "ema", *(averagers or {})):
            loss = raw - (0.0 if model == "raw" else gain * (1 + seed % 3) / 2)
            row |= {f"{model}_val_loss": loss, f"{model}_mse": loss, f"{model}_mae": loss**0.5, f"{model}_r2": 1 - loss}
        rows.append(row)
    label = f"{name}-seed{seed}-b{beta}" + ("-" + "-".join(averagers) if averagers else "")  # as a run id: unique
    return write_run(path / label, config, rows, Regression())


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """A sweep of two betas, a sweep of a config with an extra averager, and two single runs of the seed study
    (one of them a run the beta sweep trained again)."""
    root = tmp_path_factory.mktemp("runs")
    betas = root / "sweep-regression-aaaa1111"
    write_sweep_spec(betas, {"base": {}, "grid": {"ema.beta": [0.99, 0.999]}, "mode": "runs"})
    averaged = root / "sweep-averagers-bbbb2222"
    write_sweep_spec(averaged, {"base": {}, "grid": {}, "mode": "runs"})
    for seed in SEEDS:
        for beta in (0.99, 0.999):
            run(betas, seed, beta)
        run(averaged, seed, 0.999, name="averagers", averagers={"swa": {"kind": "swa", "start_epoch": 2}})
    run(root, 0, 0.999)  # `emabench run` of a config the beta sweep also trained: the same run
    run(root, 7, 0.5)  # a single run of its own
    return root


def test_studies_are_the_sweep_folders_and_the_single_runs_by_name(day):
    collection = collect([day])
    labels = dict(zip(collection.runs["run_path"], study_labels(collection)))
    assert set(labels.values()) == {"sweep-regression-aaaa1111", "sweep-averagers-bbbb2222", "regression (single runs)"}
    # the single run the sweep trained again is counted once, in the sweep's study
    assert labels[str(day / "regression-seed0-b0.999")] == "sweep-regression-aaaa1111"
    studies = build_studies(collect([day]))
    assert [s.label for s in studies][0] == "sweep-regression-aaaa1111"
    by_label = {s.label: s.report for s in studies}
    betas = by_label["sweep-regression-aaaa1111"]
    assert betas.by == ["ema.beta"] and betas.summary["n_seeds"].tolist() == [4, 4]
    averaged = by_label["sweep-averagers-bbbb2222"].comparison
    assert set(averaged.loc[averaged["role"] == "primary", "model"]) == {"ema", "swa"}


def test_the_default_report_works_on_a_day_of_runs(day, tmp_path):
    result = runner.invoke(app, ["report", str(day), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    for label in ("sweep-regression-aaaa1111", "sweep-averagers-bbbb2222", "regression (single runs)"):
        assert f"Study: {label}" in result.output
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert markdown.startswith("# emabench report: 3 studies") and "## Study: sweep-averagers-bbbb2222" in markdown
    assert "study1_fig_paired_mse.png" in markdown and (tmp_path / "out" / "study1_fig_paired_mse.png").is_file()
    table = pd.read_csv(tmp_path / "out" / "comparison.csv")
    assert table.columns[0] == "study" and table["study"].nunique() == 3
    studies = build_studies(collect([day]))
    documents = json.loads(studies_json(studies))["studies"]  # what --format json prints (through the CLI: below)
    assert [d["study"] for d in documents] == [s.label for s in studies]
    assert all("family" in d and "comparison" in d for d in documents)
    sweeps = sorted(str(p) for p in day.glob("sweep-regression-*"))  # emabench report runs/sweep-regression-*/
    alone = runner.invoke(app, ["report", *sweeps, "--out", str(tmp_path / "alone"), "--format", "json"])
    assert alone.exit_code == 0 and "studies" not in json.loads(alone.stdout)


@pytest.mark.slow
def test_averagers_is_a_key_of_by_and_where_and_json_holds_every_study(day, tmp_path):
    args = ["report", str(day), "--out", str(tmp_path), "--format", "json", "--where"]
    only = runner.invoke(app, [*args, "averagers=swa"])
    assert only.exit_code == 0, only.output
    assert {row["model"] for row in json.loads(only.stdout)["comparison"]} == {"ema", "swa"}  # one study: no sections
    none = runner.invoke(app, [*args, "averagers=none"])
    assert none.exit_code == 0, none.output
    assert [d["study"] for d in json.loads(none.stdout)["studies"]] == [
        "sweep-regression-aaaa1111",
        "regression (single runs)",
    ]


def test_a_refusal_names_the_differing_keys_as_by_and_where_take_them(tmp_path):
    for seed in SEEDS:  # one folder, no sweep: two configs of one name that differ in their averagers and lr
        run(tmp_path, seed, 0.999)
        run(tmp_path / "more", seed, 0.999, averagers={"swa": {"kind": "swa", "start_epoch": 2}}, gain=0.002)
    result = runner.invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "out"), "--by", "ema.beta"])
    assert result.exit_code == 2
    message = result.output.replace("\n", " ")
    assert "differ in averagers;" in message and "averagers.swa" not in message
    assert "add --by for those keys or filter with --where KEY=VALUE" in message
    grouped = runner.invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "out"), "--by", "averagers"])
    assert grouped.exit_code == 0, grouped.output
