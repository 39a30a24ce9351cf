"""One cadence. Averagers count the optimizer steps passed to ``update(step)`` (or calls)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from emabench.averaging import EMA, SWA, PostHocEMA, PowerEMA
from tests.averager_kinds import KINDS, evaluated, net, perturb


def _state(averager) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in evaluated(averager).state_dict().items()}


def _moments(averager, model: nn.Module, steps: int) -> list[int]:
    """The steps at which the average changed (the model changes at every step)."""
    changed, before = [], _params(averager)
    for step in range(1, steps + 1):
        perturb(model, step)
        averager.update(step)
        after = _params(averager)
        if any(not torch.equal(a, b) for a, b in zip(before, after)):
            changed.append(step)
        before = after
    return changed


def _params(averager) -> list[torch.Tensor]:
    source = averager.profiles[0] if isinstance(averager, PostHocEMA) else averager
    return [p.detach().clone() for p in source.averaged_model.parameters()]


@pytest.mark.parametrize(
    "name,expected",
    [
        ("ema", list(range(1, 31, 2))),  # 1, 3, 5, …: update_every=2
        ("constant", list(range(1, 31, 2))),
        ("tf", list(range(1, 31, 3))),
        ("bias_corrected", list(range(1, 31, 2))),
        ("power", list(range(1, 31, 3))),
        ("posthoc", list(range(1, 31, 3))),  # its profiles
        ("scheduled", list(range(1, 31, 2))),
        ("adaptive", list(range(1, 31, 2))),
        ("swa", list(range(4, 31, 3))),  # start_step=4, every=3: its own explicit phase
    ],
)
def test_each_rule_averages_at_its_documented_steps(name, expected):
    model = net()
    assert _moments(KINDS[name](model), model, 30) == expected


def test_post_hoc_snapshots_at_multiples_of_snapshot_every():
    model = net()
    posthoc = KINDS["posthoc"](model)  # snapshot_every=6, profiles updating at 1, 4, 7, …
    for step in range(1, 31):
        perturb(model, step)
        posthoc.update(step)
    assert sorted({s["step"] for s in posthoc.snapshots()}) == [4, 10, 16, 22, 28]  # last profile update ≤ 6, 12, …


@pytest.mark.parametrize("name", KINDS)
def test_passing_every_step_equals_counting_calls(name):
    a, b = net(), net()
    by_step, by_call = KINDS[name](a), KINDS[name](b)
    for step in range(1, 40):
        perturb(a, step)
        perturb(b, step)
        by_step.update(step)
        by_call.update()
    assert by_step.num_updates == by_call.num_updates == 39
    assert all(torch.equal(x, y) for x, y in zip(_state(by_step).values(), _state(by_call).values()))


@pytest.mark.parametrize("name", KINDS)
def test_gradient_accumulation_counts_optimizer_steps_not_micro_batches(name):
    """Four micro-batches per optimizer step, the averager updated once per optimizer step with its number: the
    same average as a loop without accumulation making the same optimizer steps. Updating at every micro-batch
    with the optimizer step (a common slip) is refused instead of counting micro-batches."""
    torch.manual_seed(0)
    data = torch.randn(64, 3)
    target = data.sum(1, keepdim=True)

    def train(accumulate: int) -> dict[str, torch.Tensor]:
        model = net()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        averager = KINDS[name](model)
        for step in range(1, 21):
            batch = slice((step * 16) % 64, (step * 16) % 64 + 16)
            for micro_x, micro_y in zip(data[batch].chunk(accumulate), target[batch].chunk(accumulate)):
                loss = nn.functional.mse_loss(model(micro_x), micro_y, reduction="sum") / 16
                loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            averager.update(step)
            with pytest.raises(ValueError, match=rf"step must increase.*got step {step} after step {step}"):
                averager.update(step)  # once more for the same optimizer step, e.g. from the micro-batch loop
        return _state(averager)

    plain, accumulated = train(1), train(4)
    for key, value in plain.items():
        torch.testing.assert_close(accumulated[key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [0, -3, 5, 4, True, 2.0, "7", None])
def test_a_step_that_repeats_goes_back_or_is_not_an_integer_is_refused(bad):
    ema = EMA(net(), beta=0.9)
    ema.update(5)
    if bad is None:  # None counts on: 6
        ema.update(bad)
        assert ema.num_updates == 6
        return
    with pytest.raises(ValueError, match=r"step must"):
        ema.update(bad)
    assert ema.num_updates == 5  # nothing changed


def test_integer_like_steps_are_accepted():
    ema = EMA(net(), beta=0.9)
    ema.update(np.int64(3))
    ema.update(torch.tensor(4))
    assert ema.num_updates == 4 and type(ema.num_updates) is int


def test_a_caller_that_skips_steps_averages_at_the_first_call_past_each_point():
    # update_every=10 averages at 1, 11, 21, …; a caller reporting only every 10th step (10, 20, 30) still averages
    # once per call, with the decay of the step it reports
    model = net()
    ema = EMA(model, beta=0.999, update_after_step=0, update_every=10)
    expected = None
    for step in (10, 20, 30):
        perturb(model, step)
        ema.update(step)
        online = [p.detach().clone() for p in model.parameters()]
        if expected is None:
            expected = online  # the first averaging update copies, as the seed's EMA does
        d = min(0.999, 1 - (1 + step - 1) ** (-2 / 3))
        expected = [d * e + (1 - d) * o for e, o in zip(expected, online)]
        assert ema.decay == pytest.approx(d)
    for ours, theirs in zip(ema.averaged_model.parameters(), expected):
        torch.testing.assert_close(ours, theirs)


def test_power_ema_uses_the_steps_since_its_last_update_when_calls_are_irregular():
    gamma, calls = 3.0, [2, 3, 7, 8, 20, 21, 22, 50]
    model = nn.Linear(1, 1, bias=False)
    ema = PowerEMA(model, gamma=gamma)
    avg, last = None, 0
    for t in calls:
        with torch.no_grad():
            model.weight.fill_(float(t))
        ema.update(t)
        beta = (1 - (t - last) / t) ** (gamma + 1)
        avg = float(t) if avg is None else beta * avg + (1 - beta) * t
        last = t
    assert ema.averaged_model.weight.item() == pytest.approx(avg, rel=1e-6)
    assert ema.last_update_step == 50


def test_swa_created_late_keeps_its_phase_from_the_step_it_is_told():
    model = nn.Linear(1, 1, bias=False)
    swa = SWA(model, start_step=100, every=10)
    taken = []
    for t in range(95, 140):  # created at step 95 of a longer run
        with torch.no_grad():
            model.weight.fill_(float(t))
        swa.update(t)
        if t >= 100 and (t - 100) % 10 == 0:
            taken.append(float(t))
    assert swa.n_averaged == len(taken) == 4
    assert swa.averaged_model.weight.item() == pytest.approx(sum(taken) / len(taken))


@pytest.mark.parametrize("name", KINDS)
def test_a_resumed_averager_continues_exactly_with_explicit_steps(name):
    model = net()
    averager = KINDS[name](model)
    for step in range(1, 14):
        perturb(model, step)
        averager.update(step)
    buffer = io.BytesIO()
    torch.save(averager.state_dict(), buffer)
    buffer.seek(0)
    resumed = KINDS[name](model)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.num_updates == 13
    with pytest.raises(ValueError, match="step must increase"):
        resumed.update(13)  # the resumed averager knows where it stopped
    for step in range(14, 40):
        perturb(model, step)
        averager.update(step)
        resumed.update(step)
    assert all(torch.equal(x, y) for x, y in zip(_state(averager).values(), _state(resumed).values()))
