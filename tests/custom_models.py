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
