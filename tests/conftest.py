"""Shared fixtures: the seed config and a tiny variant that trains in well under a second."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from emabench.config import Config, load_config, with_overrides

ROOT = Path(__file__).resolve().parents[1]
SEED_CONFIG = ROOT / "configs" / "regression.yaml"

TINY = {
    "data.n_samples": 240,
    "train.max_epochs": 6,
    "train.batch_size": 32,
    "ema.update_after_step": 5,
    "train.early_stopping.patience": 3,
    "train.scheduler.patience": 1,
}
TINY_SETS = [f"{k}={v}" for k, v in TINY.items()]


@pytest.fixture(autouse=True)
def _single_thread():
    # Results must not depend on the thread count; one thread keeps the suite quick and quiet on 2 cores.
    torch.set_num_threads(1)


@pytest.fixture
def seed_config() -> Config:
    return load_config(SEED_CONFIG)


@pytest.fixture
def tiny_config(seed_config: Config) -> Config:
    return with_overrides(seed_config, dict(TINY) | {"device": "cpu"})
