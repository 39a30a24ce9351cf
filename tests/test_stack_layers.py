"""Every stacked layer equals R independent torch layers, forward and backward (BatchNorm's running statistics
included), and a stacked model's initialisation equals the plain layers' from the same generators."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from emabench.stack import batched
from emabench.stack.layers import StackedBatchNorm, StackedConv2d, StackedLayerNorm, StackedLinear
from emabench.stack.models import init_parameters, lenet, mlp

R, B = 3, 7


def _plain_layers(kind: str) -> tuple[list[nn.Module], tuple[int, ...]]:
    torch.manual_seed(0)
    if kind == "linear":
        return [nn.Linear(5, 4) for _ in range(R)], (5,)
    if kind == "conv":
        return [nn.Conv2d(2, 3, 3, padding=1) for _ in range(R)], (2, 6, 6)
    if kind == "batchnorm1d":
        layers = [nn.BatchNorm1d(5) for _ in range(R)]
    elif kind == "batchnorm2d":
        layers = [nn.BatchNorm2d(2) for _ in range(R)]
    else:
        layers = [nn.LayerNorm(5) for _ in range(R)]
    for layer in layers:  # non-trivial affine parameters
        nn.init.normal_(layer.weight)
        nn.init.normal_(layer.bias)
    return layers, ((2, 6, 6) if kind == "batchnorm2d" else (5,))


STACKED = {
    "linear": StackedLinear,
    "conv": StackedConv2d,
    "batchnorm1d": StackedBatchNorm,
    "batchnorm2d": StackedBatchNorm,
    "layernorm": StackedLayerNorm,
}


@pytest.mark.parametrize("kind", list(STACKED))
@pytest.mark.parametrize("training", [True, False])
def test_stacked_layer_equals_plain_layers(kind: str, training: bool) -> None:
    plain, sample = _plain_layers(kind)
    stacked = STACKED[kind].from_modules(plain)
    stacked.train(training)
    for layer in plain:
        layer.train(training)
    x = torch.randn(R, B, *sample, generator=torch.Generator().manual_seed(1))
    upstream = torch.randn(R, B, *((3, 6, 6) if kind == "conv" else (4,) if kind == "linear" else sample))
    out = stacked(x.clone().requires_grad_())
    (out * upstream).sum().backward()
    for r, layer in enumerate(plain):
        xr = x[r].clone().requires_grad_()
        expected = layer(xr)
        (expected * upstream[r]).sum().backward()
        torch.testing.assert_close(out[r], expected, rtol=1e-5, atol=1e-6)
        for name, param in layer.named_parameters():
            torch.testing.assert_close(getattr(stacked, name).grad[r], param.grad, rtol=1e-5, atol=1e-5)
        for name, buffer in layer.named_buffers():  # BatchNorm running statistics, per replica
            torch.testing.assert_close(getattr(stacked, name)[r], buffer, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("init", ["xavier_normal", "xavier_uniform", "kaiming_uniform", "torch_default"])
def test_init_equals_plain_layers_from_the_same_generators(init: str) -> None:
    net = lenet(2, (1, 8, 8), 10, dropout=True)
    init_parameters(net, [torch.Generator().manual_seed(s) for s in (5, 9)], init)
    for r, seed in enumerate((5, 9)):
        generator = torch.Generator().manual_seed(seed)
        for module in net.modules():
            if not isinstance(module, (StackedLinear, StackedConv2d)):
                continue
            plain = module.replica(r)
            weight = torch.empty_like(plain.weight)
            if init == "xavier_normal":
                nn.init.xavier_normal_(weight, generator=generator)
            elif init == "xavier_uniform":
                nn.init.xavier_uniform_(weight, generator=generator)
            elif init == "kaiming_uniform":
                nn.init.kaiming_uniform_(weight, nonlinearity="relu", generator=generator)
            else:
                nn.init.kaiming_uniform_(weight, a=5**0.5, generator=generator)
            torch.testing.assert_close(plain.weight, weight, rtol=0, atol=0)
            if init == "torch_default":
                bound = 1 / weight[0].numel() ** 0.5
                bias = torch.empty_like(plain.bias)
                nn.init.uniform_(bias, -bound, bound, generator=generator)
                torch.testing.assert_close(plain.bias, bias, rtol=0, atol=0)
            else:
                assert not plain.bias.any()


@pytest.mark.parametrize("shape,out", [((1, 8, 8), 10), ((1, 28, 28), 10)])
def test_lenet_shapes(shape: tuple[int, ...], out: int) -> None:
    net = lenet(2, shape, out)
    assert net(torch.zeros(5, *shape)).shape == (2, 5, out)


def test_mlp_with_norms_and_dropout_masks() -> None:
    net = mlp(2, (6,), 1, [8, 4], activation="gelu", norm="layer")
    init_parameters(net, [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)], "xavier_normal")
    x = torch.randn(2, 5, 6)
    masks = [torch.zeros(2, 5, 8), torch.zeros(2, 5, 4)]
    for dropout, mask in zip(net.dropouts(), masks):
        dropout.set_mask(mask)
    net.train()
    dropped = net(x)
    net.eval()
    assert not torch.equal(dropped, net(x))  # masks apply only while training
    # with every unit dropped, the output is the last bias
    torch.testing.assert_close(dropped, net[-1].bias.unsqueeze(1).expand(2, 5, 1))


def test_select_replicas_keeps_rows() -> None:
    net = mlp(3, (4,), 1, [5], norm="batch")
    init_parameters(net, [torch.Generator().manual_seed(s) for s in range(3)], "xavier_normal")
    net.pack()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.select_replicas(torch.tensor([0, 2]))
    assert net.replicas == 2
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, before[key][[0, 2]])
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("shape", [(32, 32, 1), (32, 64, 10), (4096, 9, 6), (7, 13, 5)])
def test_a_replicas_products_do_not_depend_on_the_stack(shape: tuple[int, int, int]) -> None:
    """``batched.bmm``/``baddbmm``: replica r's product is the same bits in a stack of 1, 2, 3, 8 or 65, at any place
    (with MKL's reproducible mode, set by ``import emabench``; a batch of one goes the batched way too)."""
    rows, inner, cols = shape
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(65, *s, generator=g) for s in ((rows, inner), (cols, inner), (1, cols)))

    def products(index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return batched.baddbmm(c[index], a[index], b[index].transpose(1, 2)), batched.bmm(
            a[index].transpose(1, 2), a[index]
        )

    alone = {r: products([r]) for r in (0, 2, 64)}
    for size in (2, 3, 8, 65):
        stacked = products(list(range(size)))
        for r in (r for r in alone if r < size):
            assert torch.equal(stacked[0][r], alone[r][0][0]) and torch.equal(stacked[1][r], alone[r][1][0])
