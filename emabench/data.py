"""The seed study's data: ``make_regression``, StandardScaler on X and y, ``train_test_split``."""

from __future__ import annotations

from dataclasses import dataclass

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


def make_dataset(cfg: DataConfig) -> Dataset:
    """Generate, scale and split exactly as seed 001's script (the scalers are fit on all samples, as there)."""
    from sklearn.datasets import make_regression  # lazy: sklearn costs ~1 s of start-up
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    extra = {} if cfg.n_informative is None else {"n_informative": cfg.n_informative}
    x, y = make_regression(
        n_samples=cfg.n_samples,
        n_features=cfg.n_features,
        noise=cfg.noise,
        random_state=cfg.random_state,
        **extra,
    )
    y = y.reshape(-1, 1)
    if cfg.scale_x:
        x = StandardScaler().fit_transform(x)
    if cfg.scale_y:
        y = StandardScaler().fit_transform(y)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=cfg.test_size, random_state=cfg.split_random_state
    )
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731 - the seed's conversion
    return Dataset(as_tensor(x_train), as_tensor(y_train), as_tensor(x_val), as_tensor(y_val))
