"""Same config, same result: a run's history is the same bytes whether it trains alone or in a stack.

A stack holds runs whose per-run settings differ (learning rate, weight decay, β, dropout, label smoothing, …) and runs
that stop early (the stack then shrinks around the others); whatever the stack's size and the run's place in it, the
run's ``history.csv`` rows must be byte for byte those of the same config trained alone. Each case compares the CSV
text the run folder would write.

The default suite covers every stacked model (one reading a user's augmenting Dataset) and every optimizer on small
stacks, the stack sizes around the written-out gradient's blocks of 64 replicas, and a resumed stack; ``-m slow`` runs
the full matrix (every model × optimizer × stack size 1, 2, 3, 8, 10, 63, 64, 65 × place, on two threads too) and a
30-epoch chaotic SGD run.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from emabench.config import Config, load_config, with_overrides
from emabench.runs.encoding import rows_to_csv
from emabench.tasks.data import make_dataset
from emabench.train.loop import Trainer
from emabench.train.stepper import OPTIMIZERS
from tests.conftest import ROOT, TINY

# Every stacked architecture, on a few hundred samples and a few epochs.
CLASSIFIER = {
    "task": "classification",
    "data": {"source": "make_classification", "n_samples": 300, "n_features": 12, "n_informative": 6,
             "n_classes": 3, "flip_y": 0.1, "random_state": 1, "scale_x": True, "test_size": 0.2,
             "split_random_state": 0, "stratify": True},
    "model": {"name": "mlp", "hidden_sizes": [16, 8], "activation": "relu", "dropout": 0.2, "norm": "none",
              "init": "kaiming_uniform"},
}  # fmt: skip
MODELS = {
    "regression": {},
    "mlp": CLASSIFIER,
    "batchnorm": CLASSIFIER | {"model": CLASSIFIER["model"] | {"norm": "batch", "activation": "gelu"}},
    "layernorm": CLASSIFIER | {"model": CLASSIFIER["model"] | {"norm": "layer", "activation": "tanh"}},
    "lenet": {"@digits": True},
    # a user's Dataset that augments (torch's, numpy's and Python's generators), read through a DataLoader each epoch
    "dataset": {
        "task": "classification",
        "model": CLASSIFIER["model"],
        "data": {
            "source": "dataset",
            "factory": f"{ROOT / 'tests' / 'torch_datasets.py'}:digits",
            "kwargs": {"n": 300, "augment": True},
        },
    },
}
OPTIMIZER_NAMES = [*OPTIMIZERS, "sgd_nesterov"]


def base_config(model: str, optimizer: str = "adam", epochs: int = 3) -> Config:
    """A small config of ``model`` trained by ``optimizer`` (``sgd_nesterov``: SGD with Nesterov momentum)."""
    if model == "lenet":
        config = load_config(ROOT / "configs" / "digits.yaml")
        config = with_overrides(config, {"data.test_size": 0.9, "train.batch_size": 32})  # 179 training images
    else:
        seed_study = load_config(ROOT / "configs" / "regression.yaml")
        config = with_overrides(seed_study, TINY)
        raw = config.to_dict()
        for section, values in MODELS[model].items():
            raw[section] = values
        config = type(config).model_validate(raw)
    name = "sgd" if optimizer == "sgd_nesterov" else optimizer
    spec = {"name": name, "lr": 0.01 if name in ("sgd", "rmsprop") else 3e-3, "weight_decay": 1e-4}
    if optimizer == "sgd_nesterov":
        spec |= {"momentum": 0.9, "nesterov": True}
    return with_overrides(
        config,
        {"device": "cpu", "train.max_epochs": epochs, "train.early_stopping.patience": None,
         "train.optimizer": spec, "ema.update_after_step": 5},
    )  # fmt: skip


def neighbours(config: Config, count: int) -> list[Config]:
    """``count`` other runs for ``config`` 's stack: other seeds, learning rates, weight decays and βs, some with
    dropout or label smoothing, and every third one stopping after its first epoch."""
    out = []
    for i in range(count):
        change: dict = {"seed": 100 + i, "train.optimizer.lr": config.train.optimizer.lr * (1 + 0.5 * (i % 3))}
        change["train.optimizer.weight_decay"] = [0.0, 1e-3, 1e-4][i % 3]
        change["ema.beta"] = [0.99, 0.999, 0.9][i % 3]
        if i % 3 == 1:
            change["train.max_epochs"] = 1
        if config.task == "classification" and i % 2:
            change["train.label_smoothing"] = 0.1
        if getattr(config.model, "dropout", 0.0) and i % 4 == 3:
            change["model.dropout"] = 0.0
        out.append(with_overrides(config, change))
    return out


def histories(configs: Sequence[Config]) -> list[str]:
    """Each config's history as the CSV text its run folder would hold, all trained as one stack."""
    trainer = Trainer(configs, make_dataset(configs[0].data, configs[0].task))
    rows: list[list[dict[str, float]]] = [[] for _ in configs]
    while not trainer.done:
        for record in trainer.run_epoch():
            rows[record.replica].append(record.row)
    return [rows_to_csv(r) for r in rows]


def assert_alone_equals_stacked(config: Config, sizes: Sequence[int], places: Sequence[str] = ("first", "last")):
    (alone,) = histories([config])
    for size in sizes:
        others = neighbours(config, size - 1)
        for place in places if size > 1 else ("first",):
            at = {"first": 0, "middle": (size - 1) // 2, "last": size - 1}[place]
            stack = [*others[:at], config, *others[at:]]
            assert histories(stack)[at] == alone, f"stack of {size}, the run {place}"


@pytest.mark.parametrize("model", list(MODELS))
def test_every_model_alone_equals_stacked(model: str) -> None:
    assert_alone_equals_stacked(base_config(model), sizes=[3])


@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_every_optimizer_alone_equals_stacked(optimizer: str) -> None:
    assert_alone_equals_stacked(base_config("mlp", optimizer, epochs=2), sizes=[3], places=["middle"])


@pytest.mark.parametrize("path", ["torch.optim.Adadelta", "torch.optim.Adam"])
def test_an_optimizer_class_by_import_path_alone_equals_stacked(path: str) -> None:
    """A class by import path steps the stack as in a user's loop, with the stack's one lr (its neighbours differ by
    seed and β only): still the same bytes alone and stacked."""
    config = with_overrides(base_config("mlp", epochs=2), {"train.optimizer": {"name": path, "lr": 0.5}})
    others = [with_overrides(config, {"seed": 100 + i, "ema.beta": [0.99, 0.9][i % 2]}) for i in range(4)]
    (alone,) = histories([config])
    assert histories([*others[:2], config, *others[2:]])[2] == alone


def test_stack_sizes_around_the_written_out_gradients_blocks() -> None:
    """The seed network's written-out gradient works through 64 replicas at a time: 63, 64 and 65 replicas put the
    run in a full block, a block of its own and a block of one."""
    config = base_config("regression", epochs=2)
    assert_alone_equals_stacked(config, sizes=[2, 8, 63, 64, 65], places=["first", "last"])


def test_a_resumed_stack_equals_one_never_stopped() -> None:
    """Stopped after epoch 2, continued in a stack of another size, the run's history is still the same bytes."""
    config = base_config("mlp", epochs=4)
    (alone,) = histories([config])
    first = Trainer([config, *neighbours(config, 2)], make_dataset(config.data, config.task))
    rows = [record.row for _ in range(2) for record in first.run_epoch() if record.replica == 0]
    state = first.replica_state(0)
    resumed = Trainer.resume([config], make_dataset(config.data, config.task), [state])
    while not resumed.done:
        rows += [record.row for record in resumed.run_epoch()]
    assert rows_to_csv(rows) == alone


# --- the full matrix (make test-slow) ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
@pytest.mark.parametrize("model", list(MODELS))
def test_full_matrix(model: str, optimizer: str, threads: int) -> None:
    torch.set_num_threads(threads)
    sizes = [1, 2, 3, 8, 10] + ([63, 64, 65] if model in ("regression", "mlp") else [])
    assert_alone_equals_stacked(base_config(model, optimizer), sizes=sizes, places=["first", "middle", "last"])


@pytest.mark.slow
def test_a_long_chaotic_run() -> None:
    """Plain SGD at lr 0.2 on noisy labels in batches of 8 amplifies any rounding difference within epochs: 30 epochs
    alone vs in a stack of lr 0.2 and 0.5 runs and in a stack of 10 seeds."""
    config = with_overrides(
        base_config("mlp", "sgd", epochs=30),
        {"data.n_samples": 1000, "data.flip_y": 0.3, "data.n_classes": 2, "model.hidden_sizes": [64, 64],
         "model.dropout": 0.0, "train.batch_size": 8, "seed": 1,
         "train.optimizer": {"name": "sgd", "lr": 0.2, "weight_decay": 0.0}},
    )  # fmt: skip
    (alone,) = histories([config])
    grid = [with_overrides(config, {"seed": s, "train.optimizer.lr": lr}) for s in range(4) for lr in (0.2, 0.5)]
    assert histories(grid)[2] == alone
    seeds = [with_overrides(config, {"seed": s}) for s in range(10)]
    assert histories(seeds)[1] == alone


# --- through the command line: engines, --jobs, a single run -------------------------------------------------------


def test_every_engine_and_jobs_count_writes_the_same_bytes(tmp_path) -> None:
    """One sweep through ``--engine vectorized`` with 1 and 2 jobs and ``--engine process``, and one of its runs
    through ``emabench run``: every run's history.csv and metrics.csv are the same bytes wherever it trained."""
    from typer.testing import CliRunner

    from emabench.cli import app
    from emabench.runs.folder import find_runs
    from tests.conftest import SEED_CONFIG, TINY_SETS

    tiny = [a for s in [*TINY_SETS, "device=cpu"] for a in ("--set", s)]
    sweep = ["sweep", str(SEED_CONFIG), *tiny, "--beta", "0.5,0.99", "--seeds", "0-2", "-q"]
    ways = {
        "vectorized-1": ["--engine", "vectorized", "--jobs", "1"],
        "vectorized-2": ["--engine", "vectorized", "--jobs", "2"],
        "process-2": ["--engine", "process", "--jobs", "2"],
    }
    files: dict[str, dict[str, bytes]] = {}
    for name, options in ways.items():
        result = CliRunner().invoke(app, [*sweep, *options, "--runs-dir", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        files[name] = {
            f"{run.name}/{file}": (run.path / file).read_bytes()
            for run in find_runs([tmp_path / name])
            for file in ("history.csv", "metrics.csv")
        }
    assert len(files["vectorized-1"]) == 12 and files["vectorized-1"] == files["vectorized-2"] == files["process-2"]
    alone = CliRunner().invoke(
        app,
        [
            "run",
            str(SEED_CONFIG),
            *tiny,
            "--set",
            "seed=1",
            "--set",
            "ema.beta=0.99",
            "--runs-dir",
            str(tmp_path / "run"),
            "-q",
        ],
    )
    assert alone.exit_code == 0, alone.output
    (run,) = find_runs([tmp_path / "run"])
    assert (run.path / "history.csv").read_bytes() == files["process-2"][f"{run.name}/history.csv"]
