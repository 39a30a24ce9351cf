"""A run's data set: samples from a source (:mod:`.sources`), scaled and split as seed 001 does.

The seed study's three scikit-learn steps (``make_regression``, ``StandardScaler``, ``train_test_split``) are
restated here with numpy, call for call on the same ``RandomState`` streams, because importing scikit-learn costs
about a second of every run's start-up; ``tests/test_data.py`` checks the arrays are bit-identical to
scikit-learn's. Other sources import scikit-learn when they need it (a stratified split uses its
``train_test_split``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from emabench.errors import ConfigError
from emabench.tasks import datasets, sources

MAX_CLASSES = 1000


@dataclass(frozen=True)
class Dataset:
    """Train, validation and (when there is one) test tensors. Inputs are float32 ``(n, *sample_shape)``;
    regression targets float32 ``(n, 1)`` as in the seed, class labels int64 ``(n,)`` in ``0 … n_classes − 1``.

    ``per_replica``: every tensor has a leading replica dimension, one split per run (``split: per_seed``), each of
    the same size. ``noisy``: how many training labels the label noise changed (per replica when per replica).
    ``train_set``: a user's training Dataset read every epoch (``source: dataset``, :mod:`.datasets`), in place of
    ``x_train`` and ``y_train`` (then ``None``)."""

    x_train: torch.Tensor | None
    y_train: torch.Tensor | None
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_classes: int | None = None
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    per_replica: bool = False
    noisy: tuple[int, ...] = ()
    train_set: datasets.TrainSet | None = None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_val.shape[2 if self.per_replica else 1 :])

    @property
    def n_features(self) -> int:
        return math.prod(self.sample_shape)

    @property
    def n_train(self) -> int:
        if self.train_set is not None:
            return len(self.train_set)
        return self.x_train.shape[1 if self.per_replica else 0]

    @property
    def has_test(self) -> bool:
        return self.x_test is not None

    def to(self, device: torch.device | str) -> Dataset:
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.__dict__.items()}
        return Dataset(**moved)

    def rows(self, index: torch.Tensor) -> Dataset:
        """The replicas at ``index`` of a per-replica data set (itself when shared by every replica)."""
        if not self.per_replica:
            return self
        cut = {
            k: v.index_select(0, index.to(v.device)) if isinstance(v, torch.Tensor) else v
            for k, v in self.__dict__.items()
        }
        return Dataset(**cut | {"noisy": tuple(self.noisy[i] for i in index.tolist())})


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


def scaler(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``StandardScaler().fit(a)``'s ``(mean, scale)``: the population std, 1 for columns of (nearly) zero std."""
    total = np.nansum(a, axis=0, dtype=np.float64)
    mean = total / a.shape[0]
    centred = a - total / a.shape[0]
    correction = np.nansum(centred, axis=0, dtype=np.float64)
    variance = (np.nansum(centred**2, axis=0, dtype=np.float64) - correction**2 / a.shape[0]) / a.shape[0]
    scale = np.sqrt(variance)
    scale[scale < 10 * np.finfo(scale.dtype).eps] = 1.0
    return mean, scale


def standard_scale(a: np.ndarray) -> np.ndarray:
    """``StandardScaler().fit_transform(a)``: centre, divide by the population std (columns of zero std kept)."""
    mean, scale = scaler(a)
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


def samples(data: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The raw ``(x, y, x_test, y_test)`` of a ``data:`` section, before scaling and splitting: the test part is the
    source's own (a CSV's ``test_path``, IDX test files, a data function's), else ``None``."""
    source = data.source
    if source == "make_regression":
        extra = {} if data.n_informative is None else {"n_informative": data.n_informative}
        x, y = make_regression(
            data.n_samples, data.n_features, noise=data.noise, random_state=data.random_state, **extra
        )
    elif source == "make_classification":
        x, y = _make_classification(data)
    elif source in ("diabetes", "digits"):
        x, y = sources.load_sklearn(source)
    elif source == "csv":
        x, y = sources.read_csv(data.path, data.target, data.features)
        if data.test_path is not None:
            return x, y, *sources.read_csv(data.test_path, data.target, data.features)
    elif source == "idx":
        x, y = sources.read_idx(data.images, data.labels)
        x, y = (x[: data.limit], y[: data.limit]) if data.limit is not None else (x, y)
        if data.test_images is not None:
            return x, y, *sources.read_idx(data.test_images, data.test_labels)
    else:
        parts = sources.call_function(data.function, dict(data.kwargs))
        return (*parts, None, None) if len(parts) == 2 else parts
    return x, y, None, None


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


SPLIT_STREAM = 0x73706C74  # "splt": a run's split stream under split: per_seed, apart from its training streams
NOISE_STREAM = 0x6E6F6973  # "nois": the label noise's stream, from the split's state


def split_state(data: Any, seed: int | None) -> int:
    """The random state of a run's split: ``split_random_state`` (fixed), or drawn from the run's ``seed``
    (``split: per_seed``; a 32-bit state for scikit-learn's ``RandomState``)."""
    if data.split == "per_seed" and seed is not None:
        return int(np.random.SeedSequence([seed, SPLIT_STREAM]).generate_state(1)[0])
    return data.split_random_state


def make_dataset(data: Any, task: str = "regression", seeds: Sequence[int] | None = None) -> Dataset:
    """Samples of ``data`` held out, scaled and split: with no test set as seed 001's script does (scalers fit on all
    samples), otherwise the test set split off first and the scalers fit on the rest. ``split: per_seed`` gives one
    split per seed of ``seeds``, stacked (:attr:`Dataset.per_replica`); without ``seeds`` the fixed split's, whose
    sizes are every seed's. ``source: dataset``: the user's sets as they are (:func:`.datasets.read`)."""
    if data.source == "dataset":
        return Dataset(**datasets.read(data, task))
    x, y, x_test, y_test = samples(data)
    if x.shape[0] < 4:
        raise ConfigError(f"data: {x.shape[0]} samples are too few to split into training and validation sets")
    if x_test is not None and data.holdout > 0:
        raise ConfigError("data.holdout: the source has a test set of its own; give one of the two (holdout: 0)")
    n_classes = None
    if task == "classification":
        labels, n_classes = class_labels(y if y_test is None else np.concatenate([y, y_test]))
        y, y_test = labels[: len(y)], None if y_test is None else labels[len(y) :]
    else:
        y = np.asarray(y, dtype=np.float64).reshape(-1, 1)
        y_test = None if y_test is None else np.asarray(y_test, dtype=np.float64).reshape(-1, 1)
    if data.split == "per_seed" and seeds:
        parts = [_split(data, task, x, y, x_test, y_test, n_classes, split_state(data, seed)) for seed in seeds]
        return _stacked(parts)
    return _split(data, task, x, y, x_test, y_test, n_classes, split_state(data, None))


def _split(
    data: Any, task: str, x: np.ndarray, y: np.ndarray, x_test: Any, y_test: Any, n_classes: int | None, state: int
) -> Dataset:
    """One split: the holdout off first, scalers fit on the rest, the rest split into training and validation, the
    training labels' noise (see the module and :class:`~emabench.config.data_specs.LabelNoise`)."""
    stratify = data.stratify if data.stratify is not None else task == "classification"
    cut = functools.partial(stratified_split_indices, y) if stratify else functools.partial(split_indices, len(y))
    if data.holdout > 0:
        rest, test = cut(data.holdout, state)
        x, y, x_test, y_test = x[rest], y[rest], x[test], y[test]
        cut = functools.partial(stratified_split_indices, y) if stratify else functools.partial(split_indices, len(y))
    if data.scale_x:
        mean, scale = scaler(x.reshape(x.shape[0], -1))
        x = ((x.reshape(x.shape[0], -1) - mean) / scale).reshape(x.shape)
        if x_test is not None:
            x_test = ((x_test.reshape(x_test.shape[0], -1) - mean) / scale).reshape(x_test.shape)
    if task == "regression" and data.scale_y:
        mean, scale = scaler(y)
        y, y_test = (y - mean) / scale, None if y_test is None else (y_test - mean) / scale
    train, val = cut(data.test_size, state)
    if len(train) == 0 or len(val) == 0:
        raise ConfigError(f"data.test_size: {data.test_size} leaves no training or no validation samples")
    y_train, noisy = _with_noise(y[train], data.label_noise, n_classes, state)
    features = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731 - the seed's conversion
    targets = (lambda a: torch.tensor(a, dtype=torch.int64)) if n_classes else features
    test = {} if x_test is None else {"x_test": features(x_test), "y_test": targets(y_test)}
    return Dataset(
        features(x[train]), targets(y_train), features(x[val]), targets(y[val]), n_classes, **test, noisy=(noisy,)
    )


def _with_noise(y: np.ndarray, noise: Any, n_classes: int | None, state: int) -> tuple[np.ndarray, int]:
    """Training labels with ``noise`` (none: as they are) and how many changed: each of exactly
    ``round(fraction · n)`` labels moved to one of the other classes, uniformly, or N(0, std²) added to every target."""
    if noise is None:
        return y, 0
    generator = np.random.Generator(np.random.PCG64(np.random.SeedSequence([state, NOISE_STREAM])))
    if noise.fraction is None:
        return y + generator.normal(0.0, noise.std, size=y.shape), len(y)
    count = round(noise.fraction * len(y))
    chosen = generator.choice(len(y), size=count, replace=False)
    y = y.copy()
    y[chosen] = (y[chosen] + generator.integers(1, n_classes, size=count)) % n_classes  # never the same class
    return y, count


def _stacked(parts: list[Dataset]) -> Dataset:
    """One split per replica, stacked along a new first dimension (every split has the same sizes)."""
    first = parts[0]
    tensors = {
        name: torch.stack([getattr(p, name) for p in parts])
        for name, value in first.__dict__.items()
        if isinstance(value, torch.Tensor)
    }
    noisy = tuple(n for p in parts for n in p.noisy)
    return Dataset(**tensors, n_classes=first.n_classes, per_replica=True, noisy=noisy)
