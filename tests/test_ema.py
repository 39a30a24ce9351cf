"""EMA against an independent implementation of the seed's formula (REFERENCE.md), step by step."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn

from emabench.averaging import EMA, half_life, warmup_decay


class SeedFormulaEMA:
    """REFERENCE.md's statement of the seed semantics, written independently of emabench (plain loops, float64)."""

    def __init__(self, params, beta, update_after_step, update_every, inv_gamma, power, min_value):
        self.shadow = [p.detach().double().clone() for p in params]
        self.kw = (beta, update_after_step, update_every, inv_gamma, power, min_value)
        self.s = 0
        self.initted = False

    def update(self, params):
        beta, after, every, inv_gamma, power, min_value = self.kw
        s_old = self.s
        self.s += 1
        if s_old % every != 0:
            return
        online = [p.detach().double() for p in params]
        if s_old <= after:
            self.shadow = [o.clone() for o in online]
            return
        if not self.initted:
            self.shadow = [o.clone() for o in online]
            self.initted = True
        e = max(self.s - after - 1, 0)
        d = 0.0 if e <= 0 else min(max(1 - (1 + e / inv_gamma) ** (-power), min_value), beta)
        self.shadow = [d * sh + (1 - d) * o for sh, o in zip(self.shadow, online)]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))


def _perturb(model: nn.Module, step: int) -> None:
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.add_(torch.sin(torch.arange(p.numel(), dtype=p.dtype).view_as(p) + step + i) * 0.1)


GRID = list(
    itertools.product(
        [0.9, 0.999],  # beta
        [0, 1, 7],  # update_after_step
        [1, 3],  # update_every
        [1.0, 2.0],  # inv_gamma
        [2 / 3, 1.0],  # power
        [0.0, 0.5],  # min_value
    )
)


@pytest.mark.parametrize("beta,after,every,inv_gamma,power,min_value", GRID)
def test_ema_matches_seed_formula_step_by_step(beta, after, every, inv_gamma, power, min_value):
    model = _net()
    kw = dict(
        beta=beta, update_after_step=after, update_every=every, inv_gamma=inv_gamma, power=power, min_value=min_value
    )
    ema = EMA(model, **kw)
    reference = SeedFormulaEMA(list(model.parameters()), **kw)
    for step in range(40):
        _perturb(model, step)
        ema.update()
        reference.update(list(model.parameters()))
        for ours, theirs in zip(ema.averaged_model.parameters(), reference.shadow):
            torch.testing.assert_close(ours.double(), theirs, rtol=1e-6, atol=1e-6)
    assert ema.num_updates == 40


def test_decay_is_readable_and_follows_warmup():
    model = _net()
    ema = EMA(model, beta=0.999, update_after_step=100, update_every=1, inv_gamma=1.0, power=2 / 3)
    for _ in range(101):
        ema.update()
    assert ema.decay == 0.0  # still copying (s_old <= 100)
    ema.update()  # s_old = 101: first averaging update, e = 102 - 100 - 1 = 1
    assert ema.decay == pytest.approx(1 - 2 ** (-2 / 3))
    for _ in range(5000):
        ema.update()
    assert ema.decay == pytest.approx(warmup_decay(5101 + 1 - 100 - 1, beta=0.999))
    assert ema.decay < 0.999  # the seed's 0.999 is far away after ~100 epochs of 50 steps


def test_timm_warmup_golden_values():
    # timm ModelEmaV3.get_decay(step) with warm-up (gamma 1, power 2/3): its e = step - 1 ... REFERENCE.md
    golden = {1: 0.0, 2: 0.370039, 11: 0.797820, 101: 0.953891, 1001: 0.990007, 31624: 0.999000}
    for step, value in golden.items():
        assert warmup_decay(step - 1, beta=0.9999) == pytest.approx(value, abs=1e-6)


def test_half_life_golden_values():
    assert half_life(0.99) == pytest.approx(69.0, abs=0.05)
    assert half_life(0.999) == pytest.approx(692.8, abs=0.05)
    assert half_life(0.9999) == pytest.approx(6931.1, abs=0.05)


def test_ema_model_is_a_frozen_copy_and_online_model_untouched():
    model = _net()
    before = copy.deepcopy(model.state_dict())
    ema = EMA(model, beta=0.9, update_after_step=0)
    assert ema.ema_model is ema.averaged_model
    assert all(not p.requires_grad for p in ema.ema_model.parameters())
    for _ in range(5):
        ema.update()
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    assert "online" not in " ".join(ema.state_dict())  # the online model is not saved with the average


def test_state_dict_round_trip_continues_identically():
    model = _net()
    kw = dict(beta=0.99, update_after_step=3, update_every=2, inv_gamma=1.0, power=2 / 3, min_value=0.0)
    ema = EMA(model, **kw)
    for step in range(10):
        _perturb(model, step)
        ema.update()
    restored = EMA(model, **kw)
    restored.load_state_dict(ema.state_dict())
    assert restored.num_updates == 10
    for step in range(10, 30):
        _perturb(model, step)
        ema.update()
        restored.update()
    for a, b in zip(ema.averaged_model.parameters(), restored.averaged_model.parameters()):
        assert torch.equal(a, b)


def test_per_replica_beta_equals_separate_emas():
    torch.manual_seed(1)
    stacked = nn.Linear(4, 3, bias=False)  # rows = 3 "replicas"
    betas = [0.5, 0.9, 0.99]
    ema = EMA(stacked, beta=torch.tensor(betas), update_after_step=2)
    singles = []
    for r, beta in enumerate(betas):
        row = nn.Linear(4, 1, bias=False)
        with torch.no_grad():
            row.weight.copy_(stacked.weight[r : r + 1])
        singles.append((row, EMA(row, beta=beta, update_after_step=2)))
    for _ in range(30):
        with torch.no_grad():
            stacked.weight.add_(torch.randn_like(stacked.weight) * 0.1)
        for r, (row, single) in enumerate(singles):
            with torch.no_grad():
                row.weight.copy_(stacked.weight[r : r + 1])
            single.update()
        ema.update()
    for r, (_, single) in enumerate(singles):
        torch.testing.assert_close(ema.averaged_model.weight[r : r + 1], single.averaged_model.weight)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"beta": 1.0}, "beta"),
        ({"beta": -0.1}, "beta"),
        ({"update_every": 0}, "update_every"),
        ({"update_after_step": -1}, "update_after_step"),
        ({"inv_gamma": 0.0}, "inv_gamma"),
        ({"power": 0.0}, "power"),
        ({"beta": 0.9, "min_value": 0.95}, "min_value"),
    ],
)
def test_bad_arguments_are_refused_at_construction(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        EMA(_net(), **kwargs)


def test_swapped_into_restores_weights_and_training_flag():
    model = _net()
    ema = EMA(model, beta=0.9, update_after_step=0)
    ema.update()
    _perturb(model, 99)
    original = copy.deepcopy(model.state_dict())
    model.train()
    with pytest.raises(RuntimeError), ema.swapped_into(model) as swapped:
        for a, b in zip(swapped.parameters(), ema.averaged_model.parameters()):
            assert torch.equal(a, b)
        raise RuntimeError("evaluation failed")
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, original[key])


@pytest.mark.parametrize("flat", [False, True])
def test_updates_never_build_autograd_graphs(flat):
    """Updates run outside no_grad on the flat path: the averages must stay plain tensors with no history."""
    from emabench.averaging import SWA, TFEMA, ConstantEMA, PostHocEMA, PowerEMA
    from emabench.averaging.flat import pack_

    model = _net()
    if flat:
        pack_(list(model.parameters()))
    averagers = [
        EMA(model, beta=0.9, update_after_step=0),
        ConstantEMA(model, beta=0.9),
        TFEMA(model, beta=0.9),
        SWA(model),
        PowerEMA(model, sigma_rel=0.1),
        PostHocEMA(model, sigma_rels=(0.05, 0.2), snapshot_every=2),
    ]
    for step in range(4):
        loss = model(torch.ones(2, 3)).sum()  # the online weights require grad and are part of a graph
        loss.backward()
        _perturb(model, step)
        for averager in averagers:
            averager.update()
    averagers[-1].synthesize(sigma_rel=0.1)
    for averager in averagers:
        for p in [*averager.averaged_model.parameters(), *averager.parameters()]:
            assert not p.requires_grad and p.grad_fn is None
