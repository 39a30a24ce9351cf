"""The engine's contracts beyond the seed study: for every task and architecture, a replica in a stack
equals the same config trained alone; gradient accumulation equals the full batch; a user's own module and data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emabench.config import Config, load_config, validate_config, with_overrides
from emabench.errors import ConfigError
from emabench.tasks.data import make_dataset
from emabench.train.loop import Trainer
from emabench.train.schedules import Schedule
from tests.conftest import ROOT


def histories(configs: list[Config]) -> list[list[dict[str, float]]]:
    trainer = Trainer(configs, make_dataset(configs[0].data, configs[0].task))
    out = [[] for _ in configs]
    while not trainer.done:
        for record in trainer.run_epoch():
            out[record.replica].append(record.row)
    return out


def assert_same(ours: list[dict[str, float]], alone: list[dict[str, float]], atol: float = 1e-5) -> None:
    assert len(ours) == len(alone)
    for a, b in zip(ours, alone):
        assert a.keys() == b.keys()
        for key in b:
            if math.isnan(b[key]):
                assert math.isnan(a[key]), key
            else:
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=atol), (a["epoch"], key)


def assert_stack_equals_alone(configs: list[Config]) -> None:
    stacked = histories(configs)
    for config, history in zip(configs, stacked):
        assert_same(history, histories([config])[0])


@pytest.fixture
def digits() -> Config:
    config = load_config(ROOT / "configs" / "digits.yaml")
    return with_overrides(config, {"device": "cpu", "train.max_epochs": 2, "train.early_stopping.patience": None})


def test_classification_lenet_replicas_equal_runs_alone(digits: Config) -> None:
    """Per-replica seed, lr, dropout, label smoothing, clipping and EMA beta, on the LeNet classifier."""
    configs = [
        with_overrides(digits, {"seed": 0, "train.label_smoothing": 0.1, "model.dropout": 0.2}),
        with_overrides(digits, {"seed": 1, "train.optimizer.lr": 1e-3, "ema.beta": 0.99, "train.grad_clip_norm": 0.5}),
        with_overrides(digits, {"seed": 2, "train.label_smoothing": 0.2, "model.dropout": 0.1}),
    ]
    assert_stack_equals_alone(configs)


def test_regression_norms_and_teacher_replicas_equal_runs_alone(tiny_config: Config) -> None:
    """BatchNorm (running statistics per replica), an EMA teacher with a per-replica weight, AdamW."""
    base = with_overrides(
        tiny_config,
        {
            "model.norm": "batch",
            "train.max_epochs": 4,
            "train.early_stopping.patience": None,
            "train.optimizer.name": "adamw",
            "train.optimizer.betas": None,
            "train.optimizer.eps": None,
            "train.teacher": {"averager": "ema", "weight": 0.5},
        },
    )
    configs = [
        with_overrides(base, {"seed": 3, "train.teacher.weight": 0.0, "model.dropout": 0.0}),
        with_overrides(base, {"seed": 4, "train.teacher.weight": 2.0, "train.optimizer.weight_decay": 0.1}),
    ]
    assert_stack_equals_alone(configs)
    assert_stack_equals_alone([with_overrides(c, {"model.norm": "layer"}) for c in configs])


def test_a_teacher_of_weight_zero_changes_nothing(tiny_config: Config) -> None:
    plain = with_overrides(tiny_config, {"train.max_epochs": 3})
    weightless = with_overrides(plain, {"train.teacher": {"averager": "ema", "weight": 0.0}})
    assert_same(histories([weightless])[0], histories([plain])[0], atol=1e-7)


def test_gradient_accumulation_equals_the_full_batch(tiny_config: Config) -> None:
    """Without dropout or BatchNorm, 4 micro-batches per batch give the full batch's gradient (autograd path)."""
    base = with_overrides(tiny_config, {"model.dropout": 0.0, "train.max_epochs": 4, "model.activation": "gelu"})
    accumulated = with_overrides(base, {"train.grad_accumulation": 4})
    assert_same(histories([accumulated])[0], histories([base])[0], atol=1e-5)


@pytest.mark.parametrize(
    "schedule", [{"name": "cosine", "per": "step", "warmup": 10}, {"name": "step", "step_size": 2}]
)
def test_lr_schedules_drive_the_learning_rate(tiny_config: Config, schedule: dict) -> None:
    config = with_overrides(
        tiny_config,
        {"train.lr_schedule": schedule, "train.max_epochs": 5, "train.scheduler.name": "none", "ema.beta": 0.9},
    )
    lrs = [row["lr"] for row in histories([config])[0]]  # the lr of each epoch's last step
    base = config.train.optimizer.lr
    if schedule["name"] == "step":  # StepLR(2, 0.1) per epoch: 1, 1, 0.1, 0.1, 0.01
        assert lrs == pytest.approx([base, base, base * 0.1, base * 0.1, base * 0.01])
    else:  # per step: 6 steps an epoch (192 samples, batches of 32), 30 in all, 10 of them warm-up
        expected = Schedule("cosine", total=30, warmup=10)
        assert lrs == pytest.approx([base * expected.factor(6 * epoch - 1) for epoch in range(1, 6)])


# --- a user's own data and model -------------------------------------------------------------------------------------


def _csv_config(tmp_path, tiny_config: Config, **model) -> Config:
    x = np.random.default_rng(0).normal(size=(150, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1
    path = tmp_path / "table.csv"
    lines = ["a,b,c,d,target"] + [",".join(f"{v:.6f}" for v in (*row, t)) for row, t in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")
    raw = tiny_config.to_dict()
    raw["data"] = {
        "source": "csv",
        "path": str(path),
        "target": "target",
        "scale_x": True,
        "scale_y": True,
        "test_size": 0.2,
        "split_random_state": 0,
    }
    if model:
        raw["model"] = model
    return validate_config(raw)


def test_a_csv_file_round_trips(tmp_path, tiny_config: Config) -> None:
    config = _csv_config(tmp_path, tiny_config)
    data = make_dataset(config.data, config.task)
    assert data.x_train.shape == (120, 4) and data.y_train.shape == (120, 1) and data.x_val.shape == (30, 4)
    both = torch.cat([data.y_train, data.y_val])
    assert both.mean().item() == pytest.approx(0.0, abs=1e-6)  # scaled on all samples


def test_a_custom_module_trains_as_a_stack_of_one(tmp_path, tiny_config: Config) -> None:
    model = {"name": "custom", "factory": "tests.custom_models:small_mlp", "kwargs": {"in_features": 4}}
    config = with_overrides(_csv_config(tmp_path, tiny_config, **model), {"train.max_epochs": 3})
    (history,) = histories([config])
    assert len(history) == 3 and history[-1]["raw_val_loss"] < history[0]["raw_val_loss"]
    assert histories([config])[0] == history  # seeded: the same run twice is the same


@pytest.mark.parametrize(
    "factory,needle",
    [
        ("tests.custom_models:not_a_module", "must return a torch.nn.Module"),
        ("tests.no_such_module:f", "cannot import"),
        ("tests.custom_models:missing", "has no attribute"),
    ],
)
def test_bad_custom_models_are_one_line_errors(tmp_path, tiny_config: Config, factory: str, needle: str) -> None:
    config = _csv_config(tmp_path, tiny_config, name="custom", factory=factory, kwargs={})
    with pytest.raises(ConfigError, match=needle):
        histories([config])


def test_a_module_of_the_wrong_width_is_refused(tmp_path, tiny_config: Config) -> None:
    model = {"name": "custom", "factory": "tests.custom_models:small_mlp", "kwargs": {"in_features": 5}}
    with pytest.raises(ConfigError, match="fails on a batch of shape"):
        histories([_csv_config(tmp_path, tiny_config, **model)])


def test_task_and_data_must_agree(tiny_config: Config) -> None:
    raw = tiny_config.to_dict() | {"task": "classification"}
    with pytest.raises(ConfigError, match="needs class labels"):
        validate_config(raw)


def test_bf16_autocast_trains_on_the_cpu_and_fp16_is_refused(tiny_config: Config) -> None:
    """bf16 autocast runs on a CPU (slower than fp32 without bf16 hardware, but it runs); fp16 needs CUDA."""
    (history,) = histories([with_overrides(tiny_config, {"train.precision": "bf16", "train.max_epochs": 3})])
    assert all(math.isfinite(row["raw_val_loss"]) for row in history)
    with pytest.raises(ConfigError, match="fp16' needs CUDA"):
        histories([with_overrides(tiny_config, {"train.precision": "fp16"})])
