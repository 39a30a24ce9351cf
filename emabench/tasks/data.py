"""The seed study's data: ``make_regression``, StandardScaler on X and y, ``train_test_split``.

The three sklearn steps are re-stated here with numpy, call for call on the same ``RandomState`` streams, because
importing scikit-learn costs about a second of every run's start-up. ``tests/test_data.py`` checks that the arrays
are bit-identical to scikit-learn's for the seed study and other settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from emabench.config import DataConfig


@dataclass(frozen=True)
class Dataset:
    """Train and validation tensors (float32, on CPU); targets have shape (n, 1) as in the seed."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    def to(self, device: torch.device | str) -> Dataset:
        return Dataset(*(t.to(device) for t in (self.x_train, self.y_train, self.x_val, self.y_val)))


def make_regression(
    n_samples: int, n_features: int, *, n_informative: int = 10, noise: float, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """``sklearn.datasets.make_regression`` with its defaults (one target, bias 0, no effective rank, shuffle):
    X ~ N(0, 1); ``coef[:n_informative] = 100·U(0, 1)``; ``y = X·coef + N(0, noise²)``; then samples and
    features are shuffled with the same generator."""
    generator = np.random.RandomState(random_state)
    n_informative = min(n_features, n_informative)
    x = generator.standard_normal(size=(n_samples, n_features))
    ground_truth = np.zeros((n_features, 1))
    ground_truth[:n_informative, :] = 100 * generator.uniform(size=(n_informative, 1))
    y = np.dot(x, ground_truth) + 0.0
    if noise > 0.0:
        y += generator.normal(scale=noise, size=y.shape)
    order = np.arange(n_samples)  # sklearn.utils.shuffle → resample(replace=False)
    generator.shuffle(order)
    x, y = x[order], y[order]
    columns = np.arange(n_features)
    generator.shuffle(columns)
    x[:, :] = x[:, columns]
    return x, np.squeeze(y)


def standard_scale(a: np.ndarray) -> np.ndarray:
    """``StandardScaler().fit_transform(a)``: centre, divide by the population std (columns of zero std kept)."""
    total = np.nansum(a, axis=0, dtype=np.float64)
    mean = total / a.shape[0]
    centred = a - total / a.shape[0]
    correction = np.nansum(centred, axis=0, dtype=np.float64)
    variance = (np.nansum(centred**2, axis=0, dtype=np.float64) - correction**2 / a.shape[0]) / a.shape[0]
    scale = np.sqrt(variance)
    scale[scale < 10 * np.finfo(scale.dtype).eps] = 1.0
    return (a - mean) / scale


def split_indices(n_samples: int, test_size: float, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """``train_test_split(test_size=…, random_state=…)``'s ShuffleSplit: (train, test) index arrays."""
    n_test = math.ceil(test_size * n_samples)
    permutation = np.random.RandomState(random_state).permutation(n_samples)
    return permutation[n_test:], permutation[:n_test]


def make_dataset(cfg: DataConfig) -> Dataset:
    """Generate, scale and split exactly as seed 001's script (the scalers are fit on all samples, as there)."""
    extra = {} if cfg.n_informative is None else {"n_informative": cfg.n_informative}
    x, y = make_regression(cfg.n_samples, cfg.n_features, noise=cfg.noise, random_state=cfg.random_state, **extra)
    y = y.reshape(-1, 1)
    if cfg.scale_x:
        x = standard_scale(x)
    if cfg.scale_y:
        y = standard_scale(y)
    train, test = split_indices(cfg.n_samples, cfg.test_size, cfg.split_random_state)
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731 - the seed's conversion
    return Dataset(as_tensor(x[train]), as_tensor(y[train]), as_tensor(x[test]), as_tensor(y[test]))
