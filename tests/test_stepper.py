"""Per-replica stepping of torch's optimizers equals R separate optimizers (the engine's optimizer contract)."""

from __future__ import annotations

import pytest
import torch

from emabench.averaging.flat import pack_
from emabench.train.stepper import OPTIMIZERS, ForeachAdam, ReplicaStepper

R = 3
SHAPES = [(4, 3), (4,), (2, 4), (2,)]
OPTIONS = {
    "sgd": {"momentum": 0.9, "dampening": 0.1, "nesterov": False},
    "sgd_nesterov": {"momentum": 0.9, "dampening": 0.0, "nesterov": True},
    "rmsprop": {"alpha": 0.95, "eps": 1e-8, "momentum": 0.5, "centered": True},
    "rmsprop_nesterov": {"alpha": 0.9, "eps": 1e-6, "momentum": 0.8},  # its lr goes into the step (seed 004)
    "adam": {"betas": (0.9, 0.99), "eps": 1e-8},
    "nadam": {"betas": (0.9, 0.99), "eps": 1e-8, "momentum_decay": 4e-3},
    "adamax": {"betas": (0.9, 0.99), "eps": 1e-8},
    "adamw": {"betas": (0.9, 0.99), "eps": 1e-8},
    "radam": {"betas": (0.9, 0.99), "eps": 1e-8},
}


def _case(key: str) -> tuple[str, dict]:
    return "sgd" if key == "sgd_nesterov" else key, OPTIONS[key]


def _separate_and_stacked(key: str, weight_decays, clip_norms):
    name, options = _case(key)
    g = torch.Generator().manual_seed(0)
    singles = [[torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES] for _ in range(R)]
    stacked = [torch.stack([singles[r][i] for r in range(R)]).clone() for i in range(len(SHAPES))]
    for t in stacked:
        t.grad = torch.zeros_like(t)
    for ts in singles:
        for t in ts:
            t.grad = torch.zeros_like(t)
    separate = [OPTIMIZERS[name](singles[r], lr=1.0, weight_decay=weight_decays[r], **options) for r in range(R)]
    stepper = ReplicaStepper(name, stacked, options, weight_decays=weight_decays, clip_norms=clip_norms)
    return singles, separate, stacked, stepper, g


@pytest.mark.parametrize("key", list(OPTIONS))
@pytest.mark.parametrize("per_replica", [False, True])
def test_stacked_equals_separate_optimizers(key: str, per_replica: bool) -> None:
    """Over 30 steps with learning rates that change every step (and differ per replica), with per-replica weight
    decay and gradient clipping, every replica's parameters equal its own torch optimizer's to ~1e-13."""
    weight_decays = [0.0, 1e-2, 5e-2] if per_replica else [1e-2] * R
    clip_norms = [0.5, float("inf"), 2.0] if per_replica else None
    singles, separate, stacked, stepper, g = _separate_and_stacked(key, weight_decays, clip_norms)
    for step in range(30):
        lrs = [0.01 * (1 + r) * (0.9**step) if per_replica else 0.01 * 0.9**step for r in range(R)]
        grads = [torch.randn(R, *s, generator=g, dtype=torch.float64) for s in SHAPES]
        for i, t in enumerate(stacked):
            t.grad.copy_(grads[i])
        for r in range(R):
            for i, t in enumerate(singles[r]):
                t.grad.copy_(grads[i][r])
            if clip_norms is not None:
                torch.nn.utils.clip_grad_norm_(singles[r], clip_norms[r])
            for group in separate[r].param_groups:
                group["lr"] = lrs[r]
            separate[r].step()
        stepper.step(lrs)
    for r in range(R):
        for i, t in enumerate(singles[r]):
            torch.testing.assert_close(stacked[i][r], t, rtol=0, atol=1e-13)


def test_select_keeps_the_remaining_replicas_state() -> None:
    """Dropping a replica keeps the others' optimizer state: they continue exactly as before."""
    singles, separate, stacked, stepper, g = _separate_and_stacked("adam", [1e-2] * R, None)
    keep = torch.tensor([0, 2])
    for step in range(6):
        if step == 3:
            for t in stacked:
                t.data = t.data.index_select(0, keep)
                t.grad = torch.zeros_like(t)
            stepper.select(keep)
        rows = [0, 1, 2] if step < 3 else [0, 2]
        grads = [torch.randn(R, *s, generator=g, dtype=torch.float64) for s in SHAPES]
        for i, t in enumerate(stacked):
            t.grad.copy_(grads[i][rows])
        for r in rows:
            for i, t in enumerate(singles[r]):
                t.grad.copy_(grads[i][r])
            separate[r].param_groups[0]["lr"] = 0.01
            separate[r].step()
        stepper.step([0.01] * len(rows))
    for position, r in enumerate([0, 2]):
        for i, t in enumerate(singles[r]):
            torch.testing.assert_close(stacked[i][position], t, rtol=0, atol=1e-13)


def test_unknown_optimizer_is_refused() -> None:
    with pytest.raises(ValueError, match="optimizer must be one of"):
        ReplicaStepper("lamb", [torch.zeros(2, 2)], {}, weight_decays=[0.0, 0.0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_foreach_adam_is_torch_adams_arithmetic_bit_for_bit(dtype: torch.dtype) -> None:
    """ForeachAdam (Adam without the class) computes what ``torch.optim.Adam(lr=1, foreach=True)`` computes."""
    g = torch.Generator().manual_seed(1)
    ours, theirs = [torch.randn(40, 7, generator=g, dtype=dtype) for _ in range(2)], []
    theirs = [t.clone() for t in ours]
    mine = ForeachAdam(ours, betas=(0.9, 0.99), eps=1e-8)
    reference = torch.optim.Adam(theirs, lr=1.0, betas=(0.9, 0.99), eps=1e-8, foreach=True)
    for _ in range(20):
        grads = [torch.randn(40, 7, generator=g, dtype=dtype) for _ in range(2)]
        for a, b, grad in zip(ours, theirs, grads):
            a.grad, b.grad = grad.clone(), grad.clone()
        mine.step()
        reference.step()
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    assert torch.equal(mine.state[ours[0]]["exp_avg_sq"], reference.state[theirs[0]]["exp_avg_sq"])


@pytest.mark.parametrize("key", list(OPTIONS))
def test_a_replicas_step_does_not_depend_on_its_stack(key: str) -> None:
    """Replica r of one flat buffer of R replicas steps to the same bits as the same values stepped alone, for stacks
    of several sizes, with learning rates and weight decays that differ across the stack or not (float32)."""
    name, options = _case(key)
    g = torch.Generator().manual_seed(2)
    shapes = [(13, 5), (13,), (1, 13)]  # odd sizes: replicas start at offsets a vector does not divide
    rows = [[torch.randn(s, generator=g) for s in shapes] for _ in range(65)]
    grads = [[[torch.randn(s, generator=g) for s in shapes] for _ in range(65)] for _ in range(6)]

    def stepped(replicas: list[int], lr: list[float], decay: list[float]) -> list[list[torch.Tensor]]:
        params = [torch.stack([rows[r][i] for r in replicas]) for i in range(len(shapes))]
        pack_(params)
        for p in params:
            p.grad = torch.zeros_like(p)
        pack_([p.grad for p in params])
        stepper = ReplicaStepper(name, params, options, weight_decays=decay, clip_norms=[1.0] * len(replicas))
        for step in range(6):
            for i, p in enumerate(params):
                p.grad.copy_(torch.stack([grads[step][r][i] for r in replicas]))
            stepper.step([v * 0.9**step for v in lr])
        return [[p[k] for p in params] for k in range(len(replicas))]

    (alone,) = stepped([0], [0.01], [1e-3])
    for size in (2, 8, 65):
        at = size // 2  # the run (rows[0]) in the middle of the others
        replicas = [*range(1, at + 1), 0, *range(at + 1, size)]
        lrs = [0.01 if r == 0 else 0.01 * (1 + r % 3) for r in replicas]
        for decays in ([1e-3] * size, [1e-3 if r == 0 else 0.0 for r in replicas]):
            stacked = stepped(replicas, lrs, decays)[at]
            assert all(torch.equal(a, b) for a, b in zip(stacked, alone)), (size, decays[0])
