"""Your own model in emabench: any ``torch.nn.Module`` from a function of yours.

emabench calls ``build_model(**kwargs)`` (the ``model.kwargs`` of the config) with torch's global generator seeded by
the run's ``seed``, then trains the module it returns with the config's optimizer, schedule and averagers, one run
per process (or, with ``--set model.stack=vmap``, a sweep's runs as one model through ``torch.func``). It must map a
batch ``(B, features)`` to ``(B, outputs)``: 1 output for a regression, one per class for a classification. Run it
(from the repository root):

    emabench run examples/custom_model.yaml
    emabench sweep examples/custom_model.yaml --seeds 0-5 --jobs 2 && emabench report
"""

from __future__ import annotations

from torch import nn


class ResidualMLP(nn.Module):
    """A small MLP with a residual block, LayerNorm and dropout: nothing emabench knows about."""

    def __init__(self, in_features: int, width: int, dropout: float) -> None:
        super().__init__()
        self.inp = nn.Linear(in_features, width)
        self.block = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Dropout(dropout))
        self.out = nn.Linear(width, 1)

    def forward(self, x):  # noqa: ANN001, ANN201 - an example
        h = self.inp(x)
        return self.out(h + self.block(h))


def build_model(in_features: int = 8, width: int = 64, dropout: float = 0.1) -> nn.Module:
    return ResidualMLP(in_features, width, dropout)
