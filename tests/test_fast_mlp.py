"""The written-out gradient of the seed's network equals autograd's, step by step and over whole trainings."""

from __future__ import annotations

import pytest
import torch

from emabench.config import with_overrides
from emabench.stack import fast_mlp
from emabench.stack.models import init_parameters, mlp
from emabench.tasks.data import make_dataset
from emabench.tasks.registry import get_task
from emabench.train.loop import Trainer


@pytest.mark.parametrize("block", [64, 2], ids=["one-pass", "in-blocks-of-2"])
def test_gradient_equals_autograd(block: int) -> None:
    """Also when the replicas are worked through in blocks (5 replicas in blocks of 2: the last one short)."""
    net = mlp(5, (5,), 1, [8, 6])
    init_parameters(net, [torch.Generator().manual_seed(s) for s in range(5)], "xavier_normal")
    net.pack()
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(5, 11, 5, generator=g), torch.randn(5, 11, 1, generator=g)
    masks = [(torch.rand(5, 11, h, generator=g) < 0.7).float() / 0.7 for h in (8, 6)]
    for dropout, mask in zip(net.dropouts(), masks):
        dropout.set_mask(mask)
    net.train()
    fast = fast_mlp.WrittenOutGradient(net, block=block)(x, y, masks)
    written = [p.grad.clone() for p in net.parameters()]
    for p in net.parameters():
        p.grad.zero_()
    loss = get_task("regression").loss(net(x), y)
    loss.sum().backward()
    torch.testing.assert_close(fast, loss.detach(), rtol=1e-6, atol=1e-7)
    for ours, theirs in zip(written, [p.grad for p in net.parameters()]):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def histories(trainer: Trainer) -> list[list[dict[str, float]]]:
    out = [[] for _ in trainer.ids]
    while not trainer.done:
        for record in trainer.run_epoch():
            out[record.replica].append(record.row)
    return out


def test_training_with_and_without_the_fast_path_agree(tiny_config) -> None:
    configs = [
        with_overrides(tiny_config, {"seed": s, "ema.beta": b, "train.max_epochs": 5}) for s, b in ((0, 0.9), (1, 0.99))
    ]
    data = make_dataset(configs[0].data)
    fast, slow = Trainer(configs, data), Trainer(configs, data, fast_paths=False)
    assert fast.fast and not slow.fast
    for ours, theirs in zip(histories(fast), histories(slow)):
        for a, b in zip(ours, theirs):
            for key, value in b.items():
                assert a[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize(
    "change",
    [
        {"model.norm": "batch"},
        {"model.activation": "gelu"},
        {"train.grad_accumulation": 2},
        {"train.precision": "bf16"},
    ],
)
def test_what_the_fast_path_does_not_cover_goes_through_autograd(tiny_config, change) -> None:
    config = with_overrides(tiny_config, change)
    assert not Trainer([config], make_dataset(config.data)).fast
