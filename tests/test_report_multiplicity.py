"""One report makes many comparisons; only the primary ones are decided, as one family, each counted once.

A constructed null sweep (8 averagers identical to raw up to noise, 3 groups: 24 primary comparisons on final MSE,
168 rows with the other metrics, best epoch and stability) must give no better/worse verdict, although an unadjusted
t-test over its rows would have claimed some; a real effect added to one averager must be found; comparisons whose
paired differences are identical are tested once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emabench.report.blocks import document
from emabench.report.collect import Collection
from emabench.report.frames import build_report
from emabench.report.markdown import to_markdown

pytestmark = pytest.mark.filterwarnings("error")

SEEDS = 15  # the fewest with which an exact Wilcoxon test can survive Holm over 168 tests is 13
BETAS = (0.99, 0.995, 0.999)
AVERAGERS = tuple(f"avg{i}" for i in range(8))
EPOCHS = 20


def sweep(effect: dict[tuple[float, str], float] | None = None, seed: int = 0) -> Collection:
    """Runs of 3 betas × SEEDS seeds, each with raw and 8 averagers whose validation loss is raw's per-seed curve
    plus independent noise (the null); ``effect[(beta, model)]`` subtracts a constant from that model's losses."""
    rng = np.random.default_rng(seed)
    runs, curves = [], []
    epochs = np.arange(1, EPOCHS + 1)
    for beta in BETAS:
        for s in range(SEEDS):
            run_id = f"run-b{beta}-s{s}"
            base = 0.005 + 0.002 * rng.random() + 0.05 / epochs
            config = {"ema.beta": beta, "seed": s, "name": "null", "task": "regression", "run_id": run_id}
            config |= {"run_path": run_id, "status": "completed", "stop_reason": "max_epochs", "epochs": EPOCHS}
            for model in ("raw", *AVERAGERS):
                loss = base + 0.0004 * rng.standard_normal(EPOCHS) - (effect or {}).get((beta, model), 0.0)
                mae = np.sqrt(loss) / 2
                curves.append(
                    pd.DataFrame({"run_id": run_id, "model": model, "epoch": epochs, "val_loss": loss}).assign(
                        mse=loss, mae=mae, r2=1.0 - loss / 0.9, decay=np.nan
                    )
                )
                runs.append(config | {"model": model, "mse": loss[-1], "mae": mae[-1], "r2": 1.0 - loss[-1] / 0.9})
    return Collection(pd.DataFrame(runs), pd.concat(curves, ignore_index=True))


def fooled(comparison: pd.DataFrame) -> int:
    """Rows an unadjusted paired t-test at 0.05 would call different."""
    return int((comparison["p_ttest"] < 0.05).sum())


@pytest.fixture(scope="module")
def null_report():
    return build_report(sweep())


def test_null_sweep_gives_no_better_or_worse_verdict(null_report):
    comparison = null_report.comparison
    assert len(comparison) == len(BETAS) * len(AVERAGERS) * 7 == 168
    primary = comparison[comparison["role"] == "primary"]
    assert len(primary) == 24 and set(primary["metric"]) == {"mse"} and set(primary["selection"]) == {"final"}
    assert null_report.family.tests == 24 and null_report.family.level == pytest.approx(0.05 / 24)
    assert not set(primary["verdict"]) & {"better", "worse"}
    assert set(comparison.loc[comparison["role"] == "exploratory", "verdict"]) == {""}
    assert fooled(comparison) >= 2  # what testing every row unadjusted would have claimed


def test_real_effect_is_found_and_the_others_are_not():
    report = build_report(sweep({(0.995, "avg3"): 0.0015}))
    primary = report.comparison[report.comparison["role"] == "primary"].set_index(["ema.beta", "model"])
    assert primary.loc[(0.995, "avg3"), "verdict"] == "better"
    assert primary.loc[(0.995, "avg3"), "evidence"] == "t-test and sign-flip test"
    assert not set(primary.drop(index=(0.995, "avg3"))["verdict"]) & {"better", "worse"}
    row = report.summary.set_index("beta").loc[0.995]
    assert row["avg3_mse_verdict"] == "better" and row["avg3_mse_improvement_pct"] > 0
    assert row["avg3_r2_verdict"] == ""  # exploratory: described, not decided


def test_the_report_says_which_family_was_decided(null_report):
    assert null_report.family.description.startswith("24 primary comparison(s): 8 model(s) vs raw in 3 group(s)")
    markdown = to_markdown(document(null_report, {}))  # the text without drawing the figures
    assert "**Family**: 24 primary comparison(s)" in markdown
    assert "| p (t) | p (sign-flip) | p (Wilcoxon) |" in markdown
    assert "**How many more seeds.**" in markdown


def test_identical_comparisons_are_tested_once():
    collection = sweep()
    runs = collection.runs.copy()
    for beta in BETAS:  # avg1 equals avg0 seed by seed in every group: its differences are avg0's
        at = runs["ema.beta"] == beta
        values = runs.loc[at & (runs["model"] == "avg0"), ["mse", "mae", "r2"]].to_numpy()
        runs.loc[at & (runs["model"] == "avg1"), ["mse", "mae", "r2"]] = values
    report = build_report(Collection(runs, collection.curves))
    primary = report.comparison[report.comparison["role"] == "primary"]
    assert report.family.tests == 21 and report.family.merged == 3
    twins = primary[primary["model"] == "avg1"]
    assert twins["identical_to"].str.endswith("· avg0").all()
    originals = primary[primary["model"] == "avg0"]
    assert twins["verdict"].tolist() == originals["verdict"].tolist()


def test_five_seeds_rest_on_the_t_test_and_say_so():
    collection = sweep({(0.995, "avg3"): 0.0015})
    few = collection.runs["seed"] < 5
    report = build_report(Collection(collection.runs[few], collection.curves))
    primary = report.comparison[report.comparison["role"] == "primary"]
    assert set(primary["evidence"]) == {"t-test alone: assumes normal differences (5 seeds cannot test without it)"}
    markdown = to_markdown(document(report, {}))
    assert "5 seeds cannot test without it" in markdown
