"""One report makes many comparisons: Holm–Bonferroni over all of them, raw and adjusted p side by side, verdicts
from the adjusted ones.

A constructed null sweep (8 averagers identical to raw up to noise, 3 groups, final and best-epoch metrics and
stability: 168 comparisons) must give no better/worse verdict, although uncorrected p-values would have given some;
a real effect added to one averager must survive the correction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emabench.report import stats
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


def uncorrected_verdicts(comparison: pd.DataFrame) -> list[str]:
    return [
        stats.verdict(
            int(r["n"]),
            r["diff_mean"],
            r["p_ttest"],
            r["p_wilcoxon"],
            alpha=0.05,
            higher_is_better=r["higher_is_better"],
        )
        for r in comparison.to_dict("records")
    ]


@pytest.fixture(scope="module")
def null_report():
    return build_report(sweep())


def test_null_sweep_gives_no_better_or_worse_verdict(null_report):
    report = null_report
    comparison = report.comparison
    assert len(comparison) == len(BETAS) * len(AVERAGERS) * 7 == 168
    assert report.family.tests == 168 and report.family.min_seeds == stats.min_seeds_for(0.05, 168) == 13
    assert set(comparison["verdict"]) == {stats.NO_DIFFERENCE}
    # without the correction the same sweep would have claimed some: the correction is what keeps them out
    fooled = [v for v in uncorrected_verdicts(comparison) if v in (stats.BETTER, stats.WORSE)]
    assert len(fooled) >= 2
    # the adjusted p-values are Holm's over the whole report, side by side with the raw ones
    np.testing.assert_allclose(comparison["p_ttest_holm"], stats.holm(comparison["p_ttest"]), rtol=1e-12)
    np.testing.assert_allclose(comparison["p_wilcoxon_holm"], stats.holm(comparison["p_wilcoxon"]), rtol=1e-12)
    assert (comparison["p_ttest_holm"] >= comparison["p_ttest"]).all()


def test_real_effect_survives_the_correction():
    report = build_report(sweep({(0.995, "avg3"): 0.0015}))
    comparison = report.comparison
    real = comparison[(comparison["ema.beta"] == 0.995) & (comparison["model"] == "avg3")]
    final = real[real["selection"] == "final"].set_index("metric")
    assert final["verdict"].tolist() == [stats.BETTER] * 3  # lower MSE and MAE, higher R²: all "better"
    assert (final["p_wilcoxon_holm"] < 0.05).all() and (final["p_ttest_holm"] < 0.05).all()
    others = comparison.drop(real.index)
    assert set(others["verdict"]) == {stats.NO_DIFFERENCE}
    row = report.summary.set_index("beta").loc[0.995]
    assert row["avg3_mse_verdict"] == "better" and row["avg3_mse_improvement_pct"] > 0
    assert row["avg3_mse_p_wilcoxon_holm"] == pytest.approx(final.loc["mse", "p_wilcoxon_holm"])


def test_the_report_says_which_family_was_corrected(null_report):
    report = null_report
    assert report.family.description.startswith("all averaged-vs-raw comparisons in this report: 168 tests")
    assert "8 averaged model(s) in 3 group(s)" in report.family.description
    markdown = to_markdown(document(report, {}))  # the text without drawing the figures
    assert "Holm–Bonferroni correction** over all averaged-vs-raw comparisons in this report: 168 tests" in markdown
    assert "| p (t) | p (t) Holm | p (Wilcoxon) | p (Wilcoxon) Holm |" in markdown


def test_too_few_seeds_for_the_family_is_insufficient_data_and_said():
    collection = sweep({(0.995, "avg3"): 0.0015})
    few = collection.runs["seed"] < 10  # 10 seeds: Holm over 168 tests needs 13
    collection = Collection(collection.runs[few], collection.curves)  # curves of runs left out are not read
    report = build_report(collection)
    assert set(report.comparison["verdict"]) == {stats.INSUFFICIENT}  # even the real effect cannot show
    markdown = to_markdown(document(report, {}))  # the text without drawing the figures
    assert "With at most 10 seeds per group, no verdict in this report can say better or worse" in markdown
