"""Four library defects that must not come back, each for every averager kind where it applies.

1. nothing floating to average: one ValueError at construction naming the model;
2. every numeric argument finite and in range: one ValueError naming the argument;
4. the flat fast path never reads (or writes) a tensor whose storage was replaced, whichever tensor it is;
5. ``decay`` survives ``state_dict``; post-hoc EMA refuses to serve an average before ``synthesize()``.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from emabench.averaging import (
    EMA,
    SWA,
    TFEMA,
    BiasCorrectedEMA,
    ConstantEMA,
    PostHocEMA,
    PowerEMA,
    decay_for_horizon,
    decay_from_half_life,
    solve_weights,
    swa_annealed_lr,
    update_bn,
)
from emabench.averaging.flat import flat_view, pack_
from tests.averager_kinds import KINDS, evaluated, net, perturb

# ---------------------------------------------------------------- 1. nothing floating to average


@pytest.mark.parametrize("name", KINDS)
def test_a_model_with_no_floating_tensors_is_refused_at_construction(name):
    with pytest.raises(ValueError, match=r"ReLU has nothing to average"):
        KINDS[name](nn.ReLU())


@pytest.mark.parametrize("name", KINDS)
def test_buffers_only_with_copy_policy_is_refused_at_construction(name):
    buffers_only = nn.BatchNorm1d(3, affine=False)  # running statistics, no parameters
    with pytest.raises(ValueError, match=r"BatchNorm1d has nothing to average.*buffers='copy'"):
        KINDS[name](buffers_only, buffers="copy")
    averager = KINDS[name](buffers_only, buffers="average")  # the statistics themselves are then averaged
    for step in range(1, 8):
        buffers_only(torch.randn(16, 3) + step)
        averager.update(step)
    assert torch.isfinite(evaluated(averager).running_mean).all()


# ---------------------------------------------------------------- 2. every numeric argument finite and in range

NAN, INF = math.nan, math.inf
BAD_NUMBERS = [
    (lambda m: EMA(m, beta=NAN), r"beta must be in \[0, 1\), got nan"),
    (lambda m: EMA(m, beta=torch.tensor([0.9, NAN])), r"beta must be in \[0, 1\)"),
    (lambda m: EMA(m, inv_gamma=NAN), r"inv_gamma must be a finite number in \(0, inf\], got nan"),
    (lambda m: EMA(m, inv_gamma=INF), r"inv_gamma must be a finite number in \(0, inf\], got inf"),
    (lambda m: EMA(m, power=NAN), r"power must be a finite number in \(0, inf\], got nan"),
    (lambda m: EMA(m, power=INF), r"power .*got inf"),
    (lambda m: EMA(m, power=-1.0), r"power .*got -1.0"),
    (lambda m: EMA(m, min_value=NAN), r"min_value must be a finite number in \[0, 0.999\], got nan"),
    (lambda m: EMA(m, update_after_step=2.5), r"update_after_step must be an integer >= 0, got 2.5"),
    (lambda m: EMA(m, update_every=True), r"update_every must be an integer >= 1, got True"),
    (lambda m: ConstantEMA(m, beta=INF), r"beta must be in \[0, 1\), got inf"),
    (lambda m: TFEMA(m, beta=NAN), r"beta must be in \[0, 1\), got nan"),
    (lambda m: BiasCorrectedEMA(m, beta=-INF), r"beta must be in \[0, 1\)"),
    (lambda m: SWA(m, start_step=NAN), r"start_step must be an integer >= 0, got nan"),
    (lambda m: SWA(m, every=INF), r"every must be an integer >= 1, got inf"),
    (lambda m: PowerEMA(m, gamma=NAN), r"gamma must be in \(-1, 1e\+06\], got nan"),
    (lambda m: PowerEMA(m, gamma=INF), r"gamma must be in .*got inf"),
    (lambda m: PowerEMA(m, sigma_rel=NAN), r"sigma_rel must be in .*got nan"),
    (lambda m: PowerEMA(m, sigma_rel="0.1"), r"sigma_rel must be in .*got 0.1"),
    (lambda m: PostHocEMA(m, gammas=(5.0, NAN), snapshot_every=10), r"gammas must be a finite number .*got nan"),
    (lambda m: PostHocEMA(m, gammas=(5.0, INF), snapshot_every=10), r"gammas must be a finite number .*got inf"),
    (lambda m: PostHocEMA(m, sigma_rels=(0.05, NAN), snapshot_every=10), r"sigma_rel must be in .*got nan"),
    (lambda m: PostHocEMA(m, snapshot_every=NAN), r"snapshot_every must be an integer >= 1, got nan"),
    (lambda m: EMA(m, dtype=torch.int32), r"dtype must be None or a floating-point torch.dtype"),
]


@pytest.mark.parametrize("factory,needle", BAD_NUMBERS)
def test_non_finite_and_out_of_range_arguments_are_refused_by_name(factory, needle):
    with pytest.raises(ValueError, match=needle):
        factory(net())


def test_functions_refuse_non_finite_numbers():
    with pytest.raises(ValueError, match=r"half-life must be a finite number > 0"):
        decay_from_half_life(NAN)
    with pytest.raises(ValueError, match=r"half_life must be a finite number > 0"):
        decay_for_horizon(INF)
    with pytest.raises(ValueError, match=r"initial_lr must be a finite number in \[0, inf\], got nan"):
        swa_annealed_lr(1, initial_lr=NAN, swa_lr=0.01)
    with pytest.raises(ValueError, match=r"swa_lr must be a finite number in \[0, inf\], got inf"):
        swa_annealed_lr(1, initial_lr=0.1, swa_lr=INF)
    with pytest.raises(ValueError, match=r"times must be > 0"):
        solve_weights([100.0, 200.0], [1.0, 2.0], NAN, 1.5)
    with pytest.raises(ValueError, match=r"gammas must be > -0.5"):
        solve_weights([100.0, 200.0], [1.0, 2.0], 200.0, NAN)


# ---------------------------------------------------------------- 4. the flat fast path never goes stale


def _flat_model() -> nn.Module:
    model = net()
    pack_(list(model.parameters()))  # one buffer, like emabench's stacked model: the averagers' fast path
    assert flat_view(list(model.parameters())) is not None
    return model


def _replace(param: torch.Tensor, value: float) -> None:
    param.data = torch.full_like(param, value)  # a new storage; the other parameters stay in the old buffer


@pytest.mark.parametrize("which", [0, 2, 3])  # first, middle and last parameter of the buffer
def test_replacing_any_online_parameter_storage_is_seen(which):
    model = _flat_model()
    ema = ConstantEMA(model, beta=0.5)
    for step in range(1, 4):
        perturb(model, step)
        ema.update()
    expected = [p.detach().clone() for p in ema.averaged_model.parameters()]
    _replace(list(model.parameters())[which], 5.0)
    for _ in range(4, 12):
        ema.update()
        expected = [0.5 * e + 0.5 * p.detach() for e, p in zip(expected, model.parameters())]
    for ours, theirs in zip(ema.averaged_model.parameters(), expected):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert float(list(ema.averaged_model.parameters())[which].mean()) == pytest.approx(5.0, abs=0.05)


@pytest.mark.parametrize("name", KINDS)
def test_every_kind_follows_a_replaced_parameter(name):
    twin = net()
    model = _flat_model()
    averager, reference = KINDS[name](model), KINDS[name](twin)  # the twin is never flat: the checked path
    for step in range(1, 30):
        for m in (model, twin):
            perturb(m, step)
        if step == 10:
            for m in (model, twin):
                _replace(list(m.parameters())[2], 5.0)
        averager.update(step)
        reference.update(step)
    for ours, theirs in zip(evaluated(averager).parameters(), evaluated(reference).parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


def test_moving_the_whole_online_model_is_seen():
    model = _flat_model()
    ema = ConstantEMA(model, beta=0.0, dtype=torch.float64)  # decay 0: the average is the online model
    ema.update()
    model.double()  # every parameter replaced at once; the old buffer is kept alive only by the average's view
    perturb(model, 7)
    ema.update()
    for ours, theirs in zip(ema.averaged_model.parameters(), model.parameters()):
        assert torch.equal(ours, theirs)


def test_replacing_an_averaged_parameter_is_seen_too():
    model = _flat_model()
    ema = ConstantEMA(model, beta=0.5)
    ema.update()
    target = list(ema.averaged_model.parameters())[1]
    target.data = torch.zeros_like(target)  # someone edits the average by hand
    ema.update()
    online = list(model.parameters())[1]
    torch.testing.assert_close(target, 0.5 * online.detach(), rtol=0, atol=1e-7)


def test_many_averagers_on_one_model_each_keep_the_fast_path_right():
    # each new averager takes its own view of the online buffer, which changes the buffer's use count: the others
    # must re-check (not fail, not go stale) and then continue on the fast path
    model = _flat_model()
    averagers = [ConstantEMA(model, beta=b) for b in (0.1, 0.5, 0.9)]
    for step in range(1, 6):
        perturb(model, step)
        for averager in averagers:
            averager.update()
        if step == 2:
            averagers.append(ConstantEMA(model, beta=0.7))
    assert all(a._pair is not None for a in averagers)  # all on the flat path now
    for averager in averagers[:3]:
        twin = net()
        reference = ConstantEMA(twin, beta=averager.beta)
        for step in range(1, 6):
            perturb(twin, step)
            reference.update()
        for ours, theirs in zip(averager.averaged_model.parameters(), reference.averaged_model.parameters()):
            torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- 5. decay in state_dict; post-hoc before synthesis


@pytest.mark.parametrize("name", [k for k in KINDS if k != "posthoc"])
def test_decay_reads_the_same_after_a_load(name):
    model = net()
    averager = KINDS[name](model)
    for step in range(1, 16):
        perturb(model, step)
        averager.update()
    buffer = io.BytesIO()
    torch.save(averager.state_dict(), buffer)
    buffer.seek(0)
    restored = KINDS[name](net())
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert averager.decay != 0.0
    assert restored.decay == averager.decay


def test_per_replica_decay_survives_a_load():
    stacked = nn.Linear(4, 3, bias=False)
    ema = EMA(stacked, beta=torch.tensor([0.5, 0.9, 0.99]), update_after_step=2)
    for _ in range(20):
        ema.update()
    restored = EMA(nn.Linear(4, 3, bias=False), beta=torch.tensor([0.5, 0.9, 0.99]), update_after_step=2)
    restored.load_state_dict(ema.state_dict())
    assert torch.equal(restored.decay, ema.decay) and ema.decay[0] == 0.5 and 0.5 < ema.decay[2] < 0.99


def test_a_state_dict_saved_before_decay_was_saved_still_loads():
    ema = EMA(net(), beta=0.9, update_after_step=0)
    for _ in range(5):
        ema.update()
    old = {k: v for k, v in ema.state_dict().items() if k != "decay"}
    restored = EMA(net(), beta=0.9, update_after_step=0)
    restored.load_state_dict(old)
    assert restored.num_updates == 5 and restored.decay == 0.0  # unknown until its next update
    restored.update()
    assert restored.decay == pytest.approx(1 - 6 ** (-2 / 3))  # step 6: e = 5


def test_post_hoc_refuses_to_serve_an_average_before_synthesis():
    model = net()
    posthoc = PostHocEMA(model, sigma_rels=(0.05, 0.2), snapshot_every=4)
    for step in range(1, 9):
        perturb(model, step)
        posthoc.update()
    refusals = [
        lambda: posthoc.averaged_model,
        lambda: posthoc.ema_model,
        lambda: posthoc(torch.ones(2, 3)),
        lambda: posthoc.swapped_into().__enter__(),
        lambda: update_bn([torch.ones(2, 3)], posthoc),
    ]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for refuse in refusals:
        with pytest.raises(RuntimeError, match=r"no average until synthesize"):
            refuse()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing was swapped in
    saved_early = copy.deepcopy(posthoc.state_dict())  # state_dict tensors are live references

    state, _ = posthoc.synthesize(sigma_rel=0.1)
    assert torch.equal(posthoc(torch.ones(2, 3)), posthoc.averaged_model(torch.ones(2, 3)))
    later = PostHocEMA(net(), sigma_rels=(0.05, 0.2), snapshot_every=4)
    later.load_state_dict(posthoc.state_dict())  # saved after a synthesis: the synthesized average comes back
    assert all(torch.equal(v, state[k]) for k, v in later.averaged_model.state_dict().items())
    early = PostHocEMA(net(), sigma_rels=(0.05, 0.2), snapshot_every=4)
    early.load_state_dict(saved_early)
    with pytest.raises(RuntimeError, match=r"no average until synthesize"):
        early(torch.ones(2, 3))
