"""A held-out test set, splits drawn per seed, and noise on the training labels only.

The test set is split off first and read only at a replica's end: changing every test label changes no decision and
no validation number. ``split: per_seed`` gives each seed its own split, the same for that seed whatever its stack.
``label_noise`` changes exactly the documented share of the training labels and nothing else.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from emabench.config import Config, load_config, with_overrides
from emabench.runs.encoding import rows_to_csv
from emabench.tasks.data import make_dataset
from emabench.train.loop import Trainer
from tests.conftest import ROOT
from tests.test_same_result import histories


@pytest.fixture
def digits() -> Config:
    config = load_config(ROOT / "configs" / "digits.yaml")
    small = {"name": "mlp", "hidden_sizes": [32], "activation": "relu", "dropout": 0.1, "norm": "none"}
    return with_overrides(
        config,
        {"device": "cpu", "train.max_epochs": 4, "data.holdout": 0.2, "model": small, "ema.update_after_step": 5},
    )


def run(configs: list[Config], dataset=None):
    """Every replica's history rows and final extras, trained as one stack."""
    trainer = Trainer(configs, dataset or make_dataset(configs[0].data, configs[0].task, [c.seed for c in configs]))
    rows, extras = [[] for _ in configs], {}
    while not trainer.done:
        for record in trainer.run_epoch():
            rows[record.replica].append(record.row)
            if record.stop_reason:
                extras[record.replica] = record.final_extra
    return rows, [extras[r] for r in range(len(configs))]


def test_the_test_set_is_split_off_first_and_the_rest_as_without_one(digits: Config) -> None:
    data = make_dataset(digits.data, digits.task)
    assert data.x_test.shape[0] == 360 and data.n_train + data.x_val.shape[0] == 1797 - 360  # 20% of all, then 20%
    assert data.x_val.shape[0] == math.ceil(0.2 * (1797 - 360))
    rest = torch.cat([data.x_train, data.x_val]).flatten(1).double()
    assert rest.mean(0).abs().max() < 1e-6  # the scaler was fit on the rest only: the test set's mean is not 0
    assert data.x_test.flatten(1).double().mean(0).abs().max() > 1e-3
    no_test = make_dataset(with_overrides(digits, {"data.holdout": 0.0}).data, digits.task)
    assert no_test.x_test is None and no_test.n_train == 1437


def test_the_test_set_is_never_read_before_the_end(digits: Config) -> None:
    """Every test label moved to another class: histories, early stopping and the best epochs are the same bytes;
    only the test metrics change."""
    config = with_overrides(
        digits, {"train.max_epochs": 8, "train.early_stopping.patience": 2, "data.test_every": None}
    )
    data = make_dataset(config.data, config.task)
    swapped = type(data)(**data.__dict__ | {"y_test": (data.y_test + 1) % data.n_classes})
    (rows,), (extra,) = run([config], data)
    (rows_swapped,), (extra_swapped,) = run([config], swapped)
    assert rows_to_csv(rows) == rows_to_csv(rows_swapped)
    best = {m: v["epoch"] for m, v in extra["best"].items()}
    assert best == {m: v["epoch"] for m, v in extra_swapped["best"].items()}
    assert extra["test"]["raw"]["accuracy"] != extra_swapped["test"]["raw"]["accuracy"]


def test_the_best_state_is_the_lowest_validation_loss_and_measured_on_the_test_set(digits: Config) -> None:
    (rows,), (extra,) = run([with_overrides(digits, {"train.max_epochs": 6})])
    history = pd.DataFrame(rows)
    for model in ("raw", "ema"):
        assert extra["best"][model]["epoch"] == int(history.loc[history[f"{model}_val_loss"].idxmin(), "epoch"])
    final = extra["test"]["raw"]
    assert set(final) == {"val_loss", "accuracy", "f1_macro", "ece"} and 0.5 < final["accuracy"] <= 1
    assert extra["predictions"]["raw"].shape == (360, 10)
    assert np.allclose(extra["predictions"]["ema"].sum(1), 1.0, atol=1e-5)  # class probabilities


def test_per_seed_splits_differ_between_seeds_and_not_across_stacks(digits: Config) -> None:
    config = with_overrides(digits, {"data.split": "per_seed"})
    seeds = [with_overrides(config, {"seed": s}) for s in (0, 1, 2)]
    data = make_dataset(config.data, config.task, [0, 1, 2])
    assert data.per_replica and data.x_train.shape[0] == 3
    assert not torch.equal(data.y_val[0], data.y_val[1]) and not torch.equal(data.y_test[0], data.y_test[2])
    again = make_dataset(config.data, config.task, [2, 1])
    assert torch.equal(again.x_test[0], data.x_test[2]) and torch.equal(again.y_train[1], data.y_train[1])
    alone = histories([seeds[1]])[0]
    assert histories(seeds)[1] == alone  # seed 1's split and history, whatever shares its stack
    assert histories([seeds[2], seeds[1]])[1] == alone


def test_label_noise_flips_exactly_its_share_of_the_training_labels_only(digits: Config) -> None:
    noisy = with_overrides(digits, {"data.label_noise": {"fraction": 0.4}})
    clean, dirty = make_dataset(digits.data, digits.task), make_dataset(noisy.data, noisy.task)
    changed = int((clean.y_train != dirty.y_train).sum())
    assert changed == round(0.4 * clean.n_train) == dirty.noisy[0]  # every chosen label moved to another class
    assert torch.equal(clean.y_val, dirty.y_val) and torch.equal(clean.y_test, dirty.y_test)
    assert torch.equal(clean.x_train, dirty.x_train)


def test_target_noise_for_regression(tiny_config: Config) -> None:
    noisy = with_overrides(tiny_config, {"data.label_noise": {"std": 0.5}, "data.holdout": 0.1})
    clean, dirty = make_dataset(with_overrides(noisy, {"data.label_noise": None}).data), make_dataset(noisy.data)
    gap = (dirty.y_train - clean.y_train).flatten()
    assert 0.4 < float(gap.std()) < 0.6 and torch.equal(clean.y_val, dirty.y_val)


def test_noise_of_the_wrong_kind_for_the_task_is_refused(digits: Config, tiny_config: Config) -> None:
    from emabench.errors import ConfigError

    with pytest.raises(ConfigError, match="label_noise"):
        with_overrides(digits, {"data.label_noise": {"std": 0.1}})
    with pytest.raises(ConfigError, match="label_noise"):
        with_overrides(tiny_config, {"data.label_noise": {"fraction": 0.1}})


def test_a_replicas_test_results_do_not_depend_on_its_stack_or_a_resume(digits: Config) -> None:
    """Per-seed splits, noisy labels, test curves: the run alone, in a stack, and stopped after epoch 2 and resumed
    in another stack give the same history bytes, test metrics, best epochs and predictions."""
    config = with_overrides(
        digits, {"data.split": "per_seed", "data.label_noise": {"fraction": 0.1}, "data.test_every": 2, "seed": 5}
    )
    others = [with_overrides(config, {"seed": s, "train.optimizer.lr": 0.001 * (s + 1)}) for s in (7, 8)]
    (alone,), (extra,) = run([config])
    rows, extras = run([others[0], config, others[1]])
    assert rows_to_csv(rows[1]) == rows_to_csv(alone)
    assert extras[1]["test"] == extra["test"] and extras[1]["best"] == extra["best"]
    assert all(np.array_equal(extras[1]["predictions"][m], extra["predictions"][m]) for m in extra["predictions"])
    first = Trainer([others[0], config], make_dataset(config.data, config.task, [7, 5]))
    kept = [record.row for _ in range(2) for record in first.run_epoch() if record.replica == 1]
    resumed = Trainer.resume([config], make_dataset(config.data, config.task, [5]), [first.replica_state(1)])
    while not resumed.done:
        for record in resumed.run_epoch():
            kept.append(record.row)
            final = record.final_extra
    assert rows_to_csv(kept) == rows_to_csv(alone) and final["best"] == extra["best"]


def test_per_seed_stacks_are_cut_to_fit_their_data(digits: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each replica of a per-seed stack holds its own split: a stack holds no more runs than fit the budget."""
    from emabench.runs import plan

    config = with_overrides(digits, {"data.split": "per_seed"})
    configs = [with_overrides(config, {"seed": s}) for s in range(10)]
    assert [len(s) for s in plan.plan_stacks(configs, "auto", 1)] == [10]
    split_bytes = plan.TrainingSizes().split_bytes(config)
    monkeypatch.setattr(plan, "PER_SEED_DATA_BYTES", 3 * split_bytes)
    assert [len(s) for s in plan.plan_stacks(configs, "auto", 1)] == [3, 3, 2, 2]
