"""No sweep trains the same run twice: points that resolve to the same config, or that differ only in a warm-up EMA β
its decay never reaches within ``max_epochs``, are named before training and trained once (``sweep.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emabench.cli import app
from emabench.config import Config, with_overrides
from emabench.runs.plan import expand_grid
from emabench.runs.sweep import sweep
from emabench.runs.sweep_folder import SWEEP
from emabench.train.build import TrainingSizes, warmup_ceiling
from tests.conftest import SEED_CONFIG, TINY_SETS
from tests.test_same_result import histories


def test_the_warmup_ceiling_is_the_seed_formula(tiny_config: Config) -> None:
    # TINY: 192 training samples in batches of 32 (6 steps an epoch), 6 epochs, averaging after step 5
    steps = tiny_config.train.max_epochs * TrainingSizes().steps_per_epoch(tiny_config)
    assert steps == 36
    assert warmup_ceiling(tiny_config.ema, steps) == pytest.approx(1 - (1 + 30) ** (-2 / 3))  # 0.8987


def test_betas_the_warmup_never_reaches_are_one_run(tiny_config: Config) -> None:
    grid = expand_grid(tiny_config, {"ema.beta": [0.5, 0.9, 0.99], "seed": [0, 1]})
    assert [(c.ema.beta, c.seed) for c in grid.configs] == [(0.5, 0), (0.5, 1), (0.9, 0), (0.9, 1)]
    assert [(s.requested, s.same_as) for s in grid.same] == [
        ({"ema.beta": 0.99, "seed": 0}, {"ema.beta": 0.9, "seed": 0}),
        ({"ema.beta": 0.99, "seed": 1}, {"ema.beta": 0.9, "seed": 1}),
    ]
    assert "reaches at most 0.8987 within 6 epochs (36 steps)" in grid.same[0].why
    # and the claim holds: trained, the two βs give the same bytes (0.5 binds and does not)
    at = {beta: with_overrides(tiny_config, {"ema.beta": beta}) for beta in (0.5, 0.9, 0.99)}
    assert histories([at[0.9]]) == histories([at[0.99]]) != histories([at[0.5]])


def test_a_longer_run_reaches_the_beta_and_keeps_both(tiny_config: Config) -> None:
    longer = with_overrides(tiny_config, {"train.max_epochs": 40})  # 240 steps: the decay passes 0.9 (at ~31)
    grid = expand_grid(longer, {"ema.beta": [0.9, 0.99]})
    assert len(grid.configs) == 2 and grid.same == []


def test_the_sweep_trains_each_run_once_and_records_the_rest(tiny_config: Config, tmp_path: Path) -> None:
    folder, outcomes = sweep(tiny_config, {"ema.beta": [0.9, 0.99], "seed": [0, 1]}, tmp_path)
    assert sorted(o.status for o in outcomes) == ["completed", "completed"]
    spec = json.loads((folder / SWEEP).read_text())
    assert [entry["requested"] for entry in spec["same_runs"]] == [
        {"ema.beta": 0.99, "seed": 0},
        {"ema.beta": 0.99, "seed": 1},
    ]
    trained = {p.name for p in folder.iterdir() if p.is_dir()}
    assert {entry["run"] for entry in spec["same_runs"]} <= trained


def test_the_command_line_names_them_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "sweep",
            str(SEED_CONFIG),
            *[a for s in TINY_SETS for a in ("--set", s)],
            "--beta",
            "0.9,0.99",
            "--seeds",
            "0-2",
            "--runs-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Sweep: 3 runs" in text
    assert (
        "Trained once: beta=0.99 is the same run as beta=0.9 (3 points): the EMA warm-up's decay reaches at most"
        in text
    )
    assert "(3 completed)" in text
