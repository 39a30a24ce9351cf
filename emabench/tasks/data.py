"""A run's data set: samples from a source (:mod:`.sources`), scaled and split as seed 001 does.

The seed study's three scikit-learn steps (``make_regression``, ``StandardScaler``, ``train_test_split``) are
restated here with numpy, call for call on the same ``RandomState`` streams, because importing scikit-learn costs
about a second of every run's start-up; ``tests/test_data.py`` checks the arrays are bit-identical to
scikit-learn's. Other sources import scikit-learn when they need it (a stratified split uses its
``train_test_split``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from emabench.errors import ConfigError
from emabench.tasks import sources

MAX_CLASSES = 1000


@dataclass(frozen=True)
class Dataset:
    """Train and validation tensors. Inputs are float32 ``(n, *sample_shape)``; regression targets float32
    ``(n, 1)`` as in the seed, class labels int64 ``(n,)`` in ``0 … n_classes − 1``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_classes: int | None = None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_features(self) -> int:
        return math.prod(self.sample_shape)

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    def to(self, device: torch.device | str) -> Dataset:
        moved = (t.to(device) for t in (self.x_train, self.y_train, self.x_val, self.y_val))
        return Dataset(*moved, n_classes=self.n_classes)


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


def stratified_split_indices(labels: np.ndarray, test_size: float, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """``train_test_split(…, stratify=labels)``: every class in the same proportion on both sides."""
    from sklearn.model_selection import train_test_split

    try:
        train, test = train_test_split(
            np.arange(len(labels)), test_size=test_size, random_state=random_state, stratify=labels
        )
    except ValueError as err:  # a class with a single sample, or fewer test samples than classes
        raise ConfigError(f"data.stratify: cannot stratify this split ({err}); set data.stratify: false") from None
    return train, test


def samples(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """The raw ``(x, y)`` of a ``data:`` section, before scaling and splitting."""
    source = data.source
    if source == "make_regression":
        extra = {} if data.n_informative is None else {"n_informative": data.n_informative}
        return make_regression(
            data.n_samples, data.n_features, noise=data.noise, random_state=data.random_state, **extra
        )
    if source == "make_classification":
        return _make_classification(data)
    if source in ("diabetes", "digits"):
        return sources.load_sklearn(source)
    if source == "csv":
        return sources.read_csv(data.path, data.target, data.features)
    if source == "idx":
        x, y = sources.read_idx(data.images, data.labels)
        return (x[: data.limit], y[: data.limit]) if data.limit is not None else (x, y)
    return sources.call_function(data.function, dict(data.kwargs))


def _make_classification(data: Any) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    try:
        return make_classification(
            n_samples=data.n_samples,
            n_features=data.n_features,
            n_informative=data.n_informative,
            n_redundant=data.n_redundant,
            n_classes=data.n_classes,
            n_clusters_per_class=data.n_clusters_per_class,
            class_sep=data.class_sep,
            flip_y=data.flip_y,
            random_state=data.random_state,
        )
    except ValueError as err:  # scikit-learn's own consistency checks (informative features vs classes, ...)
        raise ConfigError(f"data: make_classification refuses these settings ({err})") from None


def class_labels(y: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer class labels ``0 … K − 1`` (sorted by value) and ``K``; refuses non-integer or too many classes."""
    values = np.asarray(y).reshape(len(y))
    if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
        bad = values[~(np.isfinite(values) & (values == np.round(values)))][0]
        raise ConfigError(f"data: classification needs integer class labels, got {bad!r} (use task: regression?)")
    classes, labels = np.unique(values, return_inverse=True)
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise ConfigError(f"data: classification needs 2 to {MAX_CLASSES} classes, got {len(classes)}")
    return labels.astype(np.int64), len(classes)


def make_dataset(data: Any, task: str = "regression") -> Dataset:
    """Samples of ``data`` scaled and split as seed 001's script does (scalers fit on all samples, as there)."""
    x, y = samples(data)
    if x.shape[0] < 4:
        raise ConfigError(f"data: {x.shape[0]} samples are too few to split into training and validation sets")
    n_classes = None
    if task == "classification":
        y, n_classes = class_labels(y)
    else:
        y = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    if data.scale_x:
        x = standard_scale(x.reshape(x.shape[0], -1)).reshape(x.shape)
    if task == "regression" and data.scale_y:
        y = standard_scale(y)
    stratify = data.stratify if data.stratify is not None else task == "classification"
    if stratify:
        train, test = stratified_split_indices(y, data.test_size, data.split_random_state)
    else:
        train, test = split_indices(x.shape[0], data.test_size, data.split_random_state)
    if len(train) == 0 or len(test) == 0:
        raise ConfigError(f"data.test_size: {data.test_size} leaves no training or no validation samples")
    features = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731 - the seed's conversion
    targets = (lambda a: torch.tensor(a, dtype=torch.int64)) if n_classes else features
    return Dataset(features(x[train]), targets(y[train]), features(x[test]), targets(y[test]), n_classes)
