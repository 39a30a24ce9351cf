"""Your own torch ``Dataset`` s (``data: {source: dataset}``): the factory's contract, and reading a Dataset in
batches whose randomness belongs to the run, not to the process that reads them.

The factory returns ``{"train": Dataset, "val": Dataset}`` and optionally ``"test": Dataset``: map-style Datasets
(``__len__`` and ``__getitem__``) whose items are ``(x, y)``: ``x`` a tensor or array of one sample's inputs (the
same shape in every set), ``y`` a class index (classification) or one number (regression). Nothing is re-split.

**Seeded batches.** Every batch is read by :class:`SeededItems` with torch's CPU generator, numpy's global generator
and Python's ``random`` seeded from the batch's own seed (torch's restored afterwards): a training batch's seed is from
``(run seed, epoch, batch number)`` (:func:`batch_seed`), the evaluation sets' from fixed numbers. So a Dataset's
augmentation draws the same numbers for a run whichever runs share its stack, whichever ``DataLoader`` worker reads
the batch (``num_workers`` changes nothing but speed), after a resume, and leaves the trainer's own generators
(a custom model's dropout reads torch's) untouched. A generator the Dataset keeps itself is outside this: it is
shared by every run of a stack and not saved in a checkpoint.

The validation and test sets are read once, at the start, and kept as tensors (the training set too with
``fetch: once``); inputs become float32, class labels int64 ``(n,)``, regression targets float32 ``(n, 1)``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data._utils.collate import default_collate

from emabench.errors import ConfigError
from emabench.tasks.sources import import_callable

SPLITS = ("train", "val", "test")
READ_BATCH = 256  # samples per batch when a set is read once
MAX_CLASSES = 1000
TRAIN_STREAM = 0x64617461  # "data": a run's training batches, apart from its other streams
FIXED_STREAM = 0x66697864  # "fixd": the sets read once, the same for every run
Batch = tuple[int, list[int]]  # (seed, the indices of its samples)


def batch_seed(seed: int, epoch: int, batch: int) -> int:
    """The seed of a run's training batch ``batch`` (from 0) of ``epoch`` (from 1): 64 bits of
    ``SeedSequence([seed, TRAIN_STREAM, epoch, batch])``."""
    high, low = np.random.SeedSequence([seed, TRAIN_STREAM, epoch, batch]).generate_state(2)
    return int(high) << 32 | int(low)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Torch's CPU generator, numpy's global generator and Python's ``random`` seeded from ``seed`` inside; torch's
    restored on the way out (a custom model's dropout draws from it). numpy's and Python's are left as the batch left
    them: emabench draws from neither, and saving numpy's costs ~0.1 ms, five times the rest of this."""
    state = torch.random.get_rng_state()
    torch.random.default_generator.manual_seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    random.seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


class SeededItems(TorchDataset):
    """A user's Dataset read a batch at a time, each batch ``(seed, indices)`` under :func:`seeded` (a
    ``DataLoader`` 's ``batch_sampler`` yields them; its workers read them alike)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        raise TypeError("SeededItems reads whole batches (__getitems__)")

    def __getitems__(self, batch: Batch) -> list[Any]:
        seed, indices = batch
        with seeded(seed):
            many = getattr(self.dataset, "__getitems__", None)
            return list(many(indices)) if many else [self.dataset[i] for i in indices]


@dataclass(frozen=True)
class Collate:
    """``default_collate`` of ``(x, y)`` items, then the task's dtypes: float32 inputs, int64 labels ``(B,)`` or
    float32 targets ``(B, 1)``."""

    classification: bool

    def __call__(self, items: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = default_collate(items)
        x, y = torch.as_tensor(x).float(), torch.as_tensor(y)
        return x, (y.long().reshape(-1) if self.classification else y.float().reshape(-1, 1))


def loader(dataset: Any, batches: Sequence[Batch], classification: bool, num_workers: int = 0) -> DataLoader:
    """A ``DataLoader`` reading ``batches`` of ``dataset`` in order; its own generator (never torch's global one)
    draws the workers' base seed, which the per-batch seeds make irrelevant."""
    return DataLoader(
        SeededItems(dataset),
        batch_sampler=list(batches),
        num_workers=num_workers,
        collate_fn=Collate(classification),
        generator=torch.Generator().manual_seed(0),
    )


def read_all(
    dataset: Any, classification: bool, num_workers: int = 0, which: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every sample of ``dataset`` in its order, as two tensors, each batch seeded from ``(FIXED_STREAM, which, b)``."""
    n = len(dataset)
    starts = range(0, n, READ_BATCH)
    batches = [(_fixed_seed(which, b), list(range(s, min(s + READ_BATCH, n)))) for b, s in enumerate(starts)]
    parts = list(loader(dataset, batches, classification, num_workers))
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _fixed_seed(which: int, batch: int) -> int:
    high, low = np.random.SeedSequence([FIXED_STREAM, which, batch]).generate_state(2)
    return int(high) << 32 | int(low)


@dataclass(frozen=True)
class TrainSet:
    """The user's training Dataset, read every epoch (:mod:`emabench.train.loader`), and how."""

    dataset: Any
    classification: bool
    num_workers: int

    def __len__(self) -> int:
        return len(self.dataset)


def read(data: Any, task: str) -> dict[str, Any]:
    """A ``data: {source: dataset}`` section's sets, as the fields of :class:`emabench.tasks.data.Dataset`: the
    validation and test sets (and with ``fetch: once`` the training set) read into tensors, the training set
    otherwise kept as a :class:`TrainSet`; ``n_classes`` for classification (``data.n_classes``, or from the labels
    of every set: one pass over the training set)."""
    spec, classification = data.factory, task == "classification"
    sets = call_factory(spec, dict(data.kwargs))
    check_items(spec, sets, classification)
    out: dict[str, Any] = {"x_train": None, "y_train": None, "train_set": None, "n_classes": None}
    for which, split in enumerate(SPLITS):
        if split in sets and (split != "train" or data.fetch == "once"):
            x, y = read_all(sets[split], classification, data.num_workers, which)
            check_finite(spec, split, x, y)
            out[f"x_{split}"], out[f"y_{split}"] = x, y
    if data.fetch != "once":
        out["train_set"] = TrainSet(sets["train"], classification, data.num_workers)
    if classification:
        labels = [out[f"y_{split}"] for split in SPLITS if out.get(f"y_{split}") is not None]
        if data.n_classes is None and out["y_train"] is None:  # the training labels, from one pass
            labels.append(read_all(sets["train"], classification, data.num_workers)[1])
        out["n_classes"] = class_count(labels, data.n_classes, spec)
    return out


def call_factory(spec: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``factory(**kwargs)``, checked: a mapping of ``train``, ``val`` (and ``test``) to map-style Datasets."""
    factory = import_callable(spec, "data.factory")
    try:
        result = factory(**kwargs)
    except (Exception, SystemExit) as err:  # the user's code (exit() too): one line, our traceback out
        raise ConfigError(f"data.factory: {spec} raised {type(err).__name__}: {_first_line(err)}") from None
    if not isinstance(result, Mapping):
        raise ConfigError(
            f"data.factory: {spec} must return a dict {{'train': Dataset, 'val': Dataset}} (and 'test' for a test "
            f"set), got {type(result).__name__}"
        )
    unknown = [key for key in result if key not in SPLITS]
    missing = [key for key in SPLITS[:2] if key not in result]
    if unknown or missing:
        what = f"has no {missing[0]!r}" if missing else f"returned the key {unknown[0]!r}"
        raise ConfigError(f"data.factory: {spec} {what} (the keys: 'train', 'val' and optionally 'test')")
    for split, dataset in result.items():
        mapped = hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")
        if isinstance(dataset, IterableDataset) or not mapped:
            raise ConfigError(
                f"data.factory: {spec}'s {split!r} must be a map-style Dataset (__len__ and __getitem__; an "
                f"IterableDataset has no order to shuffle), got {type(dataset).__name__}"
            )
        if len(dataset) < 1:
            raise ConfigError(f"data.factory: {spec}'s {split!r} Dataset is empty")
    return dict(result)


def check_items(spec: str, sets: dict[str, Any], classification: bool) -> None:
    """The first item of every set: an ``(x, y)`` pair, numeric, ``x`` of one shape in every set, ``y`` one number."""
    shapes = {}
    for split, dataset in sets.items():
        try:
            with seeded(_fixed_seed(len(SPLITS), 0)):
                item = dataset[0]
        except (Exception, SystemExit) as err:
            raise ConfigError(
                f"data.factory: {spec}'s {split!r}[0] raised {type(err).__name__}: {_first_line(err)}"
            ) from None
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ConfigError(f"data.factory: {spec}'s {split!r} items must be (x, y) pairs, got {_kind(item)}")
        try:
            x, y = torch.as_tensor(np.asarray(item[0])), torch.as_tensor(np.asarray(item[1]))
        except (TypeError, ValueError, RuntimeError) as err:
            raise ConfigError(f"data.factory: {spec}'s {split!r} items are not numeric ({_first_line(err)})") from None
        if x.dtype == torch.bool or not (x.is_floating_point() or x.dtype.is_signed or x.dtype == torch.uint8):
            raise ConfigError(f"data.factory: {spec}'s {split!r} inputs must be numbers, got {x.dtype}")
        if y.numel() != 1 or (classification and y.is_floating_point() and float(y) != round(float(y))):
            wanted = "one class index" if classification else "one number"
            raise ConfigError(f"data.factory: {spec}'s {split!r} targets must be {wanted} per item, got {_kind(y)}")
        shapes[split] = tuple(x.shape)
    if len(set(shapes.values())) > 1:
        raise ConfigError(f"data.factory: {spec}'s sets have samples of different shapes ({shapes})")


def class_count(labels: Sequence[torch.Tensor], given: int | None, spec: str) -> int:
    """``given``, or the largest label + 1; every label an index in ``[0, classes)``."""
    low = min(int(y.min()) for y in labels)
    high = max(int(y.max()) for y in labels)
    classes = given if given is not None else high + 1
    if low < 0 or high >= classes or not 2 <= classes <= MAX_CLASSES:
        where = f"data.n_classes is {given}" if given is not None else f"at most {MAX_CLASSES} classes"
        raise ConfigError(f"data.factory: {spec}'s class labels run from {low} to {high}; need 0 … K − 1 ({where})")
    return classes


def check_finite(spec: str, split: str, x: torch.Tensor, y: torch.Tensor) -> None:
    for name, values in (("inputs", x), ("targets", y)):
        if values.is_floating_point() and not bool(torch.isfinite(values).all()):
            raise ConfigError(f"data.factory: {spec}'s {split!r} {name} hold a NaN or an infinite value")


def _kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return type(value).__name__ + (f" of {len(value)}" if isinstance(value, (tuple, list)) else "")


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:200]
