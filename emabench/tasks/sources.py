"""Where the samples come from: scikit-learn's bundled sets and generators, a CSV file, MNIST-format IDX files, or
a user function. Each returns ``(x, y)`` as numpy arrays (``x``: ``(n, *sample_shape)``); nothing is downloaded.

Every reader bounds what it reads (file size, rows, dimensions) before reading it, and refuses bad input with a
:class:`~emabench.errors.ConfigError` naming the file, column or value.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib
import importlib.util
import math
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

from emabench.errors import ConfigError

MAX_FILE_BYTES = 2 * 1024**3  # a data file above this is refused before it is read
MAX_VALUES = 500_000_000  # samples × features: ~2 GB as float32
MAX_COLUMNS = 100_000  # columns of a CSV file (make_regression's n_features has the same bound)
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the model trains in float32: a larger value would be inf
IDX_UBYTE = 0x08


def load_sklearn(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``load_diabetes`` (442 × 10, regression) or ``load_digits`` (1797 images 8×8, 10 classes; ``x`` is
    ``(n, 1, 8, 8)``) from scikit-learn's own files."""
    import sklearn.datasets

    if name == "diabetes":
        x, y = sklearn.datasets.load_diabetes(return_X_y=True)
        return x, y
    if name == "digits":
        x, y = sklearn.datasets.load_digits(return_X_y=True)
        return x.reshape(-1, 1, 8, 8), y
    raise ValueError(f"unknown scikit-learn data set {name!r}")


def read_csv(path: str, target: str, features: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """A CSV file with a header: ``features`` (default: every column but ``target``) as ``x``, ``target`` as ``y``.
    Every used column must be numeric, complete and within float32's range (the model trains in float32); the
    header's names must be unique and at most :data:`MAX_COLUMNS`, checked on the header line before the rest is
    parsed. Every check is linear in the columns (a file may have many)."""
    import pandas as pd

    file = _checked_file(path, "data.path")
    columns = _csv_header(file, path)
    present = set(columns)
    if target not in present:
        raise ConfigError(f"data.target: no column {target!r} in {path} (columns: {_some(columns)})")
    names = [c for c in columns if c != target] if features is None else list(features)
    missing = [c for c in names if c not in present]
    if missing:
        raise ConfigError(f"data.features: no column {missing[0]!r} in {path} (columns: {_some(columns)})")
    if not names:
        raise ConfigError(f"data.features: {path} has no feature columns besides the target {target!r}")
    try:
        frame = pd.read_csv(file, nrows=MAX_VALUES // 2 + 1, usecols=list(dict.fromkeys([*names, target])))
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise ConfigError(f"data.path: {path}: not a readable CSV file ({_first_line(err)})") from None
    if frame.empty:
        raise ConfigError(f"data.path: {path} has a header but no data rows")
    if len(frame) * len(names) > MAX_VALUES:
        raise ConfigError(f"data.path: {path} has more than {MAX_VALUES:,} values; use a sample of it")
    frame.columns = [str(c) for c in frame.columns]
    _check_numeric(frame, path)
    x, y = frame[names].to_numpy(dtype=np.float64), frame[target].to_numpy()
    for values, labels in ((x, names), (y.reshape(len(y), 1), [target])):
        bad = _first_unusable(values)
        if bad is not None:
            row, column = bad
            raise ConfigError(
                f"data: column {labels[column]!r} of {path} has {_unusable(values[row, column])} "
                f"(data row {row + 1}); every value must be a number within ±{FLOAT32_MAX:.1e}"
            )
    return x, y


def _check_numeric(frame: Any, path: str) -> None:
    """Every column of ``frame`` (a pandas frame) holds numbers (not text, not booleans)."""
    import pandas as pd

    for column, kind in frame.dtypes.items():
        if not pd.api.types.is_numeric_dtype(kind) or pd.api.types.is_bool_dtype(kind):
            raise ConfigError(
                f"data: column {column!r} of {path} is not numeric (e.g. {str(frame[column].iloc[0])[:40]!r}); "
                "encode it as numbers or leave it out with data.features"
            )


def _csv_header(file: Path, path: str) -> list[str]:
    """The header line's names, read alone (a 10⁶-column file is refused before pandas parses it)."""
    try:
        with file.open(encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"data.path: {path}: not a readable CSV file ({_first_line(err)})") from None
    if not header:
        raise ConfigError(f"data.path: {path} is empty; expected a header row of column names, then data rows")
    if len(header) > MAX_COLUMNS:
        raise ConfigError(f"data.path: {path} has {len(header):,} columns, more than the {MAX_COLUMNS:,} allowed")
    seen: set[str] = set()
    for number, name in enumerate(header, 1):
        if not name.strip():
            raise ConfigError(
                f"data.path: column {number} of {path} has no name in the header (a saved index?); name it or remove it"
            )
        if name in seen:
            raise ConfigError(f"data.path: {path} names the column {name!r} twice; give every column its own name")
        seen.add(name)
    return header


def _first_unusable(values: np.ndarray) -> tuple[int, int] | None:
    """(row, column) of the first value that is NaN, infinite or beyond float32's range, else ``None``."""
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(values) <= FLOAT32_MAX)  # NaN compares False, so it is bad too
    if not bad.any():
        return None
    index = int(np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))[0])
    return index, int(np.flatnonzero(bad.reshape(len(values), -1)[index])[0])


def _unusable(value: float) -> str:
    return "a missing value (NaN)" if np.isnan(value) else f"the value {value:g}"


def read_idx(images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-format IDX files (``train-images-idx3-ubyte[.gz]`` and ``...labels-idx1-ubyte[.gz]``): unsigned-byte
    images ``(n, rows, cols)`` → ``x`` ``(n, 1, rows, cols)`` as floats 0–255, labels ``(n,)``."""
    x = _read_idx_file(images, "data.images", dims=3)
    y = _read_idx_file(labels, "data.labels", dims=1)
    if x.shape[0] != y.shape[0]:
        raise ConfigError(f"data.labels: {labels} has {y.shape[0]} labels for {x.shape[0]} images in {images}")
    return x.reshape(x.shape[0], 1, *x.shape[1:]).astype(np.float64), y.astype(np.int64)


def _read_idx_file(path: str, key: str, dims: int) -> np.ndarray:
    file = _checked_file(path, key)
    opener = gzip.open if file.suffix == ".gz" else open
    try:
        with opener(file, "rb") as handle:
            header = handle.read(4 + 4 * dims)
            if len(header) < 4 + 4 * dims:
                raise ConfigError(f"{key}: {path} is too short for an IDX header")
            zero, kind, ndim = struct.unpack(">HBB", header[:4])
            if zero != 0 or kind != IDX_UBYTE or ndim != dims:
                raise ConfigError(
                    f"{key}: {path} is not an IDX file of unsigned bytes with {dims} dimension(s) "
                    f"(magic {header[:4].hex()}, expected 000008{dims:02x})"
                )
            shape = struct.unpack(f">{dims}I", header[4:])
            count = math.prod(shape)
            if count > MAX_VALUES:
                raise ConfigError(f"{key}: {path} declares {count:,} values (at most {MAX_VALUES:,})")
            data = handle.read(count + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise ConfigError(f"{key}: {path}: cannot read ({_first_line(err)})") from None
    if len(data) != count:
        raise ConfigError(f"{key}: {path} holds {len(data)} bytes of data, its header declares {count}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def call_function(spec: str, kwargs: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """A user function ``"package.module:function"`` called with ``kwargs``, returning ``(x, y)`` array-likes, or
    ``(x, y, x_test, y_test)`` with a test set of its own."""
    function = import_callable(spec, "data.function")
    try:
        result = function(**kwargs)
    except (Exception, SystemExit) as err:  # the user's code (exit() too): one line, our traceback out
        raise ConfigError(f"data.function: {spec} raised {type(err).__name__}: {_first_line(err)}") from None
    if not (isinstance(result, (tuple, list)) and len(result) in (2, 4)):
        raise ConfigError(
            f"data.function: {spec} must return (x, y) or (x, y, x_test, y_test), got {type(result).__name__}"
        )
    pairs = [_checked_pair(spec, *result[i : i + 2], "test " if i else "") for i in range(0, len(result), 2)]
    if len(pairs) == 2 and pairs[0][0].shape[1:] != pairs[1][0].shape[1:]:
        raise ConfigError(
            f"data.function: {spec}'s test inputs have samples of shape {pairs[1][0].shape[1:]}, its training inputs "
            f"{pairs[0][0].shape[1:]}"
        )
    return tuple(array for pair in pairs for array in pair)


def _checked_pair(spec: str, x: Any, y: Any, which: str) -> tuple[np.ndarray, np.ndarray]:
    """One ``(x, y)`` a data function returned, as float64 arrays, refused in one line if unusable."""
    try:
        x, y = np.asarray(x), np.asarray(y)
    except Exception as err:  # ragged lists and the like
        raise ConfigError(
            f"data.function: {spec} returned {which}arrays numpy cannot read ({_first_line(err)})"
        ) from None
    if not (np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.number)):
        raise ConfigError(f"data.function: {spec} must return numeric {which}arrays, got {x.dtype} and {y.dtype}")
    if x.ndim < 2 or y.ndim not in (1, 2) or x.shape[0] != y.shape[0] or x.size > MAX_VALUES:
        raise ConfigError(
            f"data.function: {spec} must return {which}x of shape (n, features...) and y of shape (n,) with "
            f"x.size <= {MAX_VALUES:,}; got {x.shape} and {y.shape}"
        )
    x = x.astype(np.float64)
    for name, values in ((f"{which}x", x), (f"{which}y", y.astype(np.float64))):  # refused as a CSV file's would be
        bad = _first_unusable(values.reshape(len(values), -1))
        if bad is not None:
            value = values.reshape(len(values), -1)[bad]
            raise ConfigError(
                f"data.function: {spec} returned {_unusable(value)} in {name} (sample {bad[0]}); every value must "
                f"be a number within ±{FLOAT32_MAX:.1e}"
            )
    return x, y.reshape(len(y)) if y.ndim == 2 and y.shape[1] == 1 else y


def import_callable(spec: str, key: str) -> Any:
    """``"package.module:function"`` (importable: installed, or under the current directory) or
    ``"path/to/file.py:function"`` (a file, relative to the current directory) → the function."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{key}: expected 'package.module:function' or 'path/to/file.py:function', got {spec!r}")
    try:
        module = _load_file(module_name) if module_name.endswith(".py") else _import_module(module_name)
    except ConfigError:
        raise
    except Exception as err:  # ImportError, or the module's own import-time error
        raise ConfigError(f"{key}: cannot import {module_name!r} ({type(err).__name__}: {_first_line(err)})") from None
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ConfigError(f"{key}: {module_name!r} has no attribute {attribute!r}")
    if not callable(target):
        raise ConfigError(f"{key}: {spec!r} is not callable")
    return target


def _import_module(name: str) -> Any:
    """Import ``name`` as ``python -m`` would, with the current directory on the path (a user's own package)."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.append(cwd)  # after everything installed: a local file never shadows a package
    return importlib.import_module(name)


def _load_file(path: str) -> Any:
    """A Python file as a module (cached under a name derived from its absolute path, so loading twice is free)."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ConfigError(f"no such file: {path}")
    name = "emabench_user_" + hashlib.sha256(str(file).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _checked_file(path: str, key: str) -> Path:
    file = Path(path).expanduser()
    if file.is_dir():
        raise ConfigError(f"{key}: {path} is a directory; give the path of a file")
    if not file.exists():
        raise ConfigError(f"{key}: no such file: {path}")
    if not file.is_file():
        raise ConfigError(f"{key}: {path} is not a regular file")
    size = file.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ConfigError(f"{key}: {path} is {size / 1024**3:.1f} GiB (at most {MAX_FILE_BYTES // 1024**3} GiB)")
    return file


def _some(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:200]
