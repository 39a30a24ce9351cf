"""Task-aware results and report: the metrics, their directions and the figures come from each run's task.

Constructed run folders (config.yaml with ``task: classification``, history.csv and metrics.csv written here) show
that an accuracy gain is reported as better, never worse; runs of two tasks are grouped apart; the blog's published
run appears only for the seed study; the per-run figures name the run and say what they leave off the chart."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from emabench.cli import app
from emabench.report.blocks import document
from emabench.report.collect import collect
from emabench.report.elements import Paragraph
from emabench.report.files import render_files
from emabench.report.frames import build_report
from emabench.report.terminal import display_tables
from emabench.results.figures import epoch_ranges, loss_figure, metric_figure
from emabench.results.tables import final_metrics, improvement_pct
from emabench.runs.folder import RunFolder
from emabench.runs.sweep_folder import REPORT_MD
from emabench.tasks.classification import Classification
from emabench.tasks.regression import Regression
from tests.fake_runs import write_run

runner = CliRunner()
EPOCHS = 12
SEEDS = range(12)
RAW_ACC = np.array([0.901, 0.912, 0.897, 0.923, 0.905, 0.915, 0.909, 0.899, 0.918, 0.903, 0.911, 0.907])
ACC_GAIN = np.array([0.011, 0.017, 0.006, 0.013, 0.009, 0.021, 0.015, 0.004, 0.012, 0.019, 0.008, 0.014])


def classification_run(root, seed, raw_acc, ema_acc, *, name="digits"):
    """A finished classification run folder: config.yaml (task: classification), history.csv, metrics.csv, DONE.
    Validation loss falls with accuracy; the final epoch holds exactly ``raw_acc`` / ``ema_acc``."""
    config = {
        "name": name,
        "task": "classification",
        "seed": seed,
        "device": "cpu",
        "data": {"source": "digits", "test_size": 0.2},
        "model": {"name": "mlp"},
        "train": {"batch_size": 32, "max_epochs": 100},
        "ema": {"beta": 0.99, "update_every": 1},
    }
    rows = []
    for epoch in range(1, EPOCHS + 1):
        row = {"epoch": epoch, "train_loss": 2.0 / epoch, "lr": 1e-3}
        for model, final in (("raw", raw_acc), ("ema", ema_acc)):
            accuracy = final - 0.3 / epoch + 0.3 / EPOCHS
            row |= {f"{model}_val_loss": 1.0 - accuracy + 0.01 * seed / epoch, f"{model}_accuracy": accuracy}
            row[f"{model}_f1_macro"] = accuracy - 0.01
            row[f"{model}_ece"] = 0.05 + 0.1 / epoch + 0.001 * seed  # calibration: equal for raw and ema
        row["ema_decay"] = 0.99
        rows.append(row)
    return write_run(root / f"{name}-seed{seed}", config, rows, Classification())


def regression_run(root, seed, raw_mse, ema_mse, *, n_samples=2000):
    config = {
        "name": "regression",
        "seed": seed,
        "device": "cpu",
        "data": {"n_samples": n_samples, "n_features": 20, "noise": 0.1, "random_state": 42, "test_size": 0.2},
        "train": {"batch_size": 32, "max_epochs": 100},
        "ema": {"beta": 0.999, "update_every": 1},
    }
    rows = []
    for epoch in range(1, EPOCHS + 1):
        row = {"epoch": epoch, "train_loss": 1.0 / epoch, "lr": 1e-3}
        for model, final in (("raw", raw_mse), ("ema", ema_mse)):
            loss = final + 0.1 / epoch - 0.1 / EPOCHS
            row |= {f"{model}_val_loss": loss, f"{model}_mse": loss, f"{model}_mae": loss**0.5, f"{model}_r2": 1 - loss}
        rows.append(row)
    return write_run(root / f"regression-seed{seed}-n{n_samples}", config, rows, Regression())


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs") / "sweep-digits"
    for seed in SEEDS:
        classification_run(root, seed, RAW_ACC[seed], RAW_ACC[seed] + ACC_GAIN[seed])
    return root


# --- one run's tables and figures ---------------------------------------------------------------------------------


def test_final_metrics_improvement_is_positive_when_better_in_each_direction():
    history = pd.DataFrame(
        {"epoch": [1, 2], "train_loss": [1.0, 0.5], "raw_val_loss": [0.9, 0.5], "ema_val_loss": [0.8, 0.4]}
        | {"raw_accuracy": [0.5, 0.80], "ema_accuracy": [0.6, 0.88], "raw_f1_macro": [0.5, 0.70]}
        | {"ema_f1_macro": [0.5, 0.63]}
    )
    rows = history.to_dict("records")
    table = pd.DataFrame(final_metrics(rows, Classification())).set_index("model")
    assert list(table.columns) == [
        "epoch",
        "accuracy",
        "f1_macro",
        "ece",
        "accuracy_improvement_pct",
        "f1_macro_improvement_pct",
        "ece_improvement_pct",
        "val_loss_std",
    ]
    assert table["ece"].isna().all()  # a history from before the metric existed: NaN, not an error
    assert table.loc["ema", "accuracy_improvement_pct"] == pytest.approx((0.88 - 0.80) / 0.80 * 100)  # higher: +
    assert table.loc["ema", "f1_macro_improvement_pct"] == pytest.approx((0.63 - 0.70) / 0.70 * 100)  # lower: −
    assert table.loc["raw", "accuracy_improvement_pct"] == 0.0
    regression = Regression()
    assert improvement_pct(regression.metric("mse"), 0.0055, 0.0044) == pytest.approx(20.0)  # lower MSE: +20%
    assert improvement_pct(regression.metric("r2"), 0.9946, 0.9957) == pytest.approx((0.9957 / 0.9946 - 1) * 100)
    posthoc = {"posthoc": {"posthoc_0.1": {"accuracy": 0.9, "fit_error": 1e-3}}}
    extra = pd.DataFrame(final_metrics(rows, Classification(), posthoc))
    post = extra.set_index("model").loc["posthoc_0.1"]
    assert post["accuracy_improvement_pct"] == pytest.approx(12.5) and np.isnan(post["f1_macro"])
    assert post["fit_error"] == 1e-3


def test_epoch_ranges():
    assert epoch_ranges([1, 2, 3, 7, 9, 10]) == "1–3, 7, 9–10"
    assert epoch_ranges([4]) == "4" and epoch_ranges([]) == ""


def test_run_figures_name_the_run_use_table_words_and_say_what_is_off_chart():
    epochs = np.arange(1, 41)
    r2 = 1.0 - 1.0 / epochs**2  # epochs 1–4 fall far below the zoomed range
    history = pd.DataFrame(
        {"epoch": epochs, "train_loss": 1.0 / epochs, "raw_val_loss": 1.0 / epochs, "ema_val_loss": 0.9 / epochs}
        | {"raw_r2": r2, "ema_r2": r2 + 0.001, "raw_mse": 1.0 / epochs, "ema_mse": 0.9 / epochs}
    )
    history.loc[history["epoch"] == 40, "ema_val_loss"] = np.inf
    run = "regression-seed3-abcd1234 (seed 3)"
    figure = metric_figure(history, Regression(), run=run)
    ax = figure.axes[0]
    assert ax.get_title() == f"{run}: validation R²"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["raw", "ema"]
    low, _ = ax.get_ylim()
    off = epochs[r2 < low]
    assert off.size and ax.get_xlabel() == f"epoch\ny axis zoomed: epochs {epoch_ranges(off)} lie off the chart"
    losses = loss_figure(history, Regression(), run).axes[0]
    assert losses.get_title().startswith(run)
    legend = [t.get_text() for t in losses.get_legend().get_texts()]
    assert legend == ["train loss", "raw validation loss", "ema validation loss"]
    assert "Original" not in " ".join(legend)
    assert losses.get_xlabel() == "epoch\nnot finite (not drawn) at epochs 40"
    accuracy = metric_figure(
        pd.DataFrame({"epoch": [1, 2], "raw_val_loss": [1.0, 0.5], "raw_accuracy": [0.5, 0.9]}), Classification()
    )
    assert accuracy.axes[0].get_ylabel() == "validation accuracy (higher is better)"


def test_run_folder_finish_writes_the_task_metric_figure(tmp_path):
    history = [
        {"epoch": e, "train_loss": 1 / e, "lr": 1e-3, "raw_val_loss": 1 / e, "raw_accuracy": 1 - 1 / (e + 1)}
        | {"raw_f1_macro": 1 - 1 / (e + 2)}
        for e in range(1, 4)
    ]
    folder = RunFolder(tmp_path / "digits-seed0").create()
    folder.finish(history, {}, {"status": "completed"}, task=Classification(), seed=0)
    assert {p.name for p in folder.path.iterdir()} >= {"loss.png", "accuracy.png", "metrics.csv", "DONE"}
    assert list(folder.read_metrics()["accuracy"]) == [pytest.approx(0.75)]


# --- the report -------------------------------------------------------------------------------------------------


def test_accuracy_gain_is_reported_as_better(digits):
    report = build_report(collect([digits]))
    assert [t.name for t in report.tasks] == ["classification"]
    final = report.comparison[report.comparison["selection"] == "final"].set_index("metric")
    assert set(final.index) == {"accuracy", "f1_macro", "ece"}
    assert final.loc["accuracy", "verdict"] == "better" and bool(final.loc["accuracy", "higher_is_better"])
    assert final.loc["accuracy", "wins"] == len(SEEDS)  # wins counted where higher accuracy
    assert final.loc["accuracy", "diff_mean"] == pytest.approx(ACC_GAIN.mean())
    assert final.loc["f1_macro", "verdict"] == "" and final.loc["f1_macro", "diff_mean"] > 0  # exploratory
    row = report.summary.iloc[0]
    assert row["task"] == "classification"
    assert row["ema_accuracy_improvement_pct"] == pytest.approx(np.mean(ACC_GAIN / RAW_ACC) * 100)
    assert row["ema_accuracy_verdict"] == "better" and row["ema_wins"] == len(SEEDS)
    stability = report.comparison[report.comparison["selection"] == "stability"].iloc[0]
    assert not stability["higher_is_better"]  # a lower validation-loss std is steadier, whatever the task
    assert "mse" not in report.per_run.columns and "best_accuracy" in report.per_run.columns


def test_classification_report_files_and_terminal_table(digits, tmp_path):
    report = build_report(collect([digits]))
    files = render_files(report)
    assert {"fig_accuracy.png", "fig_paired_accuracy.png", "fig_val_loss.png"} <= set(files)
    assert not any("mse" in name or "r2" in name for name in files)
    markdown = str(files[REPORT_MD])
    assert "final accuracy" in markdown and "higher for accuracy and macro-F1" in markdown
    assert "Reference: the blog's single run" not in markdown  # the blog's run is the seed study's, not this
    (table,) = display_tables(report)
    assert table.header[3:6] == ("accuracy raw", "accuracy model", "Δ accuracy [95% CI]")
    assert table.rows[0][table.header.index("verdict")] == "better"
    result = runner.invoke(app, ["report", str(digits), "--out", str(tmp_path), "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(io.StringIO(result.stdout))["ema_accuracy_verdict"].tolist() == ["better"]


def test_show_prints_a_classification_run_in_its_metrics(digits):
    result = runner.invoke(app, ["show", str(digits / "digits-seed2")])
    assert result.exit_code == 0, result.output
    assert "accuracy gain" in result.output and "macro-F1" in result.output
    gain = (RAW_ACC[2] + ACC_GAIN[2] - RAW_ACC[2]) / RAW_ACC[2] * 100
    assert f"+{gain:.2f}%" in result.output


def test_runs_of_two_tasks_are_grouped_apart_and_never_compared(digits, tmp_path):
    root = tmp_path / "runs"
    for seed in SEEDS:
        classification_run(root, seed, RAW_ACC[seed], RAW_ACC[seed] + ACC_GAIN[seed])
        regression_run(root, seed, 0.006 + 0.0001 * seed, 0.005 + 0.00013 * seed)
    report = build_report(collect([root]), by=["ema.beta"])  # task is added: the groups never mix tasks
    assert report.by[0] == "task"
    assert set(zip(report.summary["task"], report.summary["beta"])) == {("classification", 0.99), ("regression", 0.999)}
    for task, metrics in (("classification", {"accuracy", "f1_macro", "ece"}), ("regression", {"mse", "mae", "r2"})):
        rows = report.comparison[(report.comparison["task"] == task) & (report.comparison["selection"] == "final")]
        assert set(rows["metric"]) == metrics and (rows["n"] == len(SEEDS)).all()
    assert [t.title.split(":")[0] for t in display_tables(report)] == ["regression", "classification"]
    texts = [b.text for b in document(report, {}) if isinstance(b, Paragraph)]
    assert "**regression**: final MSE (validation set)" in texts
    assert "**classification**: final accuracy (validation set)" in texts
    # one family over both tasks, each on its own primary measure
    primary = report.comparison[report.comparison["role"] == "primary"]
    assert report.family.tests == 2 and set(zip(primary["task"], primary["metric"])) == {
        ("classification", "accuracy"),
        ("regression", "mse"),
    }


def test_published_run_only_for_the_seed_study(tmp_path):
    seed_study, other = tmp_path / "seed", tmp_path / "other"
    for seed in range(6):
        regression_run(seed_study, seed, 0.0055 + 0.0001 * seed, 0.0045 + 0.0001 * seed)
        regression_run(other, seed, 0.0055 + 0.0001 * seed, 0.0045 + 0.0001 * seed, n_samples=500)
    assert set(build_report(collect([seed_study])).reference["quantity"]) >= {"mse", "MSE change %"}
    assert build_report(collect([other])).reference.empty  # other data: the blog's numbers do not apply
    markdown = str(render_files(build_report(collect([other])))[REPORT_MD])
    assert "Reference: the blog's single run" not in markdown and "claimed EMA MSE" not in markdown
