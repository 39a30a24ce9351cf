"""The report on runs with a held-out test set: the three protocols (final vs final, the early-stopped averaged model
vs the final baseline, best vs best) on constructed runs where each model's best validation epoch is known and every
test number says which epoch it came from; the primary question on the test column; ``--primary`` naming a
protocol; churn on constructed predictions; what the seeds randomized; and a sweep with a holdout through the CLI to
the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from emabench.cli import app
from emabench.report.blocks import document
from emabench.report.churn import churn_table, pairwise_disagreement
from emabench.report.collect import collect
from emabench.report.elements import Heading
from emabench.report.frames import build_report
from emabench.report.verdict_blocks import randomized
from emabench.tasks.classification import Classification
from tests.fake_runs import write_run

runner = CliRunner()
EPOCHS = 12
BEST = {"raw": 4, "ema": 9}  # each model's lowest validation loss: its best state
SEEDS = range(10)
VALIDATION_ACCURACY = 0.8


def accuracy_on_test(model: str, epoch: int, seed: int) -> float:
    """The test accuracy of ``model`` 's weights at ``epoch``: every epoch, model and seed a number of its own, so a
    protocol that read the wrong epoch would give another difference."""
    return 0.5 + 0.01 * epoch + (0.003 if model == "ema" else 0.0) * (1 + seed % 4) + 0.0007 * seed


def on_test(model: str, epoch: int, seed: int) -> dict[str, float]:
    accuracy = accuracy_on_test(model, epoch, seed)
    return {"val_loss": 2.0 - accuracy, "accuracy": accuracy, "f1_macro": accuracy - 0.01, "ece": 0.2 - accuracy / 10}


def config(seed: int, **data: object) -> dict:
    return {
        "name": "protocols",
        "task": "classification",
        "seed": seed,
        "data": {"source": "digits", "holdout": 0.2, "split": "fixed"} | data,
        "model": {"name": "mlp"},
        "train": {"batch_size": 32, "max_epochs": EPOCHS},
        "ema": {"beta": 0.99},
    }


def protocol_run(root, seed: int, *, test_set: bool = True, predictions: dict | None = None, **data: object):
    """A finished run: validation accuracy the same for both models (validation sees no difference), validation loss
    lowest at :data:`BEST`; with ``test_set`` its test metrics at the end and at each best epoch."""
    rows = []
    for epoch in range(1, EPOCHS + 1):
        row = {"epoch": epoch, "train_loss": 1.0 / epoch, "lr": 0.05}
        for model, best in BEST.items():
            accuracy = VALIDATION_ACCURACY + 1e-4 * ((seed * (3 if model == "ema" else 5)) % 7)
            row |= {f"{model}_val_loss": 0.5 + 0.01 * (epoch - best) ** 2, f"{model}_accuracy": accuracy}
            row |= {f"{model}_f1_macro": accuracy, f"{model}_ece": 0.1}
        rows.append(row)
    extra = None
    if test_set:
        extra = {
            "test": {model: on_test(model, EPOCHS, seed) for model in BEST},
            "best": {model: {"epoch": epoch} | on_test(model, epoch, seed) for model, epoch in BEST.items()},
            "predictions": predictions or {},
        }
    return write_run(root / f"protocols-seed{seed}", config(seed, **data), rows, Classification(), extra=extra)


@pytest.fixture(scope="module")
def tested_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs") / "sweep-protocols"
    for seed in SEEDS:
        protocol_run(root, seed)
    return root


@pytest.fixture(scope="module")
def report(tested_runs):
    return build_report(collect([tested_runs]))


def _row(report, selection: str, on: str, metric: str = "accuracy") -> dict:
    rows = report.comparison
    chosen = rows[(rows["selection"] == selection) & (rows["set"] == on) & (rows["metric"] == metric)]
    assert len(chosen) == 1
    return chosen.iloc[0].to_dict()


def test_each_protocol_pairs_the_epochs_it_names(report):
    per_run = report.per_run.set_index(["seed", "model"])
    for model, epoch in BEST.items():  # the report's best epoch (from history) is the one the run kept
        assert (per_run.xs(model, level="model")["best_epoch"] == epoch).all()
    last, seeds = EPOCHS, np.array(list(SEEDS))
    raw_final = np.array([accuracy_on_test("raw", last, s) for s in seeds])
    ema_final = np.array([accuracy_on_test("ema", last, s) for s in seeds])
    raw_best = np.array([accuracy_on_test("raw", BEST["raw"], s) for s in seeds])
    ema_best = np.array([accuracy_on_test("ema", BEST["ema"], s) for s in seeds])
    expected = {
        "final": (raw_final, ema_final),  # both at the last epoch
        "early_stopped": (raw_final, ema_best),  # ema at its epoch 9 vs raw at the end
        "best": (raw_best, ema_best),  # ema at 9 vs raw at 4
    }
    for selection, (base, other) in expected.items():
        row = _row(report, selection, "test")
        assert row["n"] == len(seeds)
        assert row["baseline_mean"] == pytest.approx(base.mean())
        assert row["mean"] == pytest.approx(other.mean())
        assert row["diff_mean"] == pytest.approx((other - base).mean())
        assert row["wins"] == int(np.sum(other > base))
    nll = _row(report, "best", "test", "loss")  # the NLL compared like any metric: lower is better
    assert not nll["higher_is_better"] and nll["diff_mean"] == pytest.approx(-(ema_best - raw_best).mean())
    assert _row(report, "final", "validation")["diff_mean"] == pytest.approx(
        1e-4 * np.mean([(s * 3) % 7 - (s * 5) % 7 for s in seeds])
    )


def test_the_primary_question_is_final_vs_final_on_the_test_set(report):
    primary = report.question.of(Classification())
    assert (primary.column, primary.selection, primary.source) == ("test_accuracy", "final", "test")
    rows = report.comparison[report.comparison["role"] == "primary"]
    assert rows[["selection", "set", "metric"]].values.tolist() == [["final", "test", "accuracy"]]
    assert rows.iloc[0]["verdict"] == "better"  # +0.003·(1 + seed % 4) on every seed, on test
    assert (report.comparison.loc[report.comparison["set"] == "validation", "verdict"] == "").all()
    headings = [b.text for b in document(report, {}) if isinstance(b, Heading)]
    assert "Three protocols on the held-out test set" in headings
    assert "Early-stopped averaged model vs final raw (exploratory: described, no verdict)" in headings
    assert "Final-epoch metrics on the validation set (exploratory)" in headings
    assert report.summary.iloc[0]["ema_test_accuracy_verdict"] == "better"
    assert "ema_early_stopped_test_accuracy_diff_mean" in report.summary.columns


@pytest.mark.parametrize(
    ("primary", "selection", "metric"),
    [
        ("early_stopped_accuracy", "early_stopped", "accuracy"),
        ("best_test_accuracy", "best", "accuracy"),
        ("test_ece", "final", "ece"),
        ("loss", "final", "loss"),
    ],
)
def test_primary_names_a_protocol_by_its_prefix(tested_runs, primary, selection, metric):
    built = build_report(collect([tested_runs]), primary=primary)
    rows = built.comparison[built.comparison["role"] == "primary"]
    assert rows[["selection", "set", "metric"]].values.tolist() == [[selection, "test", metric]]
    assert built.question.of(Classification()).source == "test"


def test_without_a_test_set_the_report_stays_on_validation(tmp_path):
    root = tmp_path / "runs"
    for seed in range(3):
        protocol_run(root, seed, test_set=False)
    built = build_report(collect([root]))
    assert set(built.comparison["set"]) == {"validation"}
    assert built.question.of(Classification()).column == "accuracy"
    assert "Three protocols on the held-out test set" not in [b.text for b in document(built, {}) if hasattr(b, "text")]
    result = runner.invoke(app, ["report", str(root), "--primary", "early_stopped_accuracy"])
    assert result.exit_code == 2
    assert "measured on a held-out test set, and these classification runs have none" in result.output


def test_pairwise_disagreement_by_hand():
    labels = np.array([[0, 1, 2, 3], [0, 1, 2, 0], [1, 1, 0, 0]])
    # pairs (0,1): 1 of 4 differ; (0,2): 3 of 4; (1,2): 2 of 4
    assert pairwise_disagreement(labels).tolist() == [0.25, 0.75, 0.5]
    assert pairwise_disagreement(labels[:1]).size == 0


def _probabilities(classes: list[int], k: int = 3) -> np.ndarray:
    out = np.full((len(classes), k), 0.1, dtype=np.float32)
    out[np.arange(len(classes)), classes] = 0.8
    return out


def test_churn_from_the_runs_predictions(tmp_path):
    fixed, drawn = tmp_path / "fixed", tmp_path / "per_seed"
    raw = [[0, 1, 2, 2, 1], [0, 1, 2, 0, 1], [0, 2, 2, 0, 0]]
    ema = [[0, 1, 2, 2, 1], [0, 1, 2, 2, 1], [0, 1, 2, 0, 1]]
    for seed in range(3):
        predictions = {"raw": _probabilities(raw[seed]), "ema": _probabilities(ema[seed])}
        protocol_run(fixed, seed, predictions=predictions)
        protocol_run(drawn, seed, predictions=predictions, split="per_seed")
    built = build_report(collect([fixed]))
    churn = built.churn.set_index("model")
    # raw: pairs (0,1) 1/5, (0,2) 3/5, (1,2) 2/5; ema: 0, 1/5, 1/5
    assert churn.loc["raw", "churn"] == pytest.approx((1 + 3 + 2) / 15)
    assert churn.loc["ema", "churn"] == pytest.approx(2 / 15)
    assert (churn.loc["raw", "churn_min"], churn.loc["raw", "churn_max"]) == pytest.approx((0.2, 0.6))
    assert churn.loc["ema", "n_pairs"] == 3 and churn.loc["ema", "test_samples"] == 5
    per_seed = build_report(collect([drawn]))
    assert per_seed.churn["churn"].isna().all() and per_seed.churn["note"].str.contains("per_seed").all()
    assert "the train/validation split and the held-out test set" in randomized(per_seed.per_run)
    assert built.summary.iloc[0]["ema_churn"] == pytest.approx(2 / 15)


def test_churn_table_leaves_out_diverged_runs():
    per_run = pd.DataFrame(
        {
            "run_id": ["a", "a", "b", "b", "c", "c"],
            "seed": [0, 0, 1, 1, 2, 2],
            "model": ["raw", "ema"] * 3,
            "status": ["completed"] * 4 + ["diverged"] * 2,
        }
    )
    predictions = {run: {"raw": np.array([0, 1]), "ema": np.array([run == "b", 1])} for run in "abc"}
    table = churn_table(per_run, predictions, by=[]).set_index("model")
    assert table.loc["raw", "n_seeds"] == 2 and table.loc["raw", "churn"] == 0.0
    assert table.loc["ema", "churn"] == 0.5


def test_randomized_names_the_split_the_holdout_and_the_label_noise(tmp_path):
    fixed = tmp_path / "fixed"
    for seed in range(2):
        protocol_run(fixed, seed, label_noise={"fraction": 0.4}, split_random_state=42)
    text = randomized(build_report(collect([fixed])).per_run)
    assert "fixed: the data set (digits), its train/validation split and the held-out test set" in text
    assert "data.split_random_state=42, data.holdout=0.2" in text
    assert "40% of the training labels (exactly round(0.4 · n_train) of them)" in text
    assert "the same for every seed" in text and "validation and test labels clean" in text


def test_a_sweep_with_a_holdout_through_to_the_report(tmp_path):
    sets = ["task=classification", "data={source: digits, holdout: 0.2}", "model.hidden_sizes=[16]", "device=cpu"]
    sets += ["train.max_epochs=3", "train.early_stopping.patience=null", "ema.update_after_step=0"]
    args = ["sweep", *(a for s in sets for a in ("--set", s)), "--seeds", "0-2", "--runs-dir", str(tmp_path), "-q"]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, ["report", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "final accuracy (test set)" in flat and "the other protocols on the test set" in flat
    (markdown,) = tmp_path.glob("report.md")
    text = markdown.read_text()
    assert "## Three protocols on the held-out test set" in text and "## Churn" in text
    comparison = pd.read_csv(tmp_path / "comparison.csv", keep_default_na=False)
    primary = comparison[comparison["role"] == "primary"]
    assert set(primary["set"]) == {"test"} and set(primary["metric"]) == {"accuracy"}
    per_run = pd.read_csv(tmp_path / "per_run.csv")
    assert per_run[["test_accuracy", "best_test_accuracy", "test_loss"]].notna().all().all()
