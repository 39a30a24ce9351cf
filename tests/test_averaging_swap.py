"""Seed 003's apply/restore: evaluating the model with the average swapped in equals evaluating the averaged copy,
BatchNorm included (buffers averaged or copied), and the model comes back exactly as it was."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tests.averager_kinds import KINDS, evaluated


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))


def _train(model: nn.Module, averager, steps: int) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(1)
    for step in range(1, steps + 1):
        x = torch.randn(16, 3, generator=generator) * step
        loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        averager.update(step)


@pytest.mark.parametrize("buffers", ["average", "copy"])
@pytest.mark.parametrize("name", KINDS)
def test_swapped_in_evaluation_equals_the_averaged_model_and_restores_exactly(name, buffers):
    model = _bn_net()
    averager = KINDS[name](model, buffers=buffers)
    _train(model, averager, 13)
    averaged = evaluated(averager)
    bn, online_bn = averaged[1], model[1]
    if buffers == "copy" and name != "posthoc":
        # copied statistics are the online model's as of the last update (post-hoc's: as of its last snapshot)
        assert torch.equal(bn.running_mean, online_bn.running_mean)
    elif buffers == "average":  # averaged statistics are not the last ones
        assert not torch.equal(bn.running_mean, online_bn.running_mean)

    x = torch.randn(32, 3, generator=torch.Generator().manual_seed(2))
    expected = averaged(x)
    model.train()
    original = copy.deepcopy(model.state_dict())
    with averager.swapped_into() as swapped:
        assert swapped is model
        swapped.eval()
        assert torch.equal(swapped(x), expected)
        for key, value in swapped.state_dict().items():
            assert torch.equal(value, averaged.state_dict()[key]), key
    assert model.training
    assert all(torch.equal(value, original[key]) for key, value in model.state_dict().items())
    assert not torch.equal(model.eval()(x), expected)  # and the restored model is the online one again


def test_swapped_into_another_model_of_the_same_architecture():
    model, other = _bn_net(), _bn_net()
    averager = KINDS["ema"](model)
    _train(model, averager, 9)
    x = torch.randn(8, 3)
    before = copy.deepcopy(other.state_dict())
    with averager.swapped_into(other) as swapped:
        assert torch.equal(swapped.eval()(x), averager.averaged_model(x))
    assert all(torch.equal(value, before[key]) for key, value in other.state_dict().items())
    with pytest.raises(ValueError, match=r"state_dict keys"), averager.swapped_into(nn.Linear(3, 1)):
        pass
