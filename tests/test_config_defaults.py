"""Short configs: every key a user need not care about has a documented default (torch's or scikit-learn's where they
have one, else the seed study's), a switched-off part needs none of its keys, ``emabench configs --defaults`` prints
them all, and a run folder's ``config.yaml`` holds every value the run trained with — re-running it is the same run,
byte for byte, for every shipped config."""

from __future__ import annotations

import inspect

import pytest
import sklearn.datasets
import torch
from typer.testing import CliRunner

from emabench.cli import app
from emabench.config import (
    Config,
    default_config,
    default_config_text,
    load_config,
    parse_yaml,
    shipped_configs,
    validate_config,
)
from emabench.config.defaults import REQUIRED, required_keys
from emabench.runs.folder import run_id

from .conftest import ROOT, SEED_CONFIG

runner = CliRunner()

MINIMAL = {  # the short config a newcomer writes
    "name": "mini",
    "task": "classification",
    "data": {"source": "digits"},
    "model": {"name": "mlp", "hidden_sizes": [64]},
    "train": {"batch_size": 32, "max_epochs": 5, "optimizer": {"name": "adam", "lr": 0.001}},
}


def test_the_minimal_config_is_accepted_with_every_default_filled_in() -> None:
    config = validate_config(MINIMAL, "mini.yaml")
    assert (config.seed, config.device) == (0, "auto")
    assert (config.data.test_size, config.data.split_random_state, config.data.scale_x) == (0.2, 42, True)
    assert (config.model.dropout, config.model.init, config.model.norm) == (0.0, "torch_default", "none")
    assert config.train.optimizer.weight_decay == 0.0 and config.train.diverged_above is None
    assert config.train.scheduler.name == "none" and config.train.early_stopping.patience is None
    assert config.train.early_stopping.monitor == "raw" and config.averagers == {}


def test_a_class_label_source_makes_a_classification_unless_told() -> None:
    without_task = {k: v for k, v in MINIMAL.items() if k != "task"}
    assert validate_config(without_task).task == "classification"
    assert validate_config(MINIMAL | {"data": {"source": "diabetes"}, "task": "regression"}).task == "regression"


def test_a_switched_off_scheduler_needs_none_of_its_keys() -> None:
    train = MINIMAL["train"] | {"scheduler": {"name": "none"}, "early_stopping": {"patience": None}}
    assert validate_config(MINIMAL | {"train": train}).train.scheduler.name == "none"


def test_the_plateau_schedulers_defaults_are_torchs() -> None:
    train = MINIMAL["train"] | {"scheduler": {"name": "reduce_on_plateau"}}
    scheduler = validate_config(MINIMAL | {"train": train}).train.scheduler
    torch_defaults = inspect.signature(torch.optim.lr_scheduler.ReduceLROnPlateau).parameters
    for key in ("factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr"):
        assert getattr(scheduler, key) == torch_defaults[key].default, key


def test_make_classifications_defaults_are_scikit_learns() -> None:
    data = validate_config(MINIMAL | {"data": {"source": "make_classification"}}).data
    sklearn_defaults = inspect.signature(sklearn.datasets.make_classification).parameters
    keys = ("n_features", "n_informative", "n_redundant", "n_classes", "n_clusters_per_class", "class_sep", "flip_y")
    for key in keys:
        assert getattr(data, key) == sklearn_defaults[key].default, key


def test_left_out_data_model_and_ema_are_the_seed_studys() -> None:
    seed = load_config(SEED_CONFIG)
    config = validate_config(REQUIRED)
    assert config.ema == seed.ema
    for key in ("source", "n_samples", "n_features", "n_informative", "noise", "random_state", "test_size"):
        assert getattr(config.data, key) == getattr(seed.data, key), key
    assert config.model.name == "mlp" and config.model.hidden_sizes == seed.model.hidden_sizes


def test_the_required_keys_are_exactly_those_without_a_default() -> None:
    for key in required_keys():
        raw = parse_yaml(default_config_text(), "defaults")
        node = raw
        for part in key[:-1]:
            node = node[part]
        del node[key[-1]]
        with pytest.raises(Exception, match=rf"{'.'.join(key)}: missing required key"):
            validate_config(raw)


def test_configs_defaults_prints_a_config_that_loads_as_the_default(tmp_path) -> None:
    result = runner.invoke(app, ["configs", "--defaults"])
    assert result.exit_code == 0, result.output
    (tmp_path / "my.yaml").write_text(result.stdout)
    loaded = load_config(tmp_path / "my.yaml")
    assert loaded.to_dict() == default_config().to_dict()
    assert "name: my-study  # required" in result.stdout
    assert "source: make_regression  # one of: make_regression, make_classification" in result.stdout
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert len(lines) == _count_keys(loaded.to_dict())  # every key on its own line, every default written out


def _count_keys(tree: dict) -> int:
    return sum(1 + (_count_keys(v) if isinstance(v, dict) and v else 0) for v in tree.values())


def test_configs_defaults_and_a_name_are_refused_together() -> None:
    result = runner.invoke(app, ["configs", "regression", "--defaults"])
    assert result.exit_code == 2 and "not both" in result.output


# Run ids of the shipped configs: defaults must not move a single existing run to another folder. Only a change of
# what trains may give a config a new id: the seed study's is the release's before defaults existed; the others hold
# out a test set (and digits' by_name gained rmsprop_nesterov's lr).
SHIPPED_IDS = {
    "regression": "regression-seed0-989b87d9",
    "averagers": "averagers-seed0-599f003a",
    "digits": "digits-seed0-296511e4",
    "diabetes": "diabetes-seed0-8eed92a7",
    "tricks": "tricks-seed0-d923bbf2",
}


@pytest.mark.parametrize("name", sorted(SHIPPED_IDS))
def test_the_shipped_configs_keep_their_run_ids(name: str) -> None:
    assert name in shipped_configs()
    assert run_id(load_config(ROOT / "configs" / f"{name}.yaml").to_dict()) == SHIPPED_IDS[name]


def test_the_recorded_optimizer_is_the_one_that_trains() -> None:
    """``by_name`` settings of the chosen optimizer are applied in the record (they trained), and recording again
    changes nothing."""
    config = load_config(ROOT / "configs" / "digits.yaml", ["train.optimizer.name=sgd"])
    recorded = config.to_dict()["train"]["optimizer"]
    trained = config.train.optimizer.resolved()
    assert (recorded["lr"], recorded["momentum"]) == (trained.lr, trained.momentum) == (1.0e-2, 0.9)
    assert Config.model_validate(config.to_dict()).to_dict() == config.to_dict()
    # switching the optimizer of the config as given still finds the given fields, not sgd's
    back = load_config(ROOT / "configs" / "digits.yaml", ["train.optimizer.name=sgd", "train.optimizer.name=adam"])
    assert back.to_dict()["train"]["optimizer"]["lr"] == 3.0e-3


# Every shipped config (and the custom-model example), shortened, once with a --set that by_name resolves.
REPRODUCED = {
    "regression": ["data.n_samples=200", "train.max_epochs=3"],
    "averagers": ["data.n_samples=200", "train.max_epochs=3", "averagers.swa.start_epoch=1"],
    "digits": ["train.max_epochs=2", "train.optimizer.name=sgd"],
    "diabetes": ["train.max_epochs=3", "train.optimizer.name=adamw"],
    "tricks": ["train.max_epochs=2"],
    "custom_model": ["train.max_epochs=2", "averagers.swa.start_epoch=1", "train.lr_schedule.warmup=10"],
    "noisy-labels": ["train.max_epochs=2"],
    "annealed": ["train.max_epochs=2", "averagers.swa.start_epoch=1"],
    "batch-scaling": ["train.max_epochs=2", "train.batch_size=64"],
    "polyak": ["data.n_samples=500", "train.max_epochs=2"],
}


SLOW = {"averagers", "digits", "tricks", "noisy-labels", "annealed", "batch-scaling", "polyak"}  # 2–5 s each here


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in REPRODUCED])
def test_a_runs_config_yaml_reproduces_the_run(tmp_path, monkeypatch, name: str) -> None:
    """``emabench run runs/<run>/config.yaml`` is the same run: the same id, the same history and metrics."""
    monkeypatch.chdir(ROOT)  # the example's paths are relative to the repository root
    path = ROOT / ("examples/custom_model.yaml" if name == "custom_model" else f"configs/{name}.yaml")
    sets = [arg for item in [*REPRODUCED[name], "device=cpu"] for arg in ("--set", item)]
    first = runner.invoke(app, ["run", str(path), *sets, "--runs-dir", str(tmp_path / "a"), "-q"])
    assert first.exit_code == 0, first.output
    (folder,) = (tmp_path / "a").iterdir()
    again = runner.invoke(app, ["run", str(folder / "config.yaml"), "--runs-dir", str(tmp_path / "b"), "-q"])
    assert again.exit_code == 0, again.output
    (copy,) = (tmp_path / "b").iterdir()
    assert copy.name == folder.name
    for file in ("config.yaml", "history.csv", "metrics.csv"):
        assert (copy / file).read_bytes() == (folder / file).read_bytes(), file


@pytest.mark.slow  # a sweep and a report: 4 s
def test_a_sweep_over_optimizers_records_and_groups_each_ones_own_settings(tmp_path) -> None:
    """``by_name`` gives sgd its own lr: each run's config.yaml says the lr it trained with, and the report groups by
    the optimizer (the lr follows from it) so ``--versus`` can pair sgd's runs with adam's."""
    sets = ["data.n_samples=200", "train.max_epochs=3", "device=cpu", "train.optimizer.betas=null"]
    sets += ["train.optimizer.eps=null", "train.optimizer.by_name={sgd: {lr: 0.01}}"]
    args = ["sweep", str(SEED_CONFIG), *(a for s in sets for a in ("--set", s)), "--seeds", "0-1", "-q"]
    args += ["--grid", "train.optimizer.name=sgd,adam", "--runs-dir", str(tmp_path)]
    assert runner.invoke(app, args).exit_code == 0
    recorded = {
        (c["train"]["optimizer"]["name"], c["train"]["optimizer"]["lr"])
        for c in (parse_yaml(p.read_text(), "c") for p in tmp_path.glob("*/*/config.yaml"))
    }
    assert recorded == {("sgd", 0.01), ("adam", 0.001)}
    result = runner.invoke(app, ["report", "--runs-dir", str(tmp_path), "--versus", "train.optimizer.name=adam"])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "train.optimizer.name=sgd" in flat and "each value vs adam" in flat and "train.optimizer.lr" not in flat
