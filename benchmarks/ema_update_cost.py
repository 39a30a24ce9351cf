"""How much an averager's ``update()`` costs over the bare ``lerp_`` it ends in (the target: <= 1.5x).

The seed MLP (20-64-32-1, 3,457 parameters) with its parameters packed in one buffer, as emabench's stacked model
lays them out, one thread. Two measurements, each the median of many interleaved repetitions:

- ``isolated``: blocks of back-to-back calls of ``ema.update(step)`` and of ``flat_avg.lerp_(flat_online, w)``
  (same buffer sizes), alternating block by block;
- ``in-loop``: a training step (forward, backward, Adam) between calls, each call timed alone, alternating which
  of the two is timed: the cost the training loop actually sees (caches disturbed by the step).

Prints one line per measurement; asserts nothing (timings are reported, never tested).
Run: ``.venv/bin/python benchmarks/ema_update_cost.py [--averager ema|constant]``.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time

import torch
from torch import nn

from emabench.averaging import EMA, ConstantEMA
from emabench.averaging.flat import flat_view, pack_


def seed_mlp() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1))
    pack_(list(model.parameters()))
    return model


def build(kind: str, model: nn.Module):
    if kind == "ema":  # the seed's EMA (warm-up schedule), past its copy phase below
        return EMA(model, beta=0.999, update_after_step=100, update_every=1, inv_gamma=1.0, power=2 / 3)
    return ConstantEMA(model, beta=0.999)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--averager", choices=["ema", "constant"], default="ema")
    parser.add_argument("--repeats", type=int, default=400)
    parser.add_argument("--block", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = seed_mlp()
    ema = build(args.averager, model)
    takes_step = "step" in inspect.signature(ema.update).parameters  # the library before update(step) existed
    update = ema.update
    step = 0
    flat_online = flat_view(list(model.parameters()))[0]
    flat_avg = flat_online.detach().clone()
    weight = 1.0 - 0.999
    for _ in range(300):  # past update_after_step, caches warm
        step += 1
        update(step) if takes_step else update()
        flat_avg.lerp_(flat_online, weight)

    ours, bare = [], []
    for _ in range(args.repeats):
        if takes_step:
            start = time.perf_counter_ns()
            for _ in range(args.block):
                step += 1
                update(step)
        else:
            start = time.perf_counter_ns()
            for _ in range(args.block):
                step += 1  # the same loop work as above
                update()
        ours.append((time.perf_counter_ns() - start) / args.block / 1e3)
        start = time.perf_counter_ns()
        for _ in range(args.block):
            step += 0
            flat_avg.lerp_(flat_online, weight)
        bare.append((time.perf_counter_ns() - start) / args.block / 1e3)
    report("isolated", ours, bare)

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = torch.randn(32, 20), torch.randn(32, 1)
    ours, bare = [], []
    for i in range(args.repeats * 10):
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer.step()
        if i % 2:
            step += 1
            if takes_step:
                start = time.perf_counter_ns()
                update(step)
            else:
                start = time.perf_counter_ns()
                update()
            ours.append((time.perf_counter_ns() - start) / 1e3)
        else:
            start = time.perf_counter_ns()
            flat_avg.lerp_(flat_online, weight)
            bare.append((time.perf_counter_ns() - start) / 1e3)
    report("in-loop", ours, bare)


def report(label: str, ours: list[float], bare: list[float]) -> None:
    a, b = statistics.median(ours), statistics.median(bare)
    print(f"{label:9s} update {a:6.2f} us   bare lerp_ {b:6.2f} us   ratio {a / b:4.2f}x   (n={len(ours)})")


if __name__ == "__main__":
    main()
