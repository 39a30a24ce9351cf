"""Every learning-rate schedule equals torch's lr_scheduler counterpart, step by step."""

from __future__ import annotations

import pytest
import torch

from emabench.train.schedules import Schedule


def _torch_lrs(make, steps: int, base: float = 0.1) -> list[float]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    scheduler = make(optimizer)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


T, BASE = 40, 0.1
CASES = {
    "cosine": (
        Schedule("cosine", total=T, final=0.05),
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=T, eta_min=0.05 * BASE),
    ),
    "linear": (
        Schedule("linear", total=T, final=0.2),
        lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=1.0, end_factor=0.2, total_iters=T),
    ),
    "polynomial": (
        Schedule("polynomial", total=T, final=0.0, power=2.0),
        lambda o: torch.optim.lr_scheduler.PolynomialLR(o, total_iters=T, power=2.0),
    ),
    "step": (
        Schedule("step", total=T, step_size=7, gamma=0.5),
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5),
    ),
    "constant": (Schedule("constant", total=T), lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1.0)),
    "warmup+cosine": (
        Schedule("cosine", total=T, final=0.0, warmup=5, warmup_start=0.2),
        lambda o: torch.optim.lr_scheduler.SequentialLR(
            o,
            [
                torch.optim.lr_scheduler.LinearLR(o, start_factor=0.2, end_factor=1.0, total_iters=5),
                torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=T - 5),
            ],
            milestones=[5],
        ),
    ),
    "warmup+step": (
        Schedule("step", total=T, warmup=3, warmup_start=0.5, step_size=4, gamma=0.9),
        lambda o: torch.optim.lr_scheduler.SequentialLR(
            o,
            [
                torch.optim.lr_scheduler.LinearLR(o, start_factor=0.5, end_factor=1.0, total_iters=3),
                torch.optim.lr_scheduler.StepLR(o, step_size=4, gamma=0.9),
            ],
            milestones=[3],
        ),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_schedule_equals_torch(case: str) -> None:
    schedule, make = CASES[case]
    ours = [BASE * schedule.factor(t) for t in range(T)]
    torch.testing.assert_close(ours, _torch_lrs(make, T, BASE), rtol=1e-12, atol=1e-15)


def test_schedule_stays_at_its_end_value_after_total() -> None:
    schedule = Schedule("linear", total=10, final=0.3)
    assert schedule.factor(10) == schedule.factor(50) == pytest.approx(0.3)


@pytest.mark.parametrize(
    "kwargs", [{"name": "cyclic"}, {"name": "cosine", "total": 5, "warmup": 5}, {"name": "cosine", "warmup": -1}]
)
def test_bad_schedules_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Schedule(**({"total": 10} | kwargs))
