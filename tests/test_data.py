"""The numpy restatement of make_regression / StandardScaler / train_test_split is bit-identical to scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_regression as sk_make_regression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from emabench.config import with_overrides
from emabench.tasks.data import make_dataset, make_regression, split_indices, standard_scale


def sklearn_dataset(cfg):
    """The seed script's data preparation, verbatim."""
    extra = {} if cfg.n_informative is None else {"n_informative": cfg.n_informative}
    x, y = sk_make_regression(
        n_samples=cfg.n_samples, n_features=cfg.n_features, noise=cfg.noise, random_state=cfg.random_state, **extra
    )
    y = y.reshape(-1, 1)
    if cfg.scale_x:
        x = StandardScaler().fit_transform(x)
    if cfg.scale_y:
        y = StandardScaler().fit_transform(y)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=cfg.test_size, random_state=cfg.split_random_state
    )
    return [torch.tensor(a, dtype=torch.float32) for a in (x_train, y_train, x_val, y_val)]


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # the seed study
        {"data.n_samples": 333, "data.n_features": 7, "data.noise": 0.0, "data.random_state": 1},
        {"data.n_features": 30, "data.n_informative": 25, "data.test_size": 0.33, "data.split_random_state": 5},
        {"data.scale_x": False, "data.scale_y": False, "data.noise": 3.0},
    ],
)
def test_dataset_is_bit_identical_to_sklearn(seed_config, overrides):
    cfg = with_overrides(seed_config, overrides).data
    ours = make_dataset(cfg)
    for mine, theirs in zip((ours.x_train, ours.y_train, ours.x_val, ours.y_val), sklearn_dataset(cfg)):
        assert mine.shape == theirs.shape
        assert torch.equal(mine, theirs)


def test_pieces_match_sklearn_in_float64():
    x, y = make_regression(500, 12, noise=0.5, random_state=3)
    sx, sy = sk_make_regression(n_samples=500, n_features=12, noise=0.5, random_state=3)
    assert np.array_equal(x, sx) and np.array_equal(y, sy)
    assert np.array_equal(standard_scale(x), StandardScaler().fit_transform(x))
    train, test = split_indices(500, 0.2, 42)
    idx_train, idx_test = train_test_split(np.arange(500), test_size=0.2, random_state=42)
    assert np.array_equal(train, idx_train) and np.array_equal(test, idx_test)
