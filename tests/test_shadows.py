"""Many averagers in one run: config validation, history/metrics columns, stacking, shadow mode, SWA lr."""

from __future__ import annotations

import pytest

from emabench.averaging import swa_annealed_lr
from emabench.config import load_config, validate_config, with_overrides
from emabench.errors import ConfigError
from emabench.runs.plan import with_beta_shadows
from emabench.runs.single import run

from .conftest import ROOT, TINY
from .test_engine import assert_histories_close, engine_history

AVERAGERS = ROOT / "configs" / "averagers.yaml"


@pytest.fixture
def tiny_averagers():
    overrides = [f"{k}={v}" for k, v in (dict(TINY) | {"device": "cpu", "train.max_epochs": 8}).items()]
    raw = load_config(AVERAGERS, [*overrides, "averagers.swa.start_epoch=2"]).to_dict()
    raw["averagers"]["posthoc"]["snapshot_every"] = 14  # 7 steps per epoch
    return validate_config(raw)


def test_averagers_config_lists_the_issue_rules():
    cfg = load_config(AVERAGERS)
    kinds = {spec.kind for spec in cfg.averagers.values()}
    assert kinds == {"constant_ema", "tf_ema", "swa", "posthoc"}
    assert cfg.model_names() == ["raw", "ema", "ema_const", "tf", "swa", "posthoc"]


def test_every_model_gets_history_columns_and_a_metrics_row(tiny_averagers, tmp_path):
    outcome = run(tiny_averagers, tmp_path)
    history = outcome.folder.read_history()
    for model in ["raw", "ema", "ema_const", "tf", "swa"]:
        for metric in ["val_loss", "mse", "mae", "r2"]:
            assert f"{model}_{metric}" in history.columns
    assert history["swa_mse"].iloc[:1].isna().all() and history["swa_mse"].iloc[2:].notna().all()
    metrics = outcome.folder.read_metrics()
    final = metrics[~metrics["model"].str.contains("@")]
    assert list(final["model"]) == [
        "raw",
        "ema",
        "ema_const",
        "tf",
        "swa",
        "posthoc_0.05",
        "posthoc_0.1",
        "posthoc_0.2",
    ]
    best = metrics[metrics["model"].str.endswith("@best")]
    assert {"raw@best", "ema@best", "swa@best"} <= set(best["model"])
    posthoc = final[final["model"].str.startswith("posthoc")]
    assert posthoc["fit_error"].notna().all() and (posthoc["fit_error"] >= 0).all()


def test_stacked_runs_with_averagers_equal_runs_alone(tiny_averagers):
    configs = [
        with_overrides(tiny_averagers, {"seed": 0}),
        with_overrides(tiny_averagers, {"seed": 1, "ema.beta": 0.99, "train.max_epochs": 5}),
    ]
    stacked = engine_history(configs)
    assert len(stacked[0]) != len(stacked[1])  # replica 1 stops early and is dropped from the stack
    for config, history in zip(configs, stacked):
        alone = engine_history([config])[0]
        assert_histories_close(history, alone)
        for column in ["swa_mse", "tf_mse", "ema_const_mse"]:
            for a, b in zip(history, alone):
                assert a[column] == pytest.approx(b[column], abs=1e-5, nan_ok=True)


def test_shadow_beta_equals_the_run_at_that_beta_when_raw_drives_training(tiny_config):
    raw_driven = with_overrides(tiny_config, {"train.scheduler.monitor": "raw", "train.early_stopping.monitor": "raw"})
    shadowed = with_beta_shadows(raw_driven, [0.9])
    (with_shadow,) = engine_history([shadowed])
    (at_beta,) = engine_history([with_overrides(raw_driven, {"ema.beta": 0.9})])
    for a, b in zip(with_shadow, at_beta):
        assert a["ema_0.9_mse"] == pytest.approx(b["ema_mse"], abs=1e-6)


def test_swa_lr_schedule_takes_over_from_its_start_epoch(tiny_config):
    raw = with_overrides(tiny_config, {"train.max_epochs": 7, "train.early_stopping.patience": None}).to_dict()
    raw["averagers"] = {"swa": {"kind": "swa", "start_epoch": 3}}
    raw["train"]["swa_lr"] = {"start_epoch": 3, "swa_lr": 1e-4, "anneal_epochs": 2, "anneal_strategy": "linear"}
    (history,) = engine_history([validate_config(raw)])
    lrs = [row["lr"] for row in history]  # lrs[i]: the lr used during epoch i + 1
    for index in range(3, 7):  # after epoch 3 (start_epoch) the SWA schedule sets the next epochs' lr
        expected = swa_annealed_lr(index - 2, initial_lr=lrs[2], swa_lr=1e-4, anneal_epochs=2, strategy="linear")
        assert lrs[index] == pytest.approx(expected)
    assert lrs[3] == pytest.approx(5.5e-4) and lrs[-1] == pytest.approx(1e-4)


BAD = {
    "unknown kind": ({"x": {"kind": "lookahead", "beta": 0.9}}, "averagers.x"),
    "beta out of range": ({"x": {"kind": "tf_ema", "beta": 1.0}}, "averagers.x.beta"),  # the union tag is not repeated
    "beta and half-life": (
        {"x": {"kind": "tf_ema", "beta": 0.9, "half_life": {"value": 3, "unit": "epochs"}}},
        "exactly one of beta or half_life",
    ),
    "sigma_rel zero": ({"x": {"kind": "power_ema", "sigma_rel": 0.0}}, "sigma_rel"),
    "sigma_rel too large": ({"x": {"kind": "power_ema", "sigma_rel": 0.5}}, "sigma_rel"),
    "one profile": (
        {"x": {"kind": "posthoc", "sigma_rels": [0.1], "snapshot_every": 10, "targets": [0.1]}},
        "averagers.x.sigma_rels",
    ),
    "swa after max epochs": ({"x": {"kind": "swa", "start_epoch": 500}}, "averagers.x.start_epoch"),
    "reserved name": ({"raw": {"kind": "tf_ema", "beta": 0.9}}, "averager name 'raw'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_averagers_are_one_line_errors_naming_the_key(seed_config, case):
    averagers, needle = BAD[case]
    raw = seed_config.to_dict() | {"averagers": averagers}
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_duplicate_averager_names_are_refused(tmp_path):
    text = AVERAGERS.read_text() + "  tf:\n    kind: tf_ema\n    beta: 0.99\n"
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="duplicate key 'tf'"):
        load_config(path)


def test_monitor_must_be_a_per_epoch_model(seed_config):
    raw = seed_config.to_dict()
    raw["averagers"] = {"ph": {"kind": "posthoc", "sigma_rels": [0.05, 0.2], "snapshot_every": 50, "targets": [0.1]}}
    raw["train"]["early_stopping"]["monitor"] = "ph"
    with pytest.raises(ConfigError, match="train.early_stopping.monitor: 'ph' is not a model evaluated every epoch"):
        validate_config(raw)


def _final_extras(configs):
    from emabench.tasks.data import make_dataset
    from emabench.train.loop import Trainer

    trainer, extras = Trainer(configs, make_dataset(configs[0].data)), {}
    while not trainer.done:
        for record in trainer.run_epoch():
            if record.stop_reason:
                extras[record.replica] = record.final_extra["posthoc"]
    return [extras[r] for r in range(len(configs))]


def test_posthoc_at_an_off_grid_stop_is_exact_for_a_profile_and_independent_of_the_stack(tiny_averagers):
    short = with_overrides(tiny_averagers, {"train.max_epochs": 5})  # 35 steps: past the last snapshot (28)
    (alone,) = _final_extras([short])
    assert alone["posthoc_0.05"]["fit_error"] < 1e-6  # 0.05 is one of the profiles: exact up to the solver
    assert 0 < alone["posthoc_0.1"]["fit_error"] < 0.25  # three snapshots per profile: a coarse but honest fit
    stacked = _final_extras([short, with_overrides(tiny_averagers, {"seed": 3})])[0]
    assert stacked == alone  # the same bits


def test_report_says_when_betas_were_shadows(tmp_path):
    from typer.testing import CliRunner

    from emabench.cli import app

    from .conftest import SEED_CONFIG, TINY_SETS

    args = ["sweep", str(SEED_CONFIG), "--beta", "0.9,0.99", "--seeds", "0-1", "--shadows", "--runs-dir", str(tmp_path)]
    args += [a for s in [*TINY_SETS, "device=cpu"] for a in ("--set", s)]
    runner = CliRunner()
    assert runner.invoke(app, [*args, "-q"]).exit_code == 0
    result = runner.invoke(app, ["report", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Shadow mode" in result.output
    assert "Shadow mode (`sweep --shadows`)" in (tmp_path / "report.md").read_text()
    assert '"mode": "shadows"' in next(tmp_path.glob("sweep-*/sweep.json")).read_text()
