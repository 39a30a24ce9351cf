"""Optimizer and scheduler classes by import path: each runs as in a user's own loop, checked before anything is
written, the runs of one stack sharing its learning rate."""

from __future__ import annotations

import pytest
import torch

from emabench.config import load_config, with_overrides
from emabench.errors import ConfigError
from emabench.train.build import stack_key
from emabench.train.classes import check_classes, tabulated_schedule
from tests.conftest import ROOT
from tests.test_same_result import base_config, histories

ADADELTA = {"name": "torch.optim.Adadelta", "lr": 1.0, "weight_decay": 0.0, "kwargs": {"rho": 0.9}}
STEP = {"name": "torch.optim.lr_scheduler.StepLR", "per": "epoch", "kwargs": {"step_size": 1, "gamma": 0.7}}


def test_a_scheduler_class_drives_the_learning_rate_as_in_its_own_loop() -> None:
    config = with_overrides(base_config("mlp", epochs=6), {"train.optimizer": ADADELTA, "train.lr_schedule": STEP})
    schedule = tabulated_schedule(config, 6)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    theirs = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    expected = []
    for epoch in range(6):
        expected.append(optimizer.param_groups[0]["lr"])
        assert schedule.factor(epoch) == expected[-1]
        optimizer.step()
        theirs.step()
    assert [row["lr"] for row in histories_rows(config)] == expected  # each epoch's lr, as StepLR set it


def histories_rows(config):
    from emabench.tasks.data import make_dataset
    from emabench.train.loop import Trainer

    trainer = Trainer([config], make_dataset(config.data, config.task))
    rows = []
    while not trainer.done:
        rows += [r.row for r in trainer.run_epoch()]
    return rows


def test_an_optimizer_class_trains_alike_alone_and_stacked() -> None:
    config = with_overrides(base_config("mlp", epochs=3), {"train.optimizer": ADADELTA, "train.lr_schedule": STEP})
    others = [with_overrides(config, {"seed": s, "ema.beta": 0.9}) for s in (3, 4)]
    assert histories([others[0], config, others[1]])[1] == histories([config])[0]
    faster = with_overrides(config, {"train.optimizer.lr": 0.5})
    assert stack_key(faster) != stack_key(config)  # the class's lr is the stack's: another lr, another stack


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"train.optimizer.kwargs": {"rhoo": 0.9}}, "train.optimizer.kwargs: Adadelta does not take 'rhoo'"),
        ({"train.optimizer.kwargs": {"rho": 2.0}}, "Adadelta refuses these arguments (ValueError: Invalid rho"),
        ({"train.optimizer.name": "torch.nn.Linear"}, "train.optimizer.name: torch.nn.Linear is not a torch.optim"),
        ({"train.optimizer.name": "torch.optim.NoSuch"}, "train.optimizer.name: 'torch.optim' has no attribute"),
        ({"train.lr_schedule.kwargs": {"size": 1}}, "train.lr_schedule.kwargs: StepLR does not take 'size'"),
    ],
)
def test_bad_classes_are_one_line_refusals(change: dict, needle: str) -> None:
    config = with_overrides(base_config("mlp"), {"train.optimizer": ADADELTA, "train.lr_schedule": STEP} | change)
    with pytest.raises(ConfigError) as caught:
        check_classes([config])
    assert needle in str(caught.value)


def test_a_builtin_optimizer_takes_no_kwargs() -> None:
    with pytest.raises(ConfigError, match="kwargs: only for an optimizer class"):
        with_overrides(load_config(ROOT / "configs" / "digits.yaml"), {"train.optimizer.kwargs": {"rho": 0.9}})
