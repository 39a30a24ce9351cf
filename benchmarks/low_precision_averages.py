"""What the averagers hold for a bfloat16 model, with their default dtype. Asserts nothing.

- ``ConstantEMA(0.999)`` of a weight that jumps from 1 to 2, after 5000 updates: exact ``2 − 0.999^5000 = 1.99328``;
- ``SWA`` of 1000 snapshots of θ_i = 1 + i/1000 (i = 1..1000): exact mean 1.5005;
- ``BiasCorrectedEMA(0.999)`` of a constant 2.0 after 5000 updates: exact 2.0.

Run: ``.venv/bin/python benchmarks/low_precision_averages.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from emabench.averaging import SWA, BiasCorrectedEMA, ConstantEMA


def scalar_model(value: float) -> nn.Module:
    model = nn.Linear(1, 1, bias=False).to(torch.bfloat16)
    with torch.no_grad():
        model.weight.fill_(value)
    return model


def set_(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        model.weight.fill_(value)


def main() -> None:
    model = scalar_model(1.0)
    ema = ConstantEMA(model, beta=0.999)
    ema.update()  # the first update copies: the average starts at 1
    set_(model, 2.0)
    for _ in range(5000):
        ema.update()
    held = ema.averaged_model.weight
    print(f"ConstantEMA(0.999), jump 1->2, 5000 updates: {held.item():.5f} ({held.dtype}; exact {2 - 0.999**5000:.5f})")

    model = scalar_model(0.0)
    swa = SWA(model)
    for i in range(1, 1001):
        set_(model, 1 + i / 1000)
        swa.update()
    exact = sum(float(torch.tensor(1 + i / 1000, dtype=torch.bfloat16)) for i in range(1, 1001)) / 1000
    held = swa.averaged_model.weight
    print(f"SWA of 1000 snapshots 1+i/1000: {held.item():.5f} ({held.dtype}; exact bf16 mean {exact:.5f})")

    model = scalar_model(2.0)
    biased = BiasCorrectedEMA(model, beta=0.999)
    for _ in range(5000):
        biased.update()
    held = biased.averaged_model.weight
    print(f"BiasCorrectedEMA(0.999) of a constant 2.0, 5000 updates: {held.item():.5f} ({held.dtype}; exact 2.0)")


if __name__ == "__main__":
    main()
