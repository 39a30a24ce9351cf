"""RMSProp with Nesterov momentum (emabench.optim) against the seed's five lines, per replica and in a buffer."""

from __future__ import annotations

import inspect
import io
import math
import re
from collections.abc import Callable

import pytest
import torch
from torch import nn

from emabench.config import load_config
from emabench.errors import ConfigError
from emabench.optim import RMSpropNesterov, rmsprop_nesterov_step

from .conftest import ROOT

STEPS = 60
DIGITS = ROOT / "configs" / "digits.yaml"
SETTINGS = {"alpha": 0.9, "momentum": 0.9, "eps": 1e-6}


def seed_rule(
    loss: Callable[[list[torch.Tensor]], torch.Tensor], theta: list[torch.Tensor], lrs: list[float], *, alpha: float,
    momentum: float, eps: float, weight_decay: float,
) -> list[tuple[list[torch.Tensor], list[torch.Tensor]]]:  # fmt: skip
    """Seed 004's five lines as written, the gradient really taken at θ̃ = θ + α·v (L2 as λ/2·‖θ̃‖² in the loss);
    returns (θ̃_t, v_t) after every step."""
    rho, a = alpha, momentum
    v = [torch.zeros_like(t) for t in theta]
    r = [torch.zeros_like(t) for t in theta]
    out = []
    for lr in lrs:
        ahead = [(t + a * vt).requires_grad_() for t, vt in zip(theta, v)]
        objective = loss(ahead) + weight_decay / 2 * sum((x * x).sum() for x in ahead)
        g = torch.autograd.grad(objective, ahead)
        r = [rho * rt + (1 - rho) * gt * gt for rt, gt in zip(r, g)]
        v = [a * vt - lr / torch.sqrt(eps + rt) * gt for vt, rt, gt in zip(v, r, g)]
        theta = [t + vt for t, vt in zip(theta, v)]
        out.append(([t + a * vt for t, vt in zip(theta, v)], v))
    return out


def quadratic() -> tuple[nn.Module, Callable[[list[torch.Tensor]], torch.Tensor]]:
    """½(x − c)ᵀA(x − c) with A symmetric positive definite (condition number ~100)."""
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    a = q @ torch.diag(torch.logspace(-1, 1, 6, dtype=torch.float64)) @ q.T
    c = torch.randn(6, generator=g, dtype=torch.float64)
    holder = nn.ParameterList([nn.Parameter(torch.randn(6, generator=g, dtype=torch.float64) * 3)])
    return holder, lambda xs: 0.5 * (xs[0] - c) @ a @ (xs[0] - c)


def mlp() -> tuple[nn.Module, Callable[[list[torch.Tensor]], torch.Tensor]]:
    """A 3-8-2 tanh MLP's mean squared error on 16 fixed samples."""
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(16, 3, generator=g, dtype=torch.float64), torch.randn(16, 2, generator=g, dtype=torch.float64)
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).double()

    def loss(ps: list[torch.Tensor]) -> torch.Tensor:
        w1, b1, w2, b2 = ps
        return ((torch.tanh(x @ w1.T + b1) @ w2.T + b2 - y) ** 2).mean()

    return model, loss


def run_optimizer(model: nn.Module, loss, schedule: str, lr: float, weight_decay: float):
    """60 steps of the class under torch's own schedulers; the lr used at each step and (φ_t, v_t) after it."""
    params = list(model.parameters())
    optimizer = RMSpropNesterov(params, lr=lr, weight_decay=weight_decay, **SETTINGS)
    if schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=STEPS, eta_min=lr / 10)
    else:  # one halving at step 30: the monitored loss gets worse once
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
    lrs, states = [], []
    for t in range(STEPS):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.zero_grad()
        loss(params).backward()
        optimizer.step()
        states.append(
            ([p.detach().clone() for p in params], [optimizer.state[p]["momentum_buffer"].clone() for p in params])
        )
        scheduler.step() if schedule == "cosine" else scheduler.step(100.0 if t == 29 else -t)
    return lrs, states


# The MLP at lr 0.005: at 0.01 its late steps amplify a gradient's rounding (∂u/∂g = η/√(δ + r) is large where r is
# small) and two roundings of the same rule drift apart to 1e-12 by step 53 (measured); at 0.005 they stay ~1e-15.
@pytest.mark.parametrize("problem,lr", [(quadratic, 0.05), (mlp, 0.005)])
@pytest.mark.parametrize("schedule", ["cosine", "plateau"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_equals_the_seed_rule_with_the_gradient_at_the_look_ahead_point(problem, lr, schedule, weight_decay):
    """The parameters hold θ̃_t = θ_t + α·v_t of the seed's rule, and the velocity is the seed's v_t, to 1e-12 at
    every one of 60 float64 steps, with a learning rate that changes (cosine, or one plateau halving)."""
    model, loss = problem()
    theta0 = [p.detach().clone() for p in model.parameters()]
    lrs, states = run_optimizer(model, loss, schedule, lr, weight_decay)
    assert len(set(lrs)) > 2 if schedule == "cosine" else sorted(set(lrs)) == [lr / 2, lr]
    expected = seed_rule(loss, theta0, lrs, weight_decay=weight_decay, **SETTINGS)
    for (phi, v), (ahead, v_seed) in zip(states, expected, strict=True):
        for got, want in zip(phi + v, ahead + v_seed):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    moved = max((a - b).abs().max().item() for a, b in zip(states[-1][0], states[-2][0]))
    assert moved > 1e-4  # compared while the iterates still move, not at a fixed point


R = 3
SHAPES = [(4, 3), (3,)]


def replica_grads(rows: list[torch.Tensor]) -> list[torch.Tensor]:
    """A replica's gradients: a small network's loss at its own parameters (same function, same bits, anywhere)."""
    w, b = (x.detach().clone().requires_grad_() for x in rows)
    x = torch.linspace(-1, 1, 12, dtype=w.dtype).view(3, 4)
    loss = ((torch.tanh(x @ w + b) - 0.5) ** 2).sum() + (w**4).sum()
    return list(torch.autograd.grad(loss, (w, b)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spread", ["rows", "elements"])
def test_per_replica_rates_equal_separate_optimizers_bit_for_bit(dtype, spread):
    """R replicas stacked along dim 0, with per-replica learning rates that change every step and per-replica
    weight decay (a vector of length R, or spread to every element), equal R separate optimizers exactly."""
    g = torch.Generator().manual_seed(0)
    singles = [[torch.randn(s, generator=g).to(dtype) for s in SHAPES] for _ in range(R)]
    stacked = [torch.stack([singles[r][i] for r in range(R)]) for i in range(len(SHAPES))]
    decays = [0.0, 1e-2, 5e-2]
    options = {"alpha": 0.95, "momentum": 0.8, "eps": 1e-6}

    def spread_out(values: list[float]) -> list[torch.Tensor] | torch.Tensor:
        vector = torch.tensor(values, dtype=torch.float64)
        if spread == "rows":
            return vector
        return [vector.view(-1, *[1] * (len(s))).expand(R, *s).contiguous() for s in SHAPES]

    separate = [RMSpropNesterov(singles[r], lr=0.0, weight_decay=decays[r], **options) for r in range(R)]
    wd = spread_out(decays)
    groups = [{"params": [t], "weight_decay": wd if spread == "rows" else wd[i]} for i, t in enumerate(stacked)]
    together = RMSpropNesterov(groups, lr=0.0, **options)
    for step in range(25):
        lrs = [0.01 * (1 + r) * (0.5 + 0.5 * math.cos(step / 5 + r)) for r in range(R)]
        for r in range(R):
            for t, grad in zip(singles[r], replica_grads(singles[r])):
                t.grad = grad
            separate[r].param_groups[0]["lr"] = lrs[r]
            separate[r].step()
        grads = [replica_grads([t[r] for t in stacked]) for r in range(R)]
        for i, t in enumerate(stacked):
            t.grad = torch.stack([grads[r][i] for r in range(R)])
        rates = spread_out(lrs)
        for i, group in enumerate(together.param_groups):
            group["lr"] = rates if spread == "rows" else rates[i]
        together.step()
    for r in range(R):
        for i, t in enumerate(singles[r]):
            assert torch.equal(stacked[i][r], t)
            for key in ("square_avg", "momentum_buffer"):
                assert torch.equal(together.state[stacked[i]][key][r], separate[r].state[t][key])
    assert not torch.equal(stacked[0][0], stacked[0][1])


def assert_slices_step_as_alone(dtype: torch.dtype, device: str) -> None:
    """Slices at odd offsets and lengths of a buffer step bit for bit as the same values alone, with their region's
    float rate where the buffer has a rate per element (three replicas' regions)."""
    n = 40_001  # above torch's grain (32,768): two threads split it
    g = torch.Generator().manual_seed(5)
    start = torch.randn(n, generator=g).to(device, dtype)
    grads = [torch.randn(n, generator=g).to(device, dtype) for _ in range(4)]
    bounds = [0, 10_001, 25_003, n]
    lrs, decays = [0.01, 0.003, 0.02], [0.0, 0.01, 0.1]

    def per_element(values: list[float]) -> torch.Tensor:
        parts = [torch.full((b - a,), v, dtype=dtype) for a, b, v in zip(bounds, bounds[1:], values)]
        return torch.cat(parts).to(device)

    whole = [start.clone(), torch.zeros_like(start), torch.zeros_like(start)]
    slices = [(0, 1), (1, 7), (3, 37), (5, 64), (13, 129), (10_001, 1), (10_002, 4_095), (25_003, 14_998)]
    alone = [[start[o : o + k].clone(), torch.zeros_like(start[:k]), torch.zeros_like(start[:k])] for o, k in slices]
    settings = {"alpha": 0.9, "momentum": 0.9, "eps": 1e-6}
    for grad in grads:
        rmsprop_nesterov_step(
            [whole[0]], [grad], [whole[1]], [whole[2]], lr=per_element(lrs), weight_decay=per_element(decays),
            **settings,
        )  # fmt: skip
        for (o, k), (param, r, v) in zip(slices, alone):
            region = max(i for i, b in enumerate(bounds[:-1]) if o >= b)
            rmsprop_nesterov_step(
                [param], [grad[o : o + k]], [r], [v], lr=lrs[region], weight_decay=decays[region], **settings
            )
    for (o, k), tensors in zip(slices, alone):
        for buffer, value in zip(whole, tensors):
            assert torch.equal(buffer[o : o + k], value), (o, k)


@pytest.mark.parametrize("dtype,threads", [(torch.float32, 1), (torch.float64, 1), (torch.float32, 2)])
def test_a_slice_of_a_buffer_steps_as_the_same_values_alone(dtype, threads):
    """Every element's result depends on its own values only, also when the buffer is long enough to be split
    between threads (what lets a replica step the same in a stack of any size)."""
    torch.set_num_threads(threads)
    assert_slices_step_as_alone(dtype, "cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_slice_of_a_buffer_steps_as_the_same_values_alone_on_cuda(dtype):
    assert_slices_step_as_alone(dtype, "cuda")


@pytest.mark.parametrize("lr", [0.01, torch.tensor([0.01, 0.02])])
def test_state_dict_round_trip_continues_exactly(lr):
    """Saved after 5 steps and loaded into a fresh optimizer (weights_only), the next 5 steps are the same."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    x = torch.randn(8, 3, dtype=torch.float64)

    def steps(m: nn.Module, optimizer: RMSpropNesterov, k: int) -> None:
        for _ in range(k):
            optimizer.zero_grad()
            (m(x) ** 2).sum().backward()
            optimizer.step()

    optimizer = RMSpropNesterov(model.parameters(), lr=lr, weight_decay=1e-3)
    steps(model, optimizer, 5)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    copy = nn.Linear(3, 2).double()
    copy.load_state_dict(saved["model"])
    resumed = RMSpropNesterov(copy.parameters(), lr=0.5)
    resumed.load_state_dict(saved["optimizer"])
    steps(model, optimizer, 5)
    steps(copy, resumed, 5)
    for a, b in zip(model.parameters(), copy.parameters()):
        assert torch.equal(a, b)
        assert torch.equal(optimizer.state[a]["momentum_buffer"], resumed.state[b]["momentum_buffer"])


@pytest.mark.parametrize(
    "settings,needle",
    [
        ({"lr": -1e-3}, r"lr must be finite and ≥ 0, got -0.001"),
        ({"lr": math.nan}, r"lr must be finite and ≥ 0, got nan"),
        ({"lr": torch.tensor([0.1, -0.1])}, r"lr must be finite and ≥ 0, got \[0.1"),
        ({"alpha": 1.0}, r"alpha \(ρ\) must be in \[0, 1\), got 1.0"),
        ({"alpha": -0.1}, r"alpha \(ρ\) must be in \[0, 1\), got -0.1"),
        ({"momentum": 1.0}, r"momentum \(α\) must be in \[0, 1\), got 1.0"),
        ({"eps": 0.0}, r"eps \(δ\) must be finite and > 0, got 0.0"),
        ({"eps": math.inf}, r"eps \(δ\) must be finite and > 0, got inf"),
        ({"weight_decay": -1.0}, r"weight_decay must be finite and ≥ 0, got -1.0"),
        ({"lr": torch.tensor([0.1, 0.1, 0.1])}, r"lr: a tensor must have shape \(2,\) .* got \(3,\)"),
    ],
)
def test_bad_values_are_refused_in_one_line(settings, needle):
    params = [nn.Parameter(torch.zeros(2, 3))]
    with pytest.raises(ValueError, match=needle) as info:
        RMSpropNesterov(params, **settings)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=needle):  # a group's own settings too
        RMSpropNesterov([{"params": params, **settings}])


def test_config_takes_rmsprop_nesterov_with_its_arguments_and_refuses_others():
    """``train.optimizer.name: rmsprop_nesterov`` takes lr, weight_decay, alpha, momentum, eps (null: the class's
    defaults, which the schema's documentation quotes); other optimizers' arguments and bad values get one line."""
    sets = ["train.optimizer.name=rmsprop_nesterov", "train.optimizer.alpha=0.9", "train.optimizer.momentum=0.8"]
    spec = load_config(DIGITS, [*sets, "train.optimizer.eps=1e-5"]).train.optimizer.resolved()
    assert (spec.name, spec.alpha, spec.momentum, spec.eps) == ("rmsprop_nesterov", 0.9, 0.8, 1e-5)
    defaults = inspect.signature(RMSpropNesterov).parameters
    assert {k: defaults[k].default for k in ("alpha", "momentum", "eps")} == {
        "alpha": 0.99,
        "momentum": 0.9,
        "eps": 1e-6,
    }
    for extra, needle in [
        ("train.optimizer.centered=true", "centered: rmsprop_nesterov does not take centered (taken by rmsprop)"),
        ("train.optimizer.momentum=1.0", "train.optimizer.momentum: Input should be less than 1 (got 1.0)"),
        ("train.optimizer.alpha=1.5", "train.optimizer.alpha: Input should be less than 1 (got 1.5)"),
        ("train.optimizer.eps=0", "train.optimizer.eps: Input should be greater than 0 (got 0)"),
        ("train.optimizer.by_name={rmsprop_nesterov: {betas: [0.9, 0.9]}}", "rmsprop_nesterov does not take it"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(needle)) as info:
            load_config(DIGITS, [*sets, extra])
        assert "\n" not in str(info.value)
