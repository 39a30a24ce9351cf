"""A user's own models, for the tests of ``model: {name: custom}`` (imported as ``tests.custom_models:...``)."""

from __future__ import annotations

from torch import nn


def small_mlp(in_features: int, hidden: int = 16, outputs: int = 1, dropout: float = 0.0) -> nn.Module:
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, outputs))


def not_a_module() -> object:
    return "a string"


def batchnorm_mlp(in_features: int, hidden: int = 16) -> nn.Module:
    """BatchNorm: running statistics that, under DDP, each rank first computes from its own rows."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, 1))


class _FailsInTraining(nn.Module):
    """A linear model whose training forward raises ``error`` from its ``after``-th call on (a user's bug)."""

    def __init__(self, in_features: int, after: int, error: BaseException) -> None:
        super().__init__()
        self.linear, self.after, self.error, self.calls = nn.Linear(in_features, 1), after, error, 0

    def forward(self, x):  # noqa: ANN001, ANN201 - a user's module
        if self.training:
            self.calls += 1
            if self.calls >= self.after:
                raise self.error
        return self.linear(x)


def fails_in_training(in_features: int, after: int = 10, **_: object) -> nn.Module:
    return _FailsInTraining(in_features, after, RuntimeError("the user's forward broke"))


def exits_in_training(in_features: int, after: int = 10, **_: object) -> nn.Module:
    return _FailsInTraining(in_features, after, SystemExit(0))


class _DataDependent(nn.Module):
    """A branch on a value of its input (``.item()``): what ``torch.func.vmap`` cannot batch."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, 1)

    def forward(self, x):  # noqa: ANN001, ANN201 - a user's module
        out = self.linear(x)
        return out * 0.5 if x.sum().item() > 1e9 else out


def data_dependent(in_features: int, **_: object) -> nn.Module:
    return _DataDependent(in_features)
