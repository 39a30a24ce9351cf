"""Seed 000's β schedules: ScheduledEMA (a planned decay) and AdaptiveEMA (a decay moved by validation results)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from emabench.averaging import AdaptiveEMA, ConstantEMA, ScheduledEMA
from tests.averager_kinds import net, perturb


def _params64(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().double().clone() for p in model.parameters()]


# ---------------------------------------------------------------- ScheduledEMA


def test_piecewise_constant_schedule_by_steps_matches_the_closed_form():
    schedule = [(0, 0.5), (10, 0.9), (25, 0.99)]
    model = net()
    ema = ScheduledEMA(model, schedule=schedule)
    expected, decays = None, []
    for t in range(1, 41):
        perturb(model, t)
        ema.update(t)
        completed = t - 1
        d = 0.0 if t == 1 else (0.5 if completed < 10 else 0.9 if completed < 25 else 0.99)
        online = _params64(model)
        expected = online if expected is None else [d * e + (1 - d) * o for e, o in zip(expected, online)]
        decays.append(ema.decay)
        assert ema.decay == d
    for ours, theirs in zip(ema.averaged_model.parameters(), expected):
        torch.testing.assert_close(ours.double(), theirs, rtol=1e-6, atol=1e-6)
    assert decays[1:10] == [0.5] * 9 and decays[10] == 0.9 and decays[25] == 0.99  # step 11 starts 0.9, 26 0.99


def test_schedule_by_epochs_changes_only_at_epoch_boundaries():
    ema = ScheduledEMA(net(), schedule=[(0, 0.9), (2, 0.99), (5, 0.999)], unit="epochs", steps_per_epoch=50)
    assert [ema.decay_at(t) for t in (1, 50, 51, 100, 101, 250, 251, 10_000)] == [
        0.9, 0.9, 0.9, 0.9, 0.99, 0.99, 0.999, 0.999,
    ]  # fmt: skip
    for t in range(1, 103):
        ema.update(t)
    assert ema.decay == 0.99  # step 102 is in the third epoch (two completed)


def test_linear_schedule_interpolates_between_entries():
    ema = ScheduledEMA(net(), schedule=[(0, 0.9), (100, 0.99)], interpolation="linear")
    assert ema.decay_at(1) == pytest.approx(0.9)
    assert ema.decay_at(51) == pytest.approx(0.945)
    assert ema.decay_at(101) == pytest.approx(0.99) and ema.decay_at(5000) == pytest.approx(0.99)
    by_epoch = ScheduledEMA(
        net(), schedule=[(0, 0.9), (2, 0.99)], unit="epochs", steps_per_epoch=10, interpolation="linear"
    )
    assert by_epoch.decay_at(11) == pytest.approx(0.945)  # one of two epochs completed
    assert by_epoch.decay_at(16) == pytest.approx(0.9 + 0.09 * 1.5 / 2)


def test_a_zero_decay_entry_follows_the_model():
    model = net()
    ema = ScheduledEMA(model, schedule=[(0, 0.0), (5, 0.9)])
    for t in range(1, 6):
        perturb(model, t)
        ema.update(t)
        assert all(torch.equal(a, b) for a, b in zip(ema.averaged_model.parameters(), model.parameters()))
    perturb(model, 6)
    ema.update(6)
    assert ema.decay == 0.9


def test_a_shared_schedule_on_a_stacked_model_equals_separate_runs():
    torch.manual_seed(1)
    stacked = nn.Linear(4, 3, bias=False)  # rows = 3 replicas
    schedule = [(0, 0.5), (5, 0.95)]
    ema = ScheduledEMA(stacked, schedule=schedule)
    rows = [nn.Linear(4, 1, bias=False) for _ in range(3)]
    singles = [ScheduledEMA(row, schedule=schedule) for row in rows]
    for t in range(1, 20):
        with torch.no_grad():
            stacked.weight.add_(torch.randn_like(stacked.weight) * 0.1)
            for r, row in enumerate(rows):
                row.weight.copy_(stacked.weight[r : r + 1])
        ema.update(t)
        for single in singles:
            single.update(t)
    for r, single in enumerate(singles):
        torch.testing.assert_close(ema.averaged_model.weight[r : r + 1], single.averaged_model.weight)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"schedule": []}, r"schedule must be a list of \(start, decay\) pairs"),
        ({"schedule": [(1, 0.9)]}, r"first starting at 0, got a first start of 1"),
        ({"schedule": [(0, 0.9), (5, 0.99), (5, 0.999)]}, r"starts must increase strictly"),
        ({"schedule": [(0, 1.0)]}, r"schedule decay must be a finite number in \[0, 1\), got 1.0"),
        ({"schedule": [(0, math.nan)]}, r"schedule decay .*got nan"),
        ({"schedule": [(0, 0.9), (math.inf, 0.99)]}, r"schedule start .*got inf"),
        ({"schedule": [(0, 0.9, 3)]}, r"got the entry \(0, 0.9, 3\)"),
        ({"schedule": [(0, 0.9)], "unit": "hours"}, r"unit must be 'steps' or 'epochs', got 'hours'"),
        ({"schedule": [(0, 0.9)], "unit": "epochs"}, r"steps_per_epoch must be an integer >= 1, got None"),
        ({"schedule": [(0, 0.9)], "interpolation": "cubic"}, r"interpolation must be 'constant' or 'linear'"),
        ({"schedule": [(0, 0.9)], "update_every": 0}, r"update_every must be an integer >= 1, got 0"),
    ],
)
def test_scheduled_ema_refuses_bad_arguments(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        ScheduledEMA(net(), **kwargs)


# ---------------------------------------------------------------- AdaptiveEMA

# (averaged loss, raw loss) -> level after observe, ladder (0.9, 0.99, 0.999) from level 0, threshold 0
RULE_STEPS = [
    ((1.00, 1.20), 1),  # the average improves (on +inf) and leads: up
    ((0.90, 1.00), 2),  # improves again: up
    ((0.80, 0.85), 2),  # improves, but already at the top
    ((0.85, 0.90), 2),  # no improvement, raw not ahead: stay
    ((0.85, 0.80), 1),  # the raw model pulls ahead: down
    ((math.nan, 0.50), 1),  # a NaN loss changes nothing
    ((0.82, 0.90), 1),  # better than this evaluation's but not than best = 0.80: stay
    ((0.70, 0.75), 2),  # a new best: up
    ((0.75, 0.60), 1),  # raw ahead: down
    ((0.75, 0.60), 0),  # and again
    ((0.75, 0.60), 0),  # floor
]


def test_adaptive_rule_steps():
    ema = AdaptiveEMA(net(), ladder=(0.9, 0.99, 0.999))
    best = math.inf
    for (averaged, raw), level in RULE_STEPS:
        decay = ema.observe(averaged, raw)
        assert int(ema.level) == level and decay == (0.9, 0.99, 0.999)[level] == ema.beta
        if not raw < averaged and averaged < best:
            best = averaged
        assert float(ema.best) == best


def test_adaptive_threshold_asks_for_relative_margins():
    ema = AdaptiveEMA(net(), ladder=(0.9, 0.99, 0.999), start=1, threshold=0.1)
    ema.observe(1.0, 1.05)  # first finite loss: an improvement on +inf
    assert int(ema.level) == 2
    ema.observe(0.95, 0.90)  # raw ahead by 5% only, average better by 5% only: neither counts
    assert int(ema.level) == 2 and float(ema.best) == 1.0
    ema.observe(0.95, 0.80)  # raw ahead by more than 10%: down
    assert int(ema.level) == 1


def test_adaptive_ema_averages_with_the_decay_in_force():
    model, twin = net(), net()
    ema = AdaptiveEMA(model, ladder=(0.5, 0.9), start=0)
    reference = ConstantEMA(twin, beta=0.5)
    for t in range(1, 21):
        perturb(model, t)
        perturb(twin, t)
        ema.update(t)
        reference.update(t)
        if t == 10:
            ema.observe(0.1, 0.2)  # the average leads: 0.5 -> 0.9
            reference.beta = 0.9
    assert ema.decay == 0.9
    for ours, theirs in zip(ema.averaged_model.parameters(), reference.averaged_model.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)


def test_adaptive_ema_per_replica_equals_separate_scalar_ones():
    torch.manual_seed(2)
    stacked = nn.Linear(4, 3, bias=False)
    ema = AdaptiveEMA(stacked, ladder=(0.5, 0.9, 0.99), replicas=3)
    rows = [nn.Linear(4, 1, bias=False) for _ in range(3)]
    singles = [AdaptiveEMA(row, ladder=(0.5, 0.9, 0.99)) for row in rows]
    losses = torch.rand(6, 2, 3)  # evaluation, (averaged, raw), replica
    for t in range(1, 31):
        with torch.no_grad():
            stacked.weight.add_(torch.randn_like(stacked.weight) * 0.1)
            for r, row in enumerate(rows):
                row.weight.copy_(stacked.weight[r : r + 1])
        ema.update(t)
        for single in singles:
            single.update(t)
        if t % 5 == 0:
            averaged, raw = losses[t // 5 - 1]
            ema.observe(averaged, raw)
            for r, single in enumerate(singles):
                single.observe(float(averaged[r]), float(raw[r]))
    assert [int(level) for level in ema.level] == [int(s.level) for s in singles]
    assert len(set(ema.level.tolist())) > 1  # the replicas did move apart
    for r, single in enumerate(singles):
        torch.testing.assert_close(ema.averaged_model.weight[r : r + 1], single.averaged_model.weight)
    with pytest.raises(ValueError, match=r"averaged_val_loss must be shape \(3,\)"):
        ema.observe(0.5, torch.ones(3))


def test_adaptive_state_resumes_exactly():
    model = net()
    ema = AdaptiveEMA(model, ladder=(0.5, 0.9, 0.99), threshold=0.01)
    for (averaged, raw), _ in RULE_STEPS[:3]:
        ema.observe(averaged, raw)
    for t in range(1, 6):
        perturb(model, t)
        ema.update(t)
    resumed = AdaptiveEMA(net(), ladder=(0.5, 0.9, 0.99), threshold=0.01)
    resumed.load_state_dict(ema.state_dict())
    assert resumed.beta == ema.beta == 0.99 and float(resumed.best) == float(ema.best) == 0.8
    for (averaged, raw), _ in RULE_STEPS[3:]:
        assert resumed.observe(averaged, raw) == ema.observe(averaged, raw)
        assert torch.equal(resumed.level, ema.level)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"ladder": (0.9,)}, r"ladder must be a sequence of at least two decays"),
        ({"ladder": (0.99, 0.9)}, r"ladder must be strictly increasing"),
        ({"ladder": (0.9, 1.0)}, r"ladder must be a finite number in \[0, 1\), got 1.0"),
        ({"ladder": (0.9, math.nan)}, r"ladder .*got nan"),
        ({"start": 4}, r"start must be an index into ladder \(0 to 3\), got 4"),
        ({"threshold": math.nan}, r"threshold must be a finite number in \[0, 1\), got nan"),
        ({"replicas": 0}, r"replicas must be an integer >= 1, got 0"),
    ],
)
def test_adaptive_ema_refuses_bad_arguments(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        AdaptiveEMA(net(), **kwargs)
