"""The Lightning callback EMAComparison: raw as Lightning validates it, each average on the same batches, one run
folder; the raw run is the run without the callback. Slow (importing Lightning alone takes seconds); skipped where
Lightning is not installed (``pip install 'emabench[lightning]'``)."""

from __future__ import annotations

import io
import json
import re
import signal
import sys
from contextlib import redirect_stdout
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from emabench.averaging import EMA, SWA
from emabench.cli import app
from emabench.runs.folder import RunFolder
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture
def lit() -> SimpleNamespace:
    """Lightning, the callback and the test module, imported only when a test of this file runs (skipped where
    Lightning is absent)."""
    lightning = pytest.importorskip("lightning")
    from emabench.integrations import lightning as integration
    from tests import lightning_modules

    return SimpleNamespace(L=lightning, integration=integration, modules=lightning_modules)


def test_raw_is_validated_as_lightning_does_and_each_average_on_the_same_batches(lit: SimpleNamespace, tmp_path: Path):
    lit.L.seed_everything(7, verbose=False)
    plain = lit.modules.Classifier()
    trainer = lit.modules.fit(plain, [])
    lit.L.seed_everything(7, verbose=False)
    module = lit.modules.Classifier()
    averagers = {"ema": partial(EMA, beta=0.9, update_after_step=5), "swa": partial(SWA, start_step=20)}
    comparison = lit.integration.EMAComparison(averagers, runs_dir=tmp_path, task="classification")
    tracked = lit.modules.fit(module, [comparison])
    # the callback draws nothing and swaps weights back exactly: the raw run is the run without it
    for a, b in zip(plain.parameters(), module.parameters()):
        assert torch.equal(a, b)
    (folder,) = tmp_path.iterdir()
    history = pd.read_csv(folder / "history.csv")
    assert list(history.columns) == [
        "epoch",
        "train_loss",
        "lr",
        "raw_val_loss",
        "raw_accuracy",
        "ema_val_loss",
        "ema_accuracy",
        "ema_decay",
        "swa_val_loss",
        "swa_accuracy",
        "swa_decay",
    ]
    assert history["lr"].tolist() == [0.1, 0.05, 0.025]
    last = history.iloc[-1]
    # raw: Lightning's own epoch values (batch-size-weighted means of what validation_step logged)
    assert last["raw_val_loss"] == pytest.approx(float(trainer.callback_metrics["val_loss"]), rel=1e-6)
    assert last["raw_accuracy"] == pytest.approx(float(tracked.callback_metrics["val/accuracy"]), rel=1e-6)
    # each average: its own model evaluated on the whole validation set after fit, the mean over 40 rows
    x, y = lit.modules.loaders()[1].dataset.tensors
    for name in ("ema", "swa"):
        averaged = comparison.averagers[name].averaged_model.eval()
        with torch.no_grad():
            assert last[f"{name}_val_loss"] == pytest.approx(float(F.cross_entropy(averaged(x), y)), rel=1e-6)
        assert comparison.averagers[name].num_updates == tracked.global_step == 30
    assert last["ema_decay"] == comparison.averagers["ema"].decay
    assert "log" not in module.__dict__  # the module's own self.log again
    task = json.loads((folder / "task.json").read_text())
    assert task["name"] == "classification(accuracy)"
    config = RunFolder(folder).read_config_text()
    assert "name: Classifier" in config and "seed: 7" in config and "fail_at: null" in config


def test_accumulated_gradients_update_the_averages_once_per_optimizer_step(lit: SimpleNamespace, tmp_path: Path):
    comparison = lit.integration.EMAComparison(
        {"ema": partial(EMA, beta=0.9)}, runs_dir=tmp_path, task="classification"
    )
    trainer = lit.modules.fit(lit.modules.Classifier(), [comparison], epochs=2, accumulate_grad_batches=3)
    assert trainer.global_step == 8  # 10 batches an epoch: 3 + 3 + 3 + the last one
    assert comparison.averagers["ema"].num_updates == 8


def test_a_failing_fit_leaves_a_failed_run_folder(lit: SimpleNamespace, tmp_path: Path):
    module = lit.modules.Classifier(fail_at=2)
    comparison = lit.integration.EMAComparison(
        {"ema": partial(EMA, beta=0.9)}, runs_dir=tmp_path, task="classification"
    )
    with pytest.raises(RuntimeError, match="the user's training_step failed"):
        lit.modules.fit(module, [comparison])
    (folder,) = tmp_path.iterdir()
    assert RunFolder(folder).status == "failed"
    failed = json.loads((folder / "FAILED").read_text())
    assert failed["epochs"] == 1 and "the user's training_step failed" in failed["traceback"]
    assert len(pd.read_csv(folder / "history.csv")) == 1


def test_ctrl_c_during_fit_leaves_an_interrupted_run_folder(lit: SimpleNamespace, tmp_path: Path):
    comparison = lit.integration.EMAComparison({"ema": partial(EMA)}, runs_dir=tmp_path, task="classification")
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning's answer to Ctrl-C: a graceful shutdown, then exit 1
            lit.modules.fit(lit.modules.Classifier(fail_at=3, interrupt=True), [comparison])
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
    (folder,) = tmp_path.iterdir()
    assert RunFolder(folder).status == "interrupted"
    assert json.loads((folder / "INTERRUPTED").read_text())["epochs"] == 2


@pytest.mark.parametrize(
    "module,kwargs,message",
    [
        ({"metric_object": True}, {}, "must be logged as a number or tensor"),
        ({}, {"metrics": {"accuracy": "lower"}}, "'accuracy' is higher-is-better (in task 'classification')"),
    ],
)
def test_what_cannot_be_compared_is_refused_in_one_line(
    lit: SimpleNamespace, tmp_path: Path, module: dict, kwargs: dict, message: str
):
    comparison = lit.integration.EMAComparison(
        {"ema": partial(EMA)}, runs_dir=tmp_path, task="classification", **kwargs
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        lit.modules.fit(lit.modules.Classifier(**module), [comparison], epochs=1)
    assert all(RunFolder(p).status == "failed" for p in tmp_path.iterdir())


def test_arguments_are_checked(lit: SimpleNamespace, tmp_path: Path):
    with pytest.raises(ValueError, match="'raw' is the module itself"):
        lit.integration.EMAComparison({"raw": partial(EMA)})
    with pytest.raises(ValueError, match="an emabench Averager of the module"):
        lit.modules.fit(
            lit.modules.Classifier(),
            [lit.integration.EMAComparison({"ema": EMA(nn.Linear(8, 3))}, runs_dir=tmp_path, task="classification")],
        )
    assert [lit.integration.metric_name(k) for k in ("val_loss", "val/loss", "val_acc", "val/top-5", "bleu")] == [
        "val_loss",
        "val_loss",
        "acc",
        "top_5",
        "bleu",
    ]


def test_the_lightning_example_runs_for_two_seeds_and_is_reported(
    lit: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    sys.modules.pop("own_loop_lightning", None)
    import own_loop_lightning

    for seed in (0, 1):
        with redirect_stdout(io.StringIO()):
            own_loop_lightning.main(["--epochs", "2", "--seed", str(seed)])
    folders = sorted((tmp_path / "runs").iterdir())
    assert [RunFolder(f).status for f in folders] == ["completed", "completed"]
    result = CliRunner().invoke(app, ["report"])
    assert result.exit_code == 0, result.output
    assert "classification(accuracy)" in result.output


def test_lightning_trains_the_run_of_a_loop_that_evaluates_once_an_epoch(
    lit: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The side effect of an extra pass over a DataLoader, measured: the Lightning example (one validation pass an
    epoch, the average evaluated on its batches) trains exactly the run of the plain loop that evaluates the model once
    an epoch; own_loop.py evaluates twice (raw, then EMA), so from epoch 2 on its dropout masks and shuffles differ."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    import own_loop_lightning
    from own_loop_untracked import Digits, Net, test, train

    with redirect_stdout(io.StringIO()):
        own_loop_lightning.main(["--epochs", "3", "--seed", "0"])
    (folder,) = (tmp_path / "runs").iterdir()
    lightning_losses = pd.read_csv(folder / "history.csv")["train_loss"].tolist()
    losses = {}
    for passes in (1, 2):
        torch.manual_seed(0)
        train_loader = DataLoader(Digits(train=True), batch_size=64, shuffle=True)
        test_loader = DataLoader(Digits(train=False), batch_size=1000)
        model = Net()
        ema = EMA(model, beta=0.99, update_after_step=10)
        optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
        losses[passes] = []
        for epoch in (1, 2, 3):
            losses[passes].append(train(SimpleNamespace(log_interval=0), model, ema, train_loader, optimizer, epoch))
            for _ in range(passes):
                test(model, test_loader)
            scheduler.step()
    assert losses[1] == lightning_losses  # the same run, to the last bit
    assert losses[2][0] == losses[1][0] and losses[2][1:] != losses[1][1:]
