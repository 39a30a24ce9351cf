"""Data sources: IDX files, CSV files, user functions and scikit-learn's bundled sets; bad files are one-line errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from emabench.config import validate_config
from emabench.errors import ConfigError
from emabench.tasks import sources
from emabench.tasks.data import make_dataset


def write_idx(path, array: np.ndarray, compress: bool = False) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_files_round_trip(tmp_path, compress: bool) -> None:
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (30, 12, 12)), rng.integers(0, 10, 30)
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"img{suffix}", images, compress)
    write_idx(tmp_path / f"lab{suffix}", labels, compress)
    x, y = sources.read_idx(str(tmp_path / f"img{suffix}"), str(tmp_path / f"lab{suffix}"))
    assert x.shape == (30, 1, 12, 12) and np.array_equal(x[:, 0], images) and np.array_equal(y, labels)


def test_bad_idx_files_are_refused(tmp_path) -> None:
    (tmp_path / "text").write_text("not an idx file at all")
    write_idx(tmp_path / "labels", np.zeros(5))
    with pytest.raises(ConfigError, match="not an IDX file"):
        sources.read_idx(str(tmp_path / "text"), str(tmp_path / "labels"))
    write_idx(tmp_path / "images", np.zeros((4, 3, 3)))
    with pytest.raises(ConfigError, match="4 images"):
        sources.read_idx(str(tmp_path / "images"), str(tmp_path / "labels"))
    truncated = (tmp_path / "images").read_bytes()[:-5]
    (tmp_path / "short").write_bytes(truncated)
    with pytest.raises(ConfigError, match="header declares"):
        sources.read_idx(str(tmp_path / "short"), str(tmp_path / "labels"))


@pytest.mark.parametrize(
    "text,target,needle",
    [
        ("a,b\n1,2\n", "y", "no column 'y'"),
        ("a,y\nx,2\n", "y", "column 'a' of"),
        ("a,y\n1,\n2,3\n", "y", "missing value"),
    ],
)
def test_bad_csv_files_are_one_line_errors(tmp_path, text: str, target: str, needle: str) -> None:
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(ConfigError, match=needle):
        sources.read_csv(str(tmp_path / "d.csv"), target, None)


def make_xy(n: int = 40, fractional: bool = False):
    x = np.arange(n * 3, dtype=float).reshape(n, 3)
    y = (np.arange(n) % 3).astype(int)
    return x, y + 0.5 if fractional else y


def test_a_user_function_gives_the_data(seed_config) -> None:
    raw = seed_config.to_dict() | {"task": "classification"}
    raw["data"] = {"source": "function", "function": "tests.test_sources:make_xy", "test_size": 0.25,
                   "split_random_state": 0, "kwargs": {"n": 40}}  # fmt: skip
    config = validate_config(raw)
    data = make_dataset(config.data, config.task)
    assert data.n_classes == 3 and data.x_train.shape == (30, 3) and data.y_val.shape == (10,)
    assert sorted(np.bincount(data.y_val.numpy()).tolist()) == [3, 3, 4]  # stratified


def test_bundled_sets(seed_config) -> None:
    x, y = sources.load_sklearn("digits")
    assert x.shape == (1797, 1, 8, 8) and set(np.unique(y)) == set(range(10))
    x, y = sources.load_sklearn("diabetes")
    assert x.shape == (442, 10) and y.dtype.kind == "f"


def test_classification_needs_integer_labels(seed_config) -> None:
    raw = seed_config.to_dict() | {"task": "classification"}
    raw["data"] = {"source": "function", "function": "tests.test_sources:make_xy", "test_size": 0.25,
                   "split_random_state": 0}  # fmt: skip
    raw["data"]["kwargs"] = {"fractional": True}
    with pytest.raises(ConfigError, match="integer class labels"):
        make_dataset(validate_config(raw).data, "classification")
