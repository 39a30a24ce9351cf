"""Datasets of a user's for the ``data: {source: dataset}`` tests: scikit-learn's digits as 64 features (or 8×8
images), split by a fixed permutation, with optional augmentation drawing from torch's, numpy's and Python's global
generators (as user code does), and factories that break the contract one way each."""

from __future__ import annotations

import random

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.utils.data import Dataset, IterableDataset, TensorDataset


class Digits(Dataset):
    """``(x, label)`` items; ``augment``: noise from all three global generators on every read."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, augment: bool = False) -> None:
        self.x, self.y, self.augment = x, y, augment

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.x[index]
        if self.augment:
            shift = 0.05 * float(np.random.standard_normal()) + 0.02 * random.random()
            x = x + 0.1 * torch.randn(x.shape) + shift
        return x, int(self.y[index])


def digits(
    n: int = 400, augment: bool = False, test: bool = True, images: bool = False, regression: bool = False
) -> dict[str, Dataset]:
    """The first ``n`` digits, standardized, in a fixed order: 60% training, 20% validation, 20% test."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor((x[:n] - x[:n].mean()) / x[:n].std(), dtype=torch.float32)
    x = x.view(-1, 1, 8, 8) if images else x
    y = torch.tensor(y[:n])
    if regression:
        y = y.float()
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    cut = [order[: 3 * n // 5], order[3 * n // 5 : 4 * n // 5], order[4 * n // 5 :]]
    sets = {name: Digits(x[i], y[i], augment and name == "train") for name, i in zip(("train", "val", "test"), cut)}
    return sets if test else {k: v for k, v in sets.items() if k != "test"}


def as_tuple() -> tuple:
    return tuple(digits().values())


def without_val() -> dict:
    return {"train": digits()["train"]}


def iterable() -> dict:
    class Stream(IterableDataset):
        def __iter__(self):
            yield from ()

    return {"train": Stream(), "val": digits()["val"]}


def dict_items() -> dict:
    class Records(Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int) -> dict:
            return {"x": torch.zeros(3), "y": 0}

    return {"train": Records(), "val": Records()}


def vector_targets() -> dict:
    data = TensorDataset(torch.zeros(10, 3), torch.zeros(10, 2, dtype=torch.long))
    return {"train": data, "val": data}


def top2(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Top-2 accuracy: the target among the two highest scores."""
    return (outputs.topk(2, dim=-1).indices == targets.unsqueeze(-1)).any(-1).double().mean()


def margin(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """The mean gap between the target's score and the best other score, as a Python float."""
    true = outputs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    other = outputs.scatter(-1, targets.unsqueeze(-1), float("-inf")).max(-1).values
    return float((true - other).mean())


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(outputs, targets)


def per_sample(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(outputs, targets, reduction="none")


def detached(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(outputs.detach(), targets)


def raises(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    raise KeyError("no such column")
