"""``emabench report/show/ls`` on hand-made run folders: every statistic against numpy/scipy, a constructed case with
a known significant difference and one with none, best vs final epoch, diverged and incomplete runs, the CLI options,
the HTML file and the figures."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from typer.testing import CliRunner

from emabench.cli import app
from emabench.report import figures as figs
from emabench.report.collect import collect, inventory
from emabench.report.figures import report_figures
from emabench.report.files import render_files
from emabench.report.frames import DEFAULT_BURN_IN, build_report
from emabench.report.published import PUBLISHED_RUN
from emabench.runs.folder import RunFolder
from emabench.runs.sweep_folder import REPORT_MD
from emabench.tasks.regression import Regression
from tests.fake_runs import write_run

runner = CliRunner()
EPOCHS = 14
DIP = EPOCHS - 3  # raw's validation loss dips below its final value here: raw's best epoch
SEEDS = range(12)  # enough pairs for a perfect sweep to survive Holm over the report's 14 comparisons (10 needed)
# beta 0.9: ema beats raw on every seed by a varying margin (known significant); beta 0.99: the differences cancel.
RAW = np.array([0.010, 0.012, 0.011, 0.015, 0.009, 0.013, 0.014, 0.010, 0.016, 0.008, 0.012, 0.011])
GAIN = np.array([0.0020, 0.0031, 0.0012, 0.0027, 0.0016, 0.0022, 0.0035, 0.0018, 0.0025, 0.0014, 0.0029, 0.0019])
BETTER_EMA = RAW - GAIN
# No two paired differences of equal size, in any compared column: with ties, scipy's Wilcoxon runs an exact
# permutation test (2**n evaluations of the statistic, ~0.5 s at n = 12) instead of its exact distribution.
SAME_EMA = RAW + np.array([1.0, -1.1, 2.0, -1.9, 1.5, -1.4, 0.5, -0.6, 0.7, -0.8, 1.2, -1.3]) * 1e-3


def dip(seed: int) -> float:
    """How far raw's validation loss dips at epoch DIP, relative to its final value (seed-dependent: no ties)."""
    return 0.5 + 0.013 * (seed % len(RAW))


DIVERGED_SEED = 12


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def make_run(root, seed, beta, raw_final, ema_final, *, noise=0.1, status="completed", done=True, epochs=EPOCHS):
    """A run folder as the runner writes it: config.yaml, history.csv, metrics.csv (tables.final_metrics), DONE."""
    config = {
        "name": "fake",
        "seed": seed,
        "device": "cpu",
        "data": {"n_samples": 2000, "n_features": 20, "test_size": 0.2, "noise": noise, "random_state": 42},
        "train": {"batch_size": 32, "max_epochs": 500},
        "ema": {"beta": beta, "update_every": 1},
    }
    rows = []
    for epoch in range(1, epochs + 1):
        row = {"epoch": epoch, "train_loss": 1.0 / epoch, "lr": 1e-3}
        raw = raw_final * dip(seed) if epoch == DIP else raw_final + 0.3 / epoch**2 - 0.3 / epochs**2
        ema = ema_final + 0.2 / epoch - 0.2 / epochs  # decreasing: ema's best epoch is the last
        if epoch == epochs:  # exactly the final values (no rounding from the formulas above)
            raw, ema = raw_final, ema_final
        for model, loss in (("raw", raw), ("ema", ema)):
            if status == "diverged" and epoch == epochs:
                loss = math.nan
            row |= {f"{model}_val_loss": loss, f"{model}_mse": loss, f"{model}_mae": math.sqrt(loss) / 2}
            row[f"{model}_r2"] = 1.0 - loss
        row["ema_decay"] = 0.0 if epoch < 3 else 0.9
        rows.append(row)
    path = root / f"fake-seed{seed}-b{beta}-n{noise}"
    return write_run(path, config, rows, Regression(), status=status, stop_reason="early_stopping", done=done)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """beta 0.9 and 0.99 × 12 seeds at noise 0.1, plus: a diverged 13th seed at beta 0.9, beta 0.9 at noise 0.2 for
    6 seeds, one incomplete and one interrupted folder."""
    root = tmp_path_factory.mktemp("runs") / "sweep-fake"
    for seed in SEEDS:
        make_run(root, seed, 0.9, RAW[seed], BETTER_EMA[seed])
        make_run(root, seed, 0.99, RAW[seed], SAME_EMA[seed])
    make_run(root, DIVERGED_SEED, 0.9, 0.01, 0.01, status="diverged")
    for seed in range(6):
        make_run(root, seed, 0.9, RAW[seed], RAW[seed] + 0.001, noise=0.2)
    make_run(root, 20, 0.9, 0.01, 0.01, done=False)
    make_run(root, 21, 0.9, 0.01, 0.01, done=False).mark_interrupted({"epochs": 3})
    return root


@pytest.fixture(scope="module")
def built(sweep):
    return build_report(collect([sweep], ["data.noise=0.1"]))


# --- statistics -------------------------------------------------------------------------------------------------


def _row(summary: pd.DataFrame, beta: float) -> dict:
    return summary[np.isclose(summary["beta"], beta)].iloc[0].to_dict()


def test_known_significant_difference_and_none(built):
    summary = built.summary
    significant, none = _row(summary, 0.9), _row(summary, 0.99)
    assert significant["ema_mse_verdict"] == "better"  # MSE at the final epoch: regression's primary measure
    # the other metrics are exploratory: described (r2 = 1 - mse: higher is better), never decided
    assert significant["ema_r2_verdict"] == significant["ema_mae_verdict"] == ""
    assert significant["ema_r2_diff_mean"] > 0 and significant["ema_r2_p_ttest"] < 1e-4
    assert significant["ema_wins"] == 12
    assert none["ema_mse_verdict"] == "inconclusive"  # differences of ±0.001 against a margin of 1% of 0.012
    assert none["ema_wins"] == 6
    # p-values and the paired interval against scipy/numpy
    diff = BETTER_EMA - RAW
    assert significant["ema_mse_p_ttest"] == pytest.approx(st.ttest_rel(BETTER_EMA, RAW).pvalue)
    assert significant["ema_mse_p_wilcoxon"] == pytest.approx(st.wilcoxon(diff).pvalue)
    half = st.t.ppf(0.975, 11) * diff.std(ddof=1) / np.sqrt(12)
    assert significant["ema_mse_diff_ci_low"] == pytest.approx(diff.mean() - half)
    assert significant["ema_mse_diff_ci_high"] == pytest.approx(diff.mean() + half)
    assert none["ema_mse_p_ttest"] == pytest.approx(st.ttest_rel(SAME_EMA, RAW).pvalue)
    assert none["ema_mse_p_wilcoxon"] == pytest.approx(st.wilcoxon(SAME_EMA - RAW).pvalue)
    # mean ± std and the t-interval of each model
    assert significant["raw_mse_mean"] == pytest.approx(RAW.mean())
    assert significant["raw_mse_std"] == pytest.approx(RAW.std(ddof=1))
    half = st.t.ppf(0.975, 11) * RAW.std(ddof=1) / np.sqrt(12)
    assert significant["raw_mse_ci_low"] == pytest.approx(RAW.mean() - half)
    assert significant["ema_mse_improvement_pct"] == pytest.approx(np.mean((RAW - BETTER_EMA) / RAW) * 100)


def test_best_epoch_is_labelled_and_picked_by_validation_loss(built):
    per_run = built.per_run
    raw = per_run[(per_run["model"] == "raw") & (per_run["ema.beta"] == 0.99)].sort_values("seed")
    ema = per_run[(per_run["model"] == "ema") & (per_run["ema.beta"] == 0.99)].sort_values("seed")
    assert (raw["best_epoch"] == DIP).all() and (ema["best_epoch"] == EPOCHS).all()
    np.testing.assert_allclose(raw["best_mse"], RAW * [dip(seed) for seed in SEEDS])
    np.testing.assert_allclose(raw["mse"], RAW)  # final epoch unchanged
    # raw's dip makes it look better at its best epoch although it is the same at the final epoch
    best = _row(built.summary, 0.99)
    assert (
        best["ema_best_mse_diff_mean"] > 0
        and best["ema_best_mse_p_ttest"] < 0.05
        and best["ema_best_mse_verdict"] == ""
    )
    assert set(built.comparison["selection"]) == {"final", "best", "stability"}
    files = render_files(built)
    markdown = str(files[REPORT_MD])
    assert "## Best-epoch metrics (exploratory; optimistic: picked on the validation set itself)" in markdown
    assert "## Final-epoch metrics" in markdown


def test_stability_decay_and_half_life_against_numpy(built, sweep):
    per_run = built.per_run
    history = RunFolder(sweep / "fake-seed3-b0.9-n0.1").read_history()
    row = per_run[(per_run["run_id"] == "fake-seed3-b0.9-n0.1") & (per_run["model"] == "ema")].iloc[0]
    expected = history.loc[history["epoch"] > DEFAULT_BURN_IN, "ema_val_loss"].std(ddof=1)
    assert row["val_loss_std"] == pytest.approx(expected)
    assert row["decay_reached"] == pytest.approx(0.9)
    assert row["half_life_updates"] == pytest.approx(math.log(0.5) / math.log(0.9))
    assert row["half_life_epochs"] == pytest.approx(math.log(0.5) / math.log(0.9) / 50)  # 1600 samples / 32
    decay = built.decay.set_index("group")
    assert decay.loc["beta=0.9", "configured_beta"] == 0.9
    assert decay.loc["beta=0.9", "decay_mean"] == pytest.approx(0.9)
    burn = build_report(collect([sweep], ["data.noise=0.1"]), burn_in=12)
    short = history.loc[history["epoch"] > 12, "ema_val_loss"].std(ddof=1)
    assert burn.per_run.set_index(["run_id", "model"]).loc[("fake-seed3-b0.9-n0.1", "ema"), "val_loss_std"] == (
        pytest.approx(short)
    )


def test_diverged_runs_are_counted_not_averaged(built):
    significant = _row(built.summary, 0.9)
    assert significant["n_diverged"] == 1 and significant["n_seeds"] == 13
    assert significant["raw_mse_mean"] == pytest.approx(RAW.mean())  # the NaN run is not in the mean
    rows = built.comparison[(built.comparison["ema.beta"] == 0.9) & (built.comparison["metric"] == "mse")]
    assert (rows["n"] == 12).all() and (rows["n_diverged"] == 1).all()


def test_reference_percentiles(built):
    reference = built.reference  # no group at the blog's beta 0.999: every group
    ema = reference[(reference["group"] == "beta=0.9") & (reference["quantity"] == "mse")]
    ema = ema[ema["model"] == "ema"].iloc[0]
    assert ema["published"] == PUBLISHED_RUN["ema"]["mse"]
    assert ema["percentile"] == pytest.approx(st.percentileofscore(BETTER_EMA, 0.0044, kind="mean"))
    assert ema["mean"] == pytest.approx(BETTER_EMA.mean())
    change = reference[reference["quantity"] == "MSE change %"].iloc[0]
    assert change["published"] == pytest.approx(-20.0)


# --- the CLI ----------------------------------------------------------------------------------------------------


def test_report_cli_writes_every_file(sweep, tmp_path):
    out = tmp_path / "out"
    result = invoke("report", sweep, "--where", "data.noise=0.1", "--out", out)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert ": incomplete" in text and ": interrupted" in text
    assert "2 run folder(s) skipped (1 incomplete, 1 interrupted)" in text
    assert "better" in result.output and "open" in result.output
    names = {p.name for p in out.iterdir()}
    assert {"report.csv", "report.md", "report.html", "comparison.csv", "per_run.csv"} <= names
    assert {"fig_mse_vs_beta.png", "fig_paired_mse.png", "fig_val_loss.png", "fig_r2.png"} <= names
    table = pd.read_csv(out / "report.csv")
    assert list(table["beta"]) == [0.9, 0.99]
    assert list(table["ema_mse_verdict"]) == ["better", "inconclusive"]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and 'src="fig_' not in html
    assert 'class="better"' in html
    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# ") and "](fig_paired_mse.png)" in markdown
    comparison = pd.read_csv(out / "comparison.csv")
    assert len(comparison) == 2 * (3 + 3 + 1)  # groups × (final + best metrics + stability)


def test_report_groups_by_swept_keys_and_refuses_ambiguous_by(sweep, tmp_path):
    result = invoke("report", sweep, "--out", tmp_path, "--format", "csv")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(io.StringIO(result.stdout))
    assert list(zip(table["beta"], table["data.noise"])) == [(0.9, 0.1), (0.9, 0.2), (0.99, 0.1)]
    ambiguous = invoke("report", sweep, "--out", tmp_path, "--by", "ema.beta")
    assert ambiguous.exit_code == 2 and "data.noise" in ambiguous.output
    assert len(ambiguous.output.strip().splitlines()) == 2 + 1 + 1  # two "skipped" lines, their count, the error
    grouped = invoke(
        "report", sweep, "--out", tmp_path, "--by", "data.noise", "--where", "beta=0.9", "--format", "json"
    )
    assert grouped.exit_code == 0, grouped.output
    document = json.loads(grouped.stdout)
    assert document["by"] == ["data.noise"] and [g["data.noise"] for g in document["groups"]] == [0.1, 0.2]
    assert {row["verdict"] for row in document["comparison"] if row["metric"] == "mse" and row["selection"] == "final"}
    assert len(document["skipped"]) == 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--where", "data.nois=0.1"], "unknown key 'data.nois'"),
        (["--by", "ema.betta"], "unknown key 'ema.betta'"),
        (["--format", "xml"], "--format"),
        (["--where", "data.noise"], "KEY=VALUE"),
        (["--burn-in", "-1"], "--burn-in"),
        (["--where", "data.noise=0.7"], "no finished runs"),
    ],
)
def test_report_bad_options_are_one_line(sweep, tmp_path, args, needle):
    result = invoke("report", sweep, "--out", tmp_path, *args)
    assert result.exit_code not in (0, 1), result.output
    assert needle in result.stderr and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1


def test_report_markdown_format_prints_only_markdown(sweep, tmp_path):
    result = invoke("report", sweep, "--out", tmp_path, "--where", "data.noise=0.1", "--format", "markdown")
    assert result.exit_code == 0
    assert result.stdout.startswith("# emabench report") and "skipped" not in result.stdout


def test_ls_lists_runs_with_status(sweep):
    result = invoke("ls", sweep.parent)
    assert result.exit_code == 0, result.output
    for needle in ("completed", "diverged", "incomplete", "interrupted", "fake-seed3-b0.9-n0.1"):
        assert needle in result.output
    assert "33 runs (30 completed, 1 diverged, 1 incomplete, 1 interrupted)" in result.output.replace("\n", "")
    frame = inventory([sweep])
    assert frame.set_index("run_id").loc["fake-seed20-b0.9-n0.1", "epochs"] == EPOCHS  # from history.csv


def test_show_prints_config_and_final_table(sweep):
    result = invoke("show", "fake-seed3-b0.99", "--runs-dir", sweep.parent)
    assert result.exit_code == 0, result.output
    assert "beta: 0.99" in result.output and "final validation metrics" in result.output
    assert "completed" in result.output
    by_path = invoke("show", sweep / "fake-seed20-b0.9-n0.1")
    assert by_path.exit_code == 0 and "incomplete" in by_path.output
    for spec, needle in (("nope", "no such run"), ("fake-seed3", "ambiguous")):
        missing = invoke("show", spec, "--runs-dir", sweep.parent)
        assert missing.exit_code == 2 and needle in missing.output  # bad input (exit codes: errors.py)
        assert len(missing.output.strip().splitlines()) == 1
    ambiguous = invoke("show", "fake-seed3", "--runs-dir", sweep.parent).output
    for name in ("fake-seed3-b0.9-n0.1", "fake-seed3-b0.99-n0.1", "fake-seed3-b0.9-n0.2"):
        assert str(sweep / name) in ambiguous  # the matching folders' paths, not only their names


@pytest.mark.parametrize("command", ["report", "show", "ls"])
def test_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "Usage" in result.output


# --- figures ----------------------------------------------------------------------------------------------------


def test_band_curves_carry_and_common():
    curves = pd.DataFrame(
        {"run_id": ["a"] * 3 + ["b"] * 5, "model": "raw", "epoch": [1, 2, 3, 1, 2, 3, 4, 5]}
        | {"val_loss": [3.0, 2.0, 1.0, 5.0, 4.0, 3.0, 2.0, 1.0]}
    )
    carry = figs.band_curves(curves, "val_loss", "carry")
    assert list(carry["epoch"]) == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(carry["mean"], [4.0, 3.0, 2.0, 1.5, 1.0])  # run a keeps 1.0 after epoch 3
    assert list(carry["n"]) == [2] * 5
    common = figs.band_curves(curves, "val_loss", "common")
    assert list(common["epoch"]) == [1, 2, 3]


def test_figures_are_figures_with_one_line_per_model_or_seed(built):
    from matplotlib.figure import Figure

    curves = figs.curves_figure(built.curves, "val_loss", log=True, label="validation loss")
    assert isinstance(curves, Figure)
    visible = [ax for ax in curves.axes if ax.get_visible()]
    assert len(visible) == 2 and all(len(ax.get_lines()) == 2 for ax in visible)  # raw, ema per group
    paired = figs.paired_figure(built.per_run, "mse", higher_is_better=False)
    assert [len(ax.get_lines()) for ax in paired.axes if ax.get_visible()] == [12, 12]  # one per finite seed pair
    sweep = figs.sweep_figure(built.comparison, "ema.beta", "mse", higher_is_better=False)
    left, right = sweep.axes
    assert len(left.containers) == 2 and len(right.containers) == 1  # raw and ema; ema − raw
    assert set(render_files(built)) >= set(report_figures(built))


def test_frames_imports_no_renderer():
    """The report's statistics (frames and everything it pulls in) never import a renderer or matplotlib."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "emabench"
    renderers = {"figures", "blocks", "markdown", "html", "files", "terminal"}
    seen, todo = set(), ["emabench.report.frames"]
    while todo:
        name = todo.pop()
        seen.add(name)
        tree = ast.parse((package.parent / (name.replace(".", "/") + ".py")).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):  # `from emabench.report import stats` imports a module too
                modules += [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            for module in modules:
                assert not module.startswith("matplotlib"), f"{name} imports {module}"
                if (
                    module.startswith("emabench.report.")
                    and (package.parent / (module.replace(".", "/") + ".py")).is_file()
                ):
                    assert module.rsplit(".", 1)[1] not in renderers, f"{name} imports the renderer {module}"
                    if module not in seen:
                        todo.append(module)
    assert {"emabench.report.comparisons", "emabench.report.stats", "emabench.report.published"} <= seen
