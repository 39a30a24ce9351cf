"""The average is kept and computed in ``dtype`` (at least float32 for float16/bfloat16 models).

Closed forms are computed in float64 from the bfloat16 values the model actually holds.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from emabench.averaging import SWA, BiasCorrectedEMA, ConstantEMA, PowerEMA
from emabench.averaging.flat import pack_
from tests.averager_kinds import KINDS, evaluated, net, perturb

LOW = [torch.bfloat16, torch.float16]


def _scalar(value: float, dtype: torch.dtype) -> nn.Module:
    model = nn.Linear(1, 1, bias=False).to(dtype)
    with torch.no_grad():
        model.weight.fill_(value)
    return model


def _set(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        model.weight.fill_(value)


@pytest.mark.parametrize("dtype", LOW)
def test_constant_ema_moves_on_a_low_precision_model(dtype):
    # in bf16 the average stayed at 1.0 forever: 0.999·1 + 0.001·2 rounds back to 1
    model = _scalar(1.0, dtype)
    ema = ConstantEMA(model, beta=0.999)
    ema.update()
    _set(model, 2.0)
    for _ in range(5000):
        ema.update()
    assert ema.averaged_model.weight.dtype == torch.float32
    assert ema.averaged_model.weight.item() == pytest.approx(2 - 0.999**5000, abs=1e-4)  # 1.99328
    assert model.weight.dtype == dtype  # the online model is untouched


@pytest.mark.parametrize("dtype", LOW)
def test_swa_keeps_averaging_many_snapshots(dtype):
    model = _scalar(0.0, dtype)
    swa = SWA(model)
    held = []
    for i in range(1, 1001):
        _set(model, 1 + i / 1000)
        held.append(model.weight.double().item())
        swa.update()
    assert swa.averaged_model.weight.item() == pytest.approx(sum(held) / len(held), abs=1e-4)


@pytest.mark.parametrize("dtype", LOW)
def test_bias_corrected_ema_of_a_constant_is_the_constant(dtype):
    model = _scalar(2.0, dtype)
    ema = BiasCorrectedEMA(model, beta=0.999)
    for _ in range(5000):
        ema.update()
    assert ema.averaged_model.weight.item() == pytest.approx(2.0, abs=1e-4)  # 0.504 when kept in bf16


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("flat", [False, True])
def test_every_kind_averages_a_bf16_model_as_its_float32_twin(name, flat):
    """The same rule on a bf16 model and on a float32 model holding the same (bf16-representable) weights."""
    low, high = net(torch.bfloat16), net(torch.bfloat16).float()
    if flat:
        pack_(list(low.parameters()))  # flat bf16 online buffer, flat float32 average: the mixed-dtype fast path
    averager, twin = KINDS[name](low), KINDS[name](high)
    for step in range(1, 25):
        perturb(low, step)
        with torch.no_grad():
            for a, b in zip(high.parameters(), low.parameters()):
                a.copy_(b)
        averager.update(step)
        twin.update(step)
    for ours, theirs in zip(evaluated(averager).parameters(), evaluated(twin).parameters()):
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", KINDS)
def test_an_explicit_dtype_is_used_for_the_average(name):
    model = net()
    averager = KINDS[name](model, dtype=torch.float64)
    reference = KINDS[name](net().double())  # the same rule on a float64 copy of the model
    for step in range(1, 20):
        perturb(model, step)
        with torch.no_grad():
            for a, b in zip(reference.online_model.parameters(), model.parameters()):
                a.copy_(b)
        averager.update(step)
        reference.update(step)
    for ours, theirs in zip(evaluated(averager).parameters(), evaluated(reference).parameters()):
        assert ours.dtype == torch.float64
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


def test_a_lower_dtype_can_be_asked_for():
    # e.g. a bf16 average of a float32 model to halve its memory: the caller's choice, not a default
    model = _scalar(1.0, torch.float32)
    ema = ConstantEMA(model, beta=0.5, dtype=torch.bfloat16)
    ema.update()
    _set(model, 2.0)
    ema.update()
    assert ema.averaged_model.weight.dtype == torch.bfloat16 and ema.averaged_model.weight.item() == 1.5


@pytest.mark.parametrize("dtype", LOW)
def test_swapped_into_casts_the_average_back_to_the_model_dtype(dtype):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).to(dtype)
    ema = ConstantEMA(model, beta=0.9)
    for step in range(1, 6):
        perturb(model, step)
        model.train()
        model(torch.randn(8, 3).to(dtype))
        ema.update()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with ema.swapped_into() as swapped:
        for key, value in swapped.state_dict().items():
            assert value.dtype == before[key].dtype
            assert torch.equal(value, ema.averaged_model.state_dict()[key].to(value.dtype))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("flat", [False, True])
def test_asking_the_average_for_another_dtype_later_does_not_crash(flat):
    model = net(torch.bfloat16)
    if flat:
        pack_(list(model.parameters()))
    ema = ConstantEMA(model, beta=0.5, dtype=torch.bfloat16)  # the old behaviour: the average in bf16
    ema.update()
    ema.averaged_model.float()  # then asked for float32: lerp_ used to fail on the dtype mismatch
    expected = [p.detach().float().clone() for p in ema.averaged_model.parameters()]
    for step in range(1, 4):
        perturb(model, step)
        ema.update()
        expected = [0.5 * e + 0.5 * p.detach().float() for e, p in zip(expected, model.parameters())]
    for ours, theirs in zip(ema.averaged_model.parameters(), expected):
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    ema.averaged_model.double()
    ema.update()


def test_per_replica_beta_on_a_bf16_stacked_model():
    stacked = nn.Linear(4, 3, bias=False).to(torch.bfloat16)
    betas = torch.tensor([0.5, 0.9, 0.999])
    ema = ConstantEMA(stacked, beta=betas)
    ema.update()
    expected = stacked.weight.detach().double().clone()
    for _ in range(1, 200):
        with torch.no_grad():
            stacked.weight.add_(0.01)
        ema.update()
        expected = betas.double()[:, None] * expected + (1 - betas.double()[:, None]) * stacked.weight.double()
    torch.testing.assert_close(ema.averaged_model.weight.double(), expected, rtol=0, atol=1e-4)


def test_power_ema_in_float64_on_a_ramp():
    gamma, total = 6.94, 2000
    model = _scalar(0.0, torch.float32)
    ema = PowerEMA(model, gamma=gamma, dtype=torch.float64)
    for t in range(1, total + 1):
        _set(model, float(t))
        ema.update(t)
    # β_t = ((t − 1)/t)^(γ+1) makes the average Σ a_i θ_i / t^(γ+1) with a_i = i^(γ+1) − (i − 1)^(γ+1)
    g1 = gamma + 1
    exact = sum((t**g1 - (t - 1) ** g1) * t for t in range(1, total + 1)) / total**g1
    assert ema.averaged_model.weight.item() == pytest.approx(exact, rel=1e-9)
