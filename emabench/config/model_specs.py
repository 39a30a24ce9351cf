"""The network (``model:``), discriminated by ``name``: a stacked ``mlp`` or ``lenet``, or your own ``custom``
``nn.Module``. Stacked models train many runs as one (:mod:`emabench.stack`); a custom model trains one run per
process (sweeps of it spread over worker processes or Ray)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from emabench.config.base import _Section

Activation = Literal["relu", "gelu", "silu", "tanh"]
Init = Literal["xavier_normal", "xavier_uniform", "kaiming_uniform", "torch_default"]


class MLPModel(_Section):
    """``(Linear → [norm] → activation → Dropout) × len(hidden_sizes) → Linear`` (seed 001: [64, 32], relu, 0.2,
    xavier_normal). The defaults: the seed's sizes, no dropout, torch's own initialisation. ``hidden_sizes: []`` is a
    linear model (one Linear layer)."""

    name: Literal["mlp"]
    hidden_sizes: list[int] = Field(default=[64, 32], min_length=0, max_length=32)
    activation: Activation = "relu"
    dropout: float = Field(default=0.0, ge=0, lt=1)  # may differ per run of a stack
    norm: Literal["none", "batch", "layer"] = "none"
    init: Init = "torch_default"  # weights; biases start at zero (torch_default: nn.Linear's own, biases included)

    @field_validator("hidden_sizes")
    @classmethod
    def _positive_sizes(cls, sizes: list[int]) -> list[int]:
        if any(not 1 <= size <= 65536 for size in sizes):
            raise ValueError(f"every hidden size must be in [1, 65536], got {sizes}")
        return sizes


class LeNetModel(_Section):
    """Seed 003's LeNet (PaddlePaddle's): two convolutions with max-pooling, then linear layers ``fc_sizes``
    (Paddle's has no activation between them: ``fc_activation: none``). Needs image data (digits, idx)."""

    name: Literal["lenet"]
    channels: list[int] = Field(default=[6, 16], min_length=2, max_length=2)
    fc_sizes: list[int] = Field(default=[120, 84], min_length=1, max_length=8)
    activation: Activation = "relu"
    fc_activation: Literal["none", "relu", "gelu", "silu", "tanh"] = "none"
    dropout: float = Field(default=0.0, ge=0, lt=1)  # after each hidden linear layer
    init: Init = "torch_default"

    @field_validator("channels", "fc_sizes")
    @classmethod
    def _positive_sizes(cls, sizes: list[int]) -> list[int]:
        if any(not 1 <= size <= 4096 for size in sizes):
            raise ValueError(f"every size must be in [1, 4096], got {sizes}")
        return sizes


class CustomModel(_Section):
    """Your own ``nn.Module``: ``factory`` is ``"package.module:function"`` or ``"path/to/file.py:function"`` (relative
    to the current directory), called as ``function(**kwargs)`` with
    torch's global generator seeded by the run's ``seed``; the module maps ``(B, *sample_shape)`` to
    ``(B, outputs)`` (1 for regression, the number of classes for classification). ``stack: none`` trains one run at a
    time (a run gives the same bytes wherever it trains); ``stack: vmap`` trains a sweep's runs as one model with
    ``torch.func`` (:mod:`emabench.stack.vmapped`: much faster, a replica equal to its run alone within rounding, its
    dropout the same in distribution only)."""

    name: Literal["custom"]
    factory: str = Field(pattern=r"^[^:]+:[A-Za-z_][\w.]*$", max_length=1000)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    stack: Literal["none", "vmap"] = "none"  # vmap: a sweep's runs as one model (torch.func), equal within rounding


ModelSpec = Annotated[MLPModel | LeNetModel | CustomModel, Field(discriminator="name")]
MODEL_NAMES = ("mlp", "lenet", "custom")
