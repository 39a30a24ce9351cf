"""Your own torch Datasets (``data: {source: dataset}``) and your own loss and metrics (``loss:``, ``metrics:``).

A Dataset is read every epoch through a ``DataLoader`` in the run's own order, its augmentation seeded per batch
from the run's seed: a run's history is the same bytes alone or in a stack, with any ``num_workers``, after a resume,
and for a Dataset without randomness the same as reading it once (``fetch: once``). Contract violations, bad import
paths and functions returning the wrong thing are one line each, before anything is written.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from emabench.cli import app
from emabench.config import Config, validate_config, with_overrides
from emabench.errors import ConfigError
from emabench.runs.encoding import rows_to_csv
from emabench.tasks import datasets
from emabench.tasks.data import make_dataset
from emabench.train.loop import Trainer
from tests.conftest import ROOT
from tests.test_same_result import histories  # each config's history as CSV text, trained as one stack

HELPERS = f"{ROOT / 'tests' / 'torch_datasets.py'}"


def config(**changes: object) -> Config:
    """A small MLP with dropout on 240 training digits, read from a Dataset that augments (3 epochs)."""
    raw = {
        "name": "own-data",
        "device": "cpu",
        "task": "classification",
        "data": {"source": "dataset", "factory": f"{HELPERS}:digits", "kwargs": {"augment": True}},
        "model": {"name": "mlp", "hidden_sizes": [16], "dropout": 0.2},
        "train": {"max_epochs": 3, "batch_size": 32, "optimizer": {"name": "adam", "lr": 3e-3},
                  "early_stopping": {"patience": None}},
        "ema": {"update_after_step": 5},
    }  # fmt: skip
    return with_overrides(validate_config(raw), changes) if changes else validate_config(raw)


def neighbours(base: Config) -> list[Config]:
    return [with_overrides(base, {"seed": 10 + i, "ema.beta": 0.9, "model.dropout": 0.1 * (i % 2)}) for i in range(3)]


# --- the same run, whatever reads it --------------------------------------------------------------------------------


def test_an_augmented_run_alone_equals_stacked_and_any_workers() -> None:
    base = config()
    (alone,) = histories([base])
    others = neighbours(base)
    assert histories([others[0], base, *others[1:]])[1] == alone
    (two_workers,) = histories([with_overrides(base, {"data.num_workers": 2})])
    assert two_workers == alone
    (again,) = histories([base])
    assert again == alone
    (unaugmented,) = histories([with_overrides(base, {"data.kwargs": {"augment": False}})])
    assert unaugmented != alone  # the augmentation ran


def test_a_resumed_run_equals_one_never_stopped() -> None:
    base = config(**{"train.max_epochs": 4})
    (alone,) = histories([base])
    first = Trainer([base, *neighbours(base)[:2]], make_dataset(base.data, base.task))
    rows = [record.row for _ in range(2) for record in first.run_epoch() if record.replica == 0]
    resumed = Trainer.resume([base], make_dataset(base.data, base.task), [first.replica_state(0)])
    while not resumed.done:
        rows += [record.row for record in resumed.run_epoch()]
    assert rows_to_csv(rows) == alone


def test_without_randomness_reading_once_is_the_same_run() -> None:
    """A Dataset without augmentation read every epoch gives the bytes of the same samples read once (the tensor
    path every built-in source takes), with ``drop_last`` and a custom model's own dropout too."""
    plain = config(**{"data.kwargs": {"augment": False}, "data.drop_last": True})
    assert histories([plain]) == histories([with_overrides(plain, {"data.fetch": "once"})])
    custom = with_overrides(
        plain,
        {"data.kwargs": {"augment": False, "images": True},
         "model": {"name": "custom", "factory": f"{ROOT / 'examples' / 'own_loop_runner.py'}:Net"},
         "train.max_epochs": 2},
    )  # fmt: skip
    assert histories([custom]) == histories([with_overrides(custom, {"data.fetch": "once"})])


def test_drop_last_leaves_out_the_last_partial_batch() -> None:
    plain = config(**{"data.kwargs": {"augment": False}, "data.fetch": "once", "train.batch_size": 100})
    kept, dropped = (
        Trainer([c], make_dataset(c.data, c.task))
        for c in (
            plain,
            config(
                **{
                    "data.kwargs": {"augment": False},
                    "data.fetch": "once",
                    "train.batch_size": 100,
                    "data.drop_last": True,
                }
            ),
        )
    )
    kept.run_epoch(), dropped.run_epoch()
    assert (kept.step, dropped.step) == (3, 2)  # 240 samples: 100 + 100 + 40, or 100 + 100


def test_a_batch_is_read_under_its_own_seed_and_leaves_torchs_generator_alone() -> None:
    train = make_dataset(config().data, "classification").train_set
    read = lambda seed: next(iter(datasets.loader(train.dataset, [(seed, [0, 1, 2])], True)))[0]  # noqa: E731
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    first, again, other = read(1), read(1), read(2)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert datasets.batch_seed(0, 1, 0) != datasets.batch_seed(0, 2, 0) != datasets.batch_seed(1, 1, 0)


def test_the_sets_are_used_as_they_are() -> None:
    data = make_dataset(config().data, "classification")
    assert data.train_set is not None and data.x_train is None and data.n_train == 240
    assert (tuple(data.x_val.shape), tuple(data.x_test.shape), data.n_classes) == ((80, 64), (80, 64), 10)
    assert data.x_val.dtype == torch.float32 and data.y_val.dtype == torch.int64
    regression = make_dataset(config(**{"data.kwargs": {"regression": True}}).data, "regression")
    assert regression.y_val.shape == (80, 1) and regression.y_val.dtype == torch.float32
    assert regression.n_classes is None
    no_test = make_dataset(config(**{"data.kwargs": {"test": False}}).data, "classification")
    assert not no_test.has_test


# --- one line for a broken contract -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "factory,message",
    [
        ("as_tuple", "must return a dict {'train': Dataset, 'val': Dataset} (and 'test' for a test set), got tuple"),
        ("without_val", "has no 'val' (the keys: 'train', 'val' and optionally 'test')"),
        ("iterable", "'train' must be a map-style Dataset (__len__ and __getitem__; an IterableDataset"),
        ("dict_items", "'train' items must be (x, y) pairs, got dict"),
        ("vector_targets", "'train' targets must be one class index per item, got a tensor of shape (2,)"),
        ("no_such_function", "has no attribute 'no_such_function'"),
    ],
)
def test_a_factory_that_breaks_the_contract_is_one_line(factory: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        make_dataset(config(**{"data.factory": f"{HELPERS}:{factory}", "data.kwargs": {}}).data, "classification")
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"holdout": 0.2}, "data: holdout is not for source: dataset, which is never re-split"),
        ({"split": "per_seed"}, "data: split is not for source: dataset, which is never re-split"),
        ({"test_size": 0.3}, "data: test_size is not for source: dataset"),
        ({"n_classes": 3}, None),
    ],
)
def test_resplitting_keys_are_refused(change: dict, message: str | None) -> None:
    raw = config().to_dict()
    raw["data"] |= change
    if message is None:  # a valid key, but labels up to 9 do not fit 3 classes: refused when the data is read
        with pytest.raises(ConfigError, match="class labels run from 0 to 9; need 0 … K − 1 \\(data.n_classes is 3\\)"):
            make_dataset(validate_config(raw).data, "classification")
        return
    with pytest.raises(ConfigError, match=message):
        validate_config(raw)


# --- a loss and metrics of your own -----------------------------------------------------------------------------------


def test_your_loss_and_metrics_train_and_are_recorded() -> None:
    """``cross_entropy`` as your loss trains as the task's own (within float32 rounding: your val_loss is computed in
    the outputs' float32); your metrics land in the history beside the task's, equal to a closed form."""
    plain = config(**{"data.kwargs": {"augment": False}})
    mine = with_overrides(
        plain,
        {"loss": f"{HELPERS}:cross_entropy",
         "metrics": {"top2": {"fn": f"{HELPERS}:top2", "higher_is_better": True},
                     "margin": {"fn": f"{HELPERS}:margin", "higher_is_better": True}}},
    )  # fmt: skip
    theirs, ours = (pd.read_csv(io.StringIO(h)) for h in (*histories([plain]), *histories([mine])))
    assert [c for c in ours.columns if c.startswith("raw_")] == [
        "raw_val_loss", "raw_accuracy", "raw_f1_macro", "raw_ece", "raw_top2", "raw_margin"
    ]  # fmt: skip
    np.testing.assert_allclose(ours[theirs.columns].to_numpy(), theirs.to_numpy(), rtol=1e-5, atol=1e-6)
    assert (ours["raw_top2"] >= ours["raw_accuracy"]).all() and (ours["raw_top2"] <= 1).all()
    trainer = Trainer([mine], make_dataset(mine.data, mine.task))
    trainer.run_epoch()
    out = trainer.evaluate()
    with torch.no_grad():
        trainer.model.eval()
        scores = trainer.model(trainer.data.x_val)[0]
    top2 = (scores.topk(2, -1).indices == trainer.data.y_val.unsqueeze(-1)).any(-1).double().mean()
    assert float(out["raw"]["top2"][0]) == pytest.approx(float(top2))


def test_your_loss_is_per_run_in_a_stack() -> None:
    mine = config(**{"loss": f"{HELPERS}:cross_entropy"})
    (alone,) = histories([mine])
    assert histories([*neighbours(mine)[:1], mine])[1] == alone


@pytest.mark.parametrize(
    "change,message",
    [
        ({"loss": f"{HELPERS}:per_sample"}, "loss: must return one number (a 0-d float tensor), got a tensor of shape"),
        ({"loss": f"{HELPERS}:detached"}, "loss: returns a tensor with no gradient"),
        ({"loss": f"{HELPERS}:raises"}, "raises raised KeyError: 'no such column'"),
        ({"loss": "no_such_package.losses:mine"}, "loss: cannot import 'no_such_package.losses'"),
        ({"metrics": {"accuracy": {"fn": f"{HELPERS}:top2", "higher_is_better": True}}},
         "metrics.accuracy: task 'classification' has a metric 'accuracy' of its own; rename yours"),
        ({"metrics": {"lr": {"fn": f"{HELPERS}:top2", "higher_is_better": True}}},
         "metric name 'lr' is a column emabench uses already"),
        ({"metrics": {"bad": {"fn": f"{HELPERS}:per_sample", "higher_is_better": False}}},
         "metrics.bad.fn: must return one number"),
    ],
)  # fmt: skip
def test_a_bad_loss_or_metric_is_one_line_before_anything_is_written(tmp_path, change: dict, message: str) -> None:
    path = tmp_path / "config.yaml"
    from emabench.config import dump_yaml

    path.write_text(dump_yaml(with_overrides(config(), change).to_dict()))
    for command in (["run", str(path)], ["sweep", str(path), "--seeds", "0,1"]):
        result = CliRunner().invoke(app, [*command, "--runs-dir", str(tmp_path / "runs"), "-q"])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
        assert not (tmp_path / "runs").exists()


def test_the_report_compares_your_metrics_in_their_direction(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    path = tmp_path / "config.yaml"
    from emabench.config import dump_yaml

    mine = config(**{
        "train.max_epochs": 2,
        "metrics": {"top2": {"fn": f"{HELPERS}:top2", "higher_is_better": True},
                    "margin": {"fn": f"{HELPERS}:margin", "higher_is_better": False}},
    })  # fmt: skip
    path.write_text(dump_yaml(mine.to_dict()))
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["sweep", str(path), "--seeds", "0-2", "--runs-dir", str(runs), "-q"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["report", "--runs-dir", str(runs), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    comparison = pd.read_csv(tmp_path / "report" / "comparison.csv")
    directions = comparison.drop_duplicates("metric").set_index("metric")["higher_is_better"]
    assert bool(directions["top2"]) and not bool(directions["margin"]) and bool(directions["accuracy"])
    assert set(comparison["task"]) == {"classification(accuracy, f1_macro, ece, top2:higher, margin:lower)"}
    metrics = pd.read_csv(next(runs.rglob("metrics.csv")))
    assert {"top2", "margin", "test_top2", "test_margin"} <= set(metrics.columns)
