"""The averaging rules against closed forms, golden values (REFERENCE.md) and torch.optim.swa_utils."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn, get_swa_multi_avg_fn

from emabench.averaging import (
    EMA,
    SWA,
    TFEMA,
    BiasCorrectedEMA,
    ConstantEMA,
    PostHocEMA,
    PowerEMA,
    decay_for_horizon,
    gamma_to_sigma_rel,
    half_life,
    power_function_beta,
    power_function_inner_product,
    sigma_rel_to_gamma,
    solve_weights,
    swa_annealed_lr,
    tf_decay,
    update_bn,
    warmup_decay,
)
from emabench.averaging.power import SIGMA_REL_MAX


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))


def _perturb(model: nn.Module, step: int) -> None:
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.add_(torch.sin(torch.arange(p.numel(), dtype=p.dtype).view_as(p) + step + i) * 0.1)


def _params64(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().double().clone() for p in model.parameters()]


def _scalar_model(value: float = 0.0) -> nn.Module:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(value)
    return model


def _set(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        model.weight.fill_(value)


def _assert_close(averager, reference: list[torch.Tensor]) -> None:
    for ours, theirs in zip(averager.averaged_model.parameters(), reference):
        torch.testing.assert_close(ours.double(), theirs, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- constant, TF and bias-corrected EMA


@pytest.mark.parametrize("beta,every,after", [(0.9, 1, 0), (0.99, 3, 0), (0.5, 2, 5), (0.0, 1, 2)])
def test_constant_ema_matches_closed_form(beta, every, after):
    model = _net()
    ema = ConstantEMA(model, beta=beta, update_every=every, update_after_step=after)
    shadow = None
    for s in range(30):  # s = earlier update() calls
        _perturb(model, s)
        ema.update()
        if s % every == 0:
            online = _params64(model)
            copying = s <= after
            shadow = online if copying else [beta * a + (1 - beta) * o for a, o in zip(shadow, online)]
            assert ema.decay == (0.0 if copying else beta)
        _assert_close(ema, shadow)


def test_constant_ema_golden_and_swa_utils_oracle():
    model = _scalar_model()
    ema = ConstantEMA(model, beta=0.9)
    values = []
    for theta in (1.0, 2.0, 3.0):
        _set(model, theta)
        ema.update()
        values.append(ema.averaged_model.weight.item())
    assert values == pytest.approx([1.0, 1.1, 1.29], abs=1e-6)  # REFERENCE.md: torch swa_utils EMA(0.9) of 1, 2, 3

    model = _net()
    ema = ConstantEMA(model, beta=0.97)
    oracle = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.97))
    for step in range(50):
        _perturb(model, step)
        ema.update()
        oracle.update_parameters(model)
    for ours, theirs in zip(ema.averaged_model.parameters(), oracle.module.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_tf_threshold_golden_values():
    golden = {1: 0.181818, 10: 0.55, 100: 0.918182, 1000: 0.991089}  # REFERENCE.md
    for n, value in golden.items():
        assert tf_decay(n, beta=0.9999) == pytest.approx(value, abs=1e-6)
    model = _scalar_model()
    ema = TFEMA(model, beta=0.9999)
    for n in range(1, 1001):
        ema.update()
        if n in golden:
            assert ema.decay == pytest.approx(golden[n], abs=1e-6)
    assert ema.n_averaged == 1000
    assert TFEMA(_scalar_model(), beta=0.5).decay == 0.0  # before any update
    capped = TFEMA(_scalar_model(), beta=0.5)
    for _ in range(20):
        capped.update()
    assert capped.decay == 0.5  # min(beta, ...) once the ramp passes beta


@pytest.mark.parametrize("count_from,every", [(1, 1), (0, 1), (1, 4)])
def test_tf_ema_matches_closed_form(count_from, every):
    model = _net()
    shadow = _params64(model)  # TF initialises the shadow to the variable's value
    ema = TFEMA(model, beta=0.95, update_every=every, count_from=count_from)
    n = count_from
    for s in range(40):
        _perturb(model, s)
        ema.update()
        if s % every == 0:
            d = min(0.95, (1 + n) / (10 + n))
            shadow = [d * a + (1 - d) * o for a, o in zip(shadow, _params64(model))]
            assert ema.decay == pytest.approx(d, abs=1e-15)
            n += 1
        _assert_close(ema, shadow)
    first = TFEMA(model, beta=0.95, count_from=count_from)
    first.update()
    assert first.decay == pytest.approx(0.1 if count_from == 0 else 2 / 11)  # seed 003's Paddle class: n = 0 first


def test_bias_corrected_ema_matches_closed_form():
    beta = 0.9
    model = _net()
    ema = BiasCorrectedEMA(model, beta=beta, update_every=2)
    m = [torch.zeros_like(p) for p in _params64(model)]
    t = 0
    for s in range(40):
        _perturb(model, s)
        ema.update()
        if s % 2 == 0:
            t += 1
            m = [beta * a + (1 - beta) * o for a, o in zip(m, _params64(model))]
            assert ema.decay == pytest.approx((beta - beta**t) / (1 - beta**t), abs=1e-15)
            if t == 1:  # the first update copies
                for ours, o in zip(ema.averaged_model.parameters(), _params64(model)):
                    torch.testing.assert_close(ours.double(), o, rtol=1e-6, atol=1e-7)
        _assert_close(ema, [a / (1 - beta**t) for a in m])
        for raw, a in zip(ema.accumulator.parameters(), m):  # the zero-initialised accumulator itself
            torch.testing.assert_close(raw.double(), a, rtol=1e-6, atol=1e-6)
    assert ema.n_averaged == 20


def test_bias_corrected_ema_keeps_a_constant_exactly():
    model = _scalar_model(3.0)
    ema = BiasCorrectedEMA(model, beta=0.999)
    for _ in range(5):
        ema.update()
    assert ema.averaged_model.weight.item() == pytest.approx(3.0, rel=1e-6)  # no pull towards the zero start


@pytest.mark.parametrize(
    "factory",
    [
        lambda m, b: ConstantEMA(m, beta=b, update_after_step=2),
        lambda m, b: TFEMA(m, beta=b),
        lambda m, b: BiasCorrectedEMA(m, beta=b),
    ],
    ids=["constant", "tf", "bias_corrected"],
)
def test_per_replica_beta_equals_separate_averagers(factory):
    torch.manual_seed(1)
    stacked = nn.Linear(4, 3, bias=False)  # rows = 3 "replicas"
    betas = [0.5, 0.9, 0.99]
    averager = factory(stacked, torch.tensor(betas))
    singles = []
    for r, beta in enumerate(betas):
        row = nn.Linear(4, 1, bias=False)
        with torch.no_grad():
            row.weight.copy_(stacked.weight[r : r + 1])
        singles.append((row, factory(row, beta)))
    for _ in range(25):
        with torch.no_grad():
            stacked.weight.add_(torch.randn_like(stacked.weight) * 0.1)
        for r, (row, single) in enumerate(singles):
            with torch.no_grad():
                row.weight.copy_(stacked.weight[r : r + 1])
            single.update()
        averager.update()
    for r, (_, single) in enumerate(singles):
        torch.testing.assert_close(averager.averaged_model.weight[r : r + 1], single.averaged_model.weight)


def test_ema_decay_follows_timm_warmup_golden_values():
    # timm ModelEmaV3.get_decay(step), warm-up gamma 1, power 2/3 (REFERENCE.md); EMA's n-th call uses timm's step n.
    golden = {1: 0.0, 2: 0.370039, 11: 0.797820, 101: 0.953891, 1001: 0.990007}
    ema = EMA(_scalar_model(), beta=0.9999, update_after_step=0)
    for n in range(1, 1002):
        ema.update()
        if n in golden:
            assert ema.decay == pytest.approx(golden[n], abs=1e-6)
    assert warmup_decay(31624 - 1, beta=0.9999) == pytest.approx(0.999000, abs=1e-6)


# ---------------------------------------------------------------- SWA


def test_swa_golden_and_swa_utils_oracle():
    model = _scalar_model()
    swa = SWA(model)
    for theta in (1.0, 2.0, 3.0):
        _set(model, theta)
        swa.update()
    assert swa.averaged_model.weight.item() == pytest.approx(2.0, abs=1e-6)  # REFERENCE.md
    assert swa.n_averaged == 3
    assert swa.decay == pytest.approx(2 / 3)

    model = _net()
    swa = SWA(model)
    oracle = AveragedModel(model, multi_avg_fn=get_swa_multi_avg_fn())
    for step in range(60):
        _perturb(model, step)
        swa.update()
        oracle.update_parameters(model)
    assert int(oracle.n_averaged) == swa.n_averaged == 60
    for ours, theirs in zip(swa.averaged_model.parameters(), oracle.module.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("start,every", [(0, 1), (5, 1), (6, 4), (0, 3)])
def test_swa_start_and_every_average_the_chosen_steps(start, every):
    model = _net()
    initial = _params64(model)
    swa = SWA(model, start_step=start, every=every)
    taken = []
    for t in range(1, 31):  # t = optimizer steps so far
        _perturb(model, t)
        swa.update()
        if t >= start and (t - start) % every == 0:
            taken.append(_params64(model))
        expected = [sum(ps) / len(taken) for ps in zip(*taken)] if taken else initial
        _assert_close(swa, expected)
    assert swa.n_averaged == len(taken)


@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("anneal_epochs", [0, 1, 5])
def test_swa_annealed_lr_matches_torch_swalr(strategy, anneal_epochs):
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5)
    scheduler = SWALR(optimizer, swa_lr=0.05, anneal_epochs=anneal_epochs, anneal_strategy=strategy)
    for epoch in range(12):
        expected = swa_annealed_lr(epoch, initial_lr=0.5, swa_lr=0.05, anneal_epochs=anneal_epochs, strategy=strategy)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12, abs=1e-15)
        optimizer.step()
        scheduler.step()
    assert swa_annealed_lr(100, initial_lr=0.5, swa_lr=0.05, strategy=strategy) == pytest.approx(0.05)


def test_update_bn_reestimates_statistics_and_restores_state():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=0.3))
    swa = SWA(model)
    assert swa.buffer_policy == "copy"  # BatchNorm statistics are copied, not averaged
    for step in range(5):
        _perturb(model, step)
        swa.update()
    data = torch.randn(64, 3)
    batches = [(data[i : i + 16], torch.zeros(16)) for i in range(0, 64, 16)]
    bn = swa.averaged_model[1]
    before = bn.running_mean.clone()
    update_bn(batches, swa)
    features = swa.averaged_model[0](data)
    assert not torch.equal(bn.running_mean, before)
    torch.testing.assert_close(bn.running_mean, features.mean(0))  # equal batches: mean of batch means
    assert not swa.averaged_model.training and bn.momentum == 0.3

    model.train()
    update_bn([data], model)
    assert model.training and model[1].momentum == 0.3

    def failing():
        yield data
        raise RuntimeError("loader broke")

    model.eval()
    with pytest.raises(RuntimeError):
        update_bn(failing(), model)
    assert not model.training and model[1].momentum == 0.3


# ---------------------------------------------------------------- power-function EMA


def test_sigma_rel_gamma_golden_values_and_inverse():
    golden = {0.05: 16.9722, 0.10: 6.9372, 0.20: 1.8262}  # REFERENCE.md, EDM2 Algorithm 2
    for sigma_rel, gamma in golden.items():
        assert sigma_rel_to_gamma(sigma_rel) == pytest.approx(gamma, abs=1e-4)
        assert gamma_to_sigma_rel(sigma_rel_to_gamma(sigma_rel)) == pytest.approx(sigma_rel, rel=1e-12)
    for sigma_rel in (0.01, 0.28, 0.3, SIGMA_REL_MAX):
        gamma = sigma_rel_to_gamma(sigma_rel)
        assert gamma > -1
        s = sigma_rel**-2
        assert gamma**3 + 7 * gamma**2 + (16 - s) * gamma + (12 - s) == pytest.approx(0.0, abs=1e-6 * s)
    assert abs(SIGMA_REL_MAX - 0.30028) < 1e-5


def test_power_ema_matches_closed_form_with_update_every():
    gamma, every = 2.5, 3
    model = _net()
    ema = PowerEMA(model, gamma=gamma, update_every=every)
    shadow, last = None, 0
    for t in range(1, 40):
        _perturb(model, t)
        ema.update()
        if (t - 1) % every == 0:  # steps 1, k+1, 2k+1, …
            beta = (1 - (t - last) / t) ** (gamma + 1)
            online = _params64(model)
            shadow = online if shadow is None else [beta * a + (1 - beta) * o for a, o in zip(shadow, online)]
            assert ema.decay == pytest.approx(beta, abs=1e-15) == power_function_beta(gamma, t, t - last)
            last = t
        if shadow is not None:
            _assert_close(ema, shadow)
    assert ema.last_update_step == 37


@pytest.mark.parametrize("every", [1, 10])
def test_power_ema_ramp_reaches_ideal_average(every):
    # θ_t = t for t = 1..T: the ideal power-function average is (γ+1)/(γ+2)·T (REFERENCE.md). Discrete sampling
    # every k steps biases it by about k/(2T) relative; 5e-4 is 4× the error at k = 10 (measured 2.5e-4).
    # T = 20001: the last update (steps 1, 11, …) falls on T.
    gamma, T = 6.94, 20001
    model = _scalar_model()
    ema = PowerEMA(model, gamma=gamma, update_every=every)
    for t in range(1, T + 1):
        _set(model, float(t))
        ema.update()
    ideal = (gamma + 1) / (gamma + 2)
    assert ema.averaged_model.weight.item() / T == pytest.approx(ideal, abs=5e-4)
    # The same loop with Δt = 1 (ema-pytorch's KarrasEMA) lands far away: the test tells the two apart.
    avg = 0.0
    for t in range(1, T + 1, every):
        beta = (1 - 1 / t) ** (gamma + 1)
        avg = beta * avg + (1 - beta) * t
    assert abs(avg / T - ideal) > 0.1 if every > 1 else abs(avg / T - ideal) < 5e-4


def test_power_ema_accepts_sigma_rel():
    ema = PowerEMA(_net(), sigma_rel=0.10)
    assert ema.gamma == pytest.approx(6.9372, abs=1e-4) and ema.sigma_rel == pytest.approx(0.10)


# ---------------------------------------------------------------- post-hoc EMA


def test_power_function_inner_product_matches_numerical_integral():
    tau = torch.linspace(0, 1500, 1_500_001, dtype=torch.float64)

    def profile(t, gamma):
        return torch.where(tau <= t, (gamma + 1) * (tau / t) ** gamma / t, torch.zeros_like(tau))

    for t_a, g_a, t_b, g_b in [(1000, 3.0, 1500, 7.0), (1500, 0.2, 800, 16.9), (700, 5.0, 700, 5.0)]:
        numeric = torch.trapezoid(profile(t_a, g_a) * profile(t_b, g_b), tau)
        exact = power_function_inner_product(t_a, g_a, t_b, g_b)
        assert float(exact) == pytest.approx(float(numeric), rel=1e-4)
        assert float(exact) == pytest.approx(float(power_function_inner_product(t_b, g_b, t_a, g_a)), rel=1e-12)


def test_solve_weights_reproduces_a_stored_profile_exactly():
    t_i = [100.0, 200.0, 300.0, 100.0, 200.0, 300.0]
    gamma_i = [16.97, 16.97, 16.97, 0.17, 0.17, 0.17]
    weights, error = solve_weights(t_i, gamma_i, 300.0, 0.17)
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(weights, torch.tensor([0, 0, 0, 0, 0, 1.0], dtype=torch.float64), atol=1e-6, rtol=0)
    assert error < 1e-6
    _, coarse = solve_weights(t_i, gamma_i, 300.0, 6.94)  # a profile between the stored ones: approximated
    steps = [float(t) for t in range(10, 301, 10)]
    _, fine = solve_weights(steps * 2, [16.97] * 30 + [0.17] * 30, 300.0, 6.94)
    assert 0 < fine < 0.01 < coarse  # more snapshots, better fit


def _train_deterministically(model: nn.Module, averagers: list, steps: int, on_step=None) -> None:
    generator = torch.Generator().manual_seed(0)
    n = sum(p.numel() for p in model.parameters())
    phase = torch.rand(n, generator=generator) * 6
    for t in range(1, steps + 1):
        drift = torch.sin(t / 400 + phase) + 0.5 * torch.sin(t / 97 + 2 * phase)
        with torch.no_grad():
            nn.utils.vector_to_parameters(drift + 0.05 * torch.randn(n, generator=generator), model.parameters())
        for averager in averagers:
            averager.update()
        if on_step is not None:
            on_step(t)


def test_post_hoc_synthesis_recovers_a_directly_tracked_power_ema():
    # 3000 steps of a drifting, noisy 15-weight model; snapshots of sigma_rel 0.05 and 0.28 every 100 steps.
    # The synthesized sigma_rel = 0.10 average equals the one tracked directly within 1e-3 (weights are O(1);
    # measured 4e-5), at the end and at an earlier snapshot step.
    model = nn.Linear(4, 3)
    posthoc = PostHocEMA(model, sigma_rels=(0.05, 0.28), snapshot_every=100)
    direct = PowerEMA(model, sigma_rel=0.10)
    at_2000 = {}

    def keep(t):
        if t == 2000:
            at_2000.update({k: v.clone() for k, v in direct.averaged_model.state_dict().items()})

    _train_deterministically(model, [posthoc, direct], 3000, keep)
    snapshots = posthoc.snapshots()
    assert len(snapshots) == 60 and {s["step"] for s in snapshots} == set(range(100, 3001, 100))
    assert all(t.device.type == "cpu" for s in snapshots for t in s["state"].values())

    state, error = posthoc.synthesize(sigma_rel=0.10)
    assert error < 0.01 and posthoc.fit_error == error
    for key, value in direct.averaged_model.state_dict().items():
        torch.testing.assert_close(state[key], value, atol=1e-3, rtol=0)
        torch.testing.assert_close(posthoc.averaged_model.state_dict()[key], value, atol=1e-3, rtol=0)
    state, error = posthoc.synthesize(gamma=sigma_rel_to_gamma(0.10), step=2000)
    assert error < 0.01
    for key, value in at_2000.items():
        torch.testing.assert_close(state[key], value, atol=1e-3, rtol=0)


def test_post_hoc_snapshot_is_manual_without_snapshot_every():
    model = _net()
    posthoc = PostHocEMA(model, gammas=(3.0, 10.0), snapshot_every=None, update_every=2)
    with pytest.raises(RuntimeError, match="nothing to snapshot"):
        posthoc.snapshot()
    for step in range(7):
        _perturb(model, step)
        posthoc.update()
    assert posthoc.snapshots() == []
    posthoc.snapshot()
    posthoc.snapshot()  # same steps again: not stored twice
    assert [(s["step"], s["gamma"]) for s in posthoc.snapshots()] == [(7, 3.0), (7, 10.0)]  # steps 1, 3, 5, 7
    state, _ = posthoc.synthesize(gamma=3.0)  # a stored profile comes back as stored
    for key, value in posthoc.profiles[0].averaged_model.state_dict().items():
        torch.testing.assert_close(state[key], value, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- half-life horizons


def test_decay_for_horizon_golden_values_and_units():
    for decay, updates in [(0.99, 69.0), (0.999, 692.8), (0.9999, 6931.1)]:  # REFERENCE.md
        assert half_life(decay) == pytest.approx(updates, abs=0.05)
        assert decay_for_horizon(half_life(decay)) == pytest.approx(decay, abs=1e-12)
    h = half_life(0.999)
    every10 = decay_for_horizon(h, update_every=10)
    assert every10 == pytest.approx(0.5 ** (10 / h)) and half_life(every10) * 10 == pytest.approx(h)
    assert decay_for_horizon(h * 32, "samples", batch_size=32) == pytest.approx(0.999)
    assert decay_for_horizon(h / 50, "epochs", steps_per_epoch=50) == pytest.approx(0.999)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"half_life": 0.0}, "half_life.*0.0"),
        ({"half_life": 10.0, "unit": "hours"}, "unit.*hours"),
        ({"half_life": 10.0, "unit": "samples"}, "batch_size.*None"),
        ({"half_life": 10.0, "unit": "epochs", "steps_per_epoch": 0}, "steps_per_epoch.*0"),
        ({"half_life": 10.0, "update_every": 0}, "update_every.*0"),
    ],
)
def test_decay_for_horizon_refuses_bad_arguments(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        decay_for_horizon(**kwargs)


# ---------------------------------------------------------------- shared behaviour of every averager

FACTORIES = {
    "ema": lambda m: EMA(m, beta=0.99, update_after_step=3, update_every=2),
    "constant": lambda m: ConstantEMA(m, beta=0.9, update_every=2, update_after_step=3),
    "tf": lambda m: TFEMA(m, beta=0.99, update_every=3),
    "bias_corrected": lambda m: BiasCorrectedEMA(m, beta=0.95, update_every=2),
    "swa": lambda m: SWA(m, start_step=4, every=3),
    "power": lambda m: PowerEMA(m, sigma_rel=0.15, update_every=3),
    "posthoc": lambda m: PostHocEMA(m, sigma_rels=(0.05, 0.2), snapshot_every=6, update_every=3),
}


@pytest.mark.parametrize("name", FACTORIES)
def test_state_dict_round_trip_continues_bit_identically(name):
    model = _net()
    averager = FACTORIES[name](model)
    for step in range(13):
        _perturb(model, step)
        averager.update()
    buffer = io.BytesIO()
    torch.save(averager.state_dict(), buffer)
    buffer.seek(0)
    restored = FACTORIES[name](model)  # a resumed run builds a fresh averager on its model, then loads
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.num_updates == 13
    for step in range(13, 40):
        _perturb(model, step)
        averager.update()
        restored.update()
    assert getattr(restored, "decay", None) == getattr(averager, "decay", None)
    for (key, a), b in zip(averager.state_dict().items(), restored.state_dict().values()):
        if key.endswith("_extra_state"):
            assert [s["step"] for s in a["snapshots"]] == [s["step"] for s in b["snapshots"]]
            for sa, sb in zip(a["snapshots"], b["snapshots"]):
                assert all(torch.equal(sa["state"][k], sb["state"][k]) for k in sa["state"])
        else:
            assert torch.equal(a, b), key
    if name == "posthoc":
        assert len(averager.snapshots()) == 12  # 6 steps × 2 profiles
        synthesized, _ = averager.synthesize(sigma_rel=0.1)
        again, _ = restored.synthesize(sigma_rel=0.1)
        assert all(torch.equal(synthesized[k], again[k]) for k in synthesized)


def test_ema_state_dict_keys_are_the_counters_then_the_average():
    keys = list(EMA(_net(), beta=0.9).state_dict())
    assert keys[:3] == ["step", "initted", "decay"] and all(k.startswith("averaged_model.") for k in keys[3:])


@pytest.mark.parametrize("name", FACTORIES)
def test_swapped_into_restores_weights_and_training_flag_on_error(name):
    model = _net()
    averager = FACTORIES[name](model)
    for step in range(12):
        _perturb(model, step)
        averager.update()
    if name == "posthoc":
        averager.synthesize(sigma_rel=0.1)
    _perturb(model, 99)
    original = copy.deepcopy(model.state_dict())
    model.train()
    with pytest.raises(RuntimeError), averager.swapped_into() as swapped:
        assert swapped is model
        for a, b in zip(swapped.parameters(), averager.averaged_model.parameters()):
            assert torch.equal(a, b)
        raise RuntimeError("evaluation failed")
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, original[key])
    assert averager.ema_model is averager.averaged_model
    assert all(not p.requires_grad for p in averager.averaged_model.parameters())


@pytest.mark.parametrize("name", FACTORIES)
def test_averagers_only_observe_the_online_model(name):
    model = _net()
    before = copy.deepcopy(model.state_dict())
    averager = FACTORIES[name](model)
    for _ in range(12):
        averager.update()
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    if name == "posthoc":
        averager.synthesize(sigma_rel=0.1)
    assert torch.equal(averager(torch.ones(2, 3)), averager.averaged_model(torch.ones(2, 3)))


@pytest.mark.parametrize(
    "factory,needle",
    [
        (lambda m: ConstantEMA(m, beta=1.0), r"beta must be in \[0, 1\), got 1.0"),
        (lambda m: ConstantEMA(m, beta=-0.1), r"beta.*-0.1"),
        (lambda m: ConstantEMA(m, beta=torch.tensor([0.9, 1.5])), r"beta.*1.5"),
        (lambda m: ConstantEMA(m, beta=0.9, update_every=0), r"update_every.*0"),
        (lambda m: ConstantEMA(m, beta=0.9, update_after_step=-2), r"update_after_step.*-2"),
        (lambda m: ConstantEMA(m, beta=0.9, buffers="mean"), r"buffers.*mean"),
        (lambda m: TFEMA(m, beta=1.2), r"beta.*1.2"),
        (lambda m: TFEMA(m, beta=0.9, count_from=2), r"count_from.*2"),
        (lambda m: BiasCorrectedEMA(m, beta=1.0), r"beta.*1.0"),
        (lambda m: BiasCorrectedEMA(m, beta=0.9, update_every=-1), r"update_every.*-1"),
        (lambda m: SWA(m, start_step=-1), r"start_step.*-1"),
        (lambda m: SWA(m, every=0), r"every.*0"),
        (lambda m: PowerEMA(m), r"exactly one of gamma or sigma_rel"),
        (lambda m: PowerEMA(m, gamma=1.0, sigma_rel=0.1), r"exactly one"),
        (lambda m: PowerEMA(m, sigma_rel=0.0), r"sigma_rel.*got 0.0"),
        (lambda m: PowerEMA(m, sigma_rel=-0.1), r"sigma_rel.*-0.1"),
        (lambda m: PowerEMA(m, sigma_rel=0.31), r"sigma_rel must be in \[1e-06, 0.30028\], got 0.31"),
        (lambda m: PowerEMA(m, gamma=-1.0), r"gamma.*-1.0"),
        (lambda m: PowerEMA(m, gamma=3.0, update_every=0), r"update_every.*0"),
        (lambda m: PostHocEMA(m, sigma_rels=(0.05,), snapshot_every=10), r"at least two profiles, got 1"),
        (lambda m: PostHocEMA(m, gammas=(5.0,), snapshot_every=10), r"at least two profiles, got 1"),
        (lambda m: PostHocEMA(m, gammas=(5.0, 5.0), snapshot_every=10), r"must differ.*5.0"),
        (lambda m: PostHocEMA(m, gammas=(5.0, -0.7), snapshot_every=10), r"gammas.*-0.7"),
        (lambda m: PostHocEMA(m, sigma_rels=(0.05, 0.5), snapshot_every=10), r"sigma_rel.*0.5"),
        (lambda m: PostHocEMA(m, sigma_rels=(0.05, 0.1), gammas=(1.0, 2.0), snapshot_every=10), r"not both"),
        (lambda m: PostHocEMA(m, snapshot_every=0), r"snapshot_every.*0"),
        (lambda m: PostHocEMA(m, snapshot_every=10, update_every=3), r"multiple of update_every=3, got 10"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_value(factory, needle):
    with pytest.raises(ValueError, match=needle):
        factory(_net())


def test_bad_function_arguments_raise_value_error():
    with pytest.raises(ValueError, match=r"sigma_rel.*0.4"):
        sigma_rel_to_gamma(0.4)
    with pytest.raises(ValueError, match=r"gamma.*-2"):
        gamma_to_sigma_rel(-2.0)
    with pytest.raises(ValueError, match=r"gammas must be > -0.5.*-0.6"):
        solve_weights([100.0, 200.0], [1.0, 2.0], 200.0, -0.6)
    with pytest.raises(ValueError, match=r"times must be > 0"):
        solve_weights([0.0, 200.0], [1.0, 2.0], 200.0, 1.5)
    with pytest.raises(ValueError, match=r"strategy.*step"):
        swa_annealed_lr(1, initial_lr=0.1, swa_lr=0.01, strategy="step")
    posthoc = PostHocEMA(_net(), snapshot_every=5)
    with pytest.raises(ValueError, match=r"no snapshot at or before step None"):
        posthoc.synthesize(sigma_rel=0.1)
    for _ in range(5):
        posthoc.update()
    with pytest.raises(ValueError, match=r"no snapshot at or before step 3"):
        posthoc.synthesize(sigma_rel=0.1, step=3)
    with pytest.raises(ValueError, match=r"exactly one of gamma or sigma_rel"):
        posthoc.synthesize()
    assert math.isfinite(posthoc.synthesize(sigma_rel=0.1)[1])


@pytest.mark.parametrize("sigma_rel", [1e-200, 5e-7])
def test_sigma_rel_far_below_any_profile_is_a_value_error_not_an_overflow(sigma_rel):
    with pytest.raises(ValueError, match="sigma_rel must be in"):
        sigma_rel_to_gamma(sigma_rel)


def test_gamma_too_large_for_floats_is_a_value_error():
    with pytest.raises(ValueError, match="gamma must be in"):
        gamma_to_sigma_rel(1e308)
