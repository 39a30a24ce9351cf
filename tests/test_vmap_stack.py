"""``model.stack: vmap``: a sweep of a user's own module trained as one model through ``torch.func``, each replica equal
to its run alone within float rounding, a module ``vmap`` cannot run trained one run at a time, and a stopped stack
resumed exactly."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from emabench.cli import app
from emabench.config import Config, load_config, with_overrides
from emabench.config.yaml_io import dump_yaml
from emabench.runs.plan import describe, plan_stacks
from emabench.runs.sweep import sweep
from emabench.stack.vmapped import VmapStack
from tests.conftest import ROOT

SHORT = {
    "train.max_epochs": 4,
    "averagers.swa.start_epoch": 1,
    "train.lr_schedule.warmup": 0,
    "ema.update_after_step": 10,
    "model.kwargs.dropout": 0.0,  # dropout under vmap draws other masks than alone
}


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.chdir(ROOT)  # the example's CSV and factory paths are relative to the repository root
    return with_overrides(load_config(ROOT / "examples/custom_model.yaml"), SHORT)


def metrics_by_seed(folder: Path) -> pd.DataFrame:
    frames = []
    for path in folder.rglob("metrics.csv"):
        frame = pd.read_csv(path)
        frame["seed"] = yaml.safe_load((path.parent / "config.yaml").read_text())["seed"]
        frames.append(frame)
    return pd.concat(frames).sort_values(["seed", "model"]).reset_index(drop=True)


def test_a_vmap_stack_trains_each_run_as_it_trains_alone_within_rounding(example: Config, tmp_path: Path) -> None:
    seeds = {"seed": [0, 1, 2]}
    vmapped = with_overrides(example, {"model.stack": "vmap"})
    runs = [with_overrides(vmapped, {"seed": s}) for s in seeds["seed"]]
    assert [len(stack) for stack in plan_stacks(runs, "auto", 1)] == [3]
    assert describe(example, seeds, "auto", 1).stacks == 3  # stack: none, one run per unit
    for config, name in ((example, "alone"), (vmapped, "vmap")):
        _, outcomes = sweep(config, seeds, tmp_path / name)
        assert [o.status for o in outcomes] == ["completed"] * 3
    alone, stacked = metrics_by_seed(tmp_path / "alone"), metrics_by_seed(tmp_path / "vmap")
    assert list(alone["model"]) == list(stacked["model"]) and len(alone) == 12
    for column in ("mse", "mae", "r2"):
        assert stacked[column].to_numpy() == pytest.approx(alone[column].to_numpy(), rel=1e-5)
    assert alone["mse"].nunique() == 12  # three different runs, four different models each


def test_a_module_vmap_cannot_run_trains_one_run_at_a_time(example: Config, tmp_path: Path) -> None:
    config = with_overrides(
        example,
        {
            "model.factory": "tests.custom_models:data_dependent",
            "model.kwargs": {"in_features": 8},
            "model.stack": "vmap",
        },
    )
    plan = describe(config, {"seed": [0, 1]}, "auto", 1)
    assert plan.stacks == 2
    ((factory, why),) = plan.unstackable.items()
    assert factory == "tests.custom_models:data_dependent" and "item" in why
    (tmp_path / "config.yaml").write_text(dump_yaml(config.to_dict()))
    args = ["sweep", str(tmp_path / "config.yaml"), "--seeds", "0,1", "--runs-dir", str(tmp_path / "runs")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "One run at a time: model.stack=vmap cannot run tests.custom_models:data_dependent" in result.output
    assert "Sweep: 2 runs (one model per run" in " ".join(result.output.split())


def test_a_stopped_vmap_stack_resumes_exactly(example: Config, tmp_path: Path) -> None:
    config = with_overrides(example, {"model.stack": "vmap", "train.max_epochs": 6})
    grid = {"seed": [0, 1]}
    sweep(config, grid, tmp_path / "straight")
    asked: list[bool] = []
    _, first = sweep(
        config, grid, tmp_path / "cut", on_epoch=lambda t, r: asked.append(t.epoch >= 3), stop=lambda: any(asked)
    )
    assert [o.status for o in first] == ["interrupted"] * 2
    _, second = sweep(config, grid, tmp_path / "cut")
    assert [(o.status, o.resumed_from) for o in second] == [("completed", 3)] * 2
    straight, cut = metrics_by_seed(tmp_path / "straight"), metrics_by_seed(tmp_path / "cut")
    pd.testing.assert_frame_equal(straight, cut, check_exact=True)


def test_selected_replicas_keep_their_own_parameters() -> None:
    torch.manual_seed(0)
    copies = [nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)) for _ in range(3)]
    stack = VmapStack(copies, (3,))
    stack.pack()
    x = torch.randn(5, 3)
    before = stack.eval()(x)
    stack.select_replicas(torch.tensor([0, 2]))
    assert stack.replicas == 2
    torch.testing.assert_close(stack(x), before[[0, 2]], rtol=0, atol=0)
    for copy_, row in zip((copies[0], copies[2]), stack(x)):
        torch.testing.assert_close(copy_.eval()(x), row, rtol=1e-6, atol=1e-6)
