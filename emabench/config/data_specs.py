"""Where a run's samples come from (``data:``), one section per source, discriminated by ``source``.

Every source ends the same way: a test set held out first (``holdout``, a share of all samples; or the source's own
test part: a CSV's ``test_path``, IDX test files, a data function's ``x_test, y_test``), never read before the end;
optional StandardScaler on the inputs (and, for regression, the target) fit on every sample but the test set (on all
samples when there is none: seed 001's choice); then a train/validation split (``test_size``,
``split_random_state``; stratified by class for classification unless ``stratify: false``). ``split: per_seed``
draws the split and the holdout from each run's seed instead. ``label_noise`` corrupts the training labels only.
Nothing is ever downloaded.

The exception is ``source: dataset`` (:class:`TorchDatasets`): your own torch ``Dataset`` s, already split into
training, validation and (optionally) test sets, read as they are: never re-split, scaled or relabelled.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from emabench.config.base import _Section


class LabelNoise(_Section):
    """Noise on the training labels only; validation and test labels stay clean. Classification: ``fraction`` of
    the training labels, exactly ``round(fraction · n_train)`` of them, each moved to another class drawn uniformly
    (``kind: uniform``); regression: ``std``, N(0, std²) added to each training target (in the target's units after
    scaling). Drawn from the split's own stream, after the split."""

    fraction: float | None = Field(default=None, gt=0, lt=1)
    kind: Literal["uniform"] = "uniform"
    std: float | None = Field(default=None, gt=0, le=1e6)

    @model_validator(mode="after")
    def _one_kind(self) -> LabelNoise:
        if (self.fraction is None) == (self.std is None):
            raise ValueError("give exactly one of fraction (classification) or std (regression)")
        return self


class _Split(_Section):
    scale_x: bool = True  # StandardScaler on the inputs, fit on every sample but the test set (the seed: on all)
    scale_y: bool = False  # StandardScaler on a regression target (the seed scales it)
    test_size: float = Field(default=0.2, gt=0, lt=1)  # the share of the rest held out for validation
    split_random_state: int = Field(default=42, ge=0)  # the fixed split's stream (the seed study's 42)
    stratify: bool | None = None  # None: stratified for classification, plain for regression (sklearn's choice)
    holdout: float = Field(default=0.0, ge=0, lt=1)  # share of all samples held out as a test set, split off first
    split: Literal["fixed", "per_seed"] = "fixed"  # per_seed: the run's seed draws the split (and holdout) too
    label_noise: LabelNoise | None = None  # noise on the training labels only
    test_every: int | None = Field(default=None, ge=1)  # also evaluate on the test set every N epochs (curves)


class MakeRegressionData(_Split):
    """sklearn ``make_regression`` (seed 001), restated in numpy and bit-identical to scikit-learn. The defaults are
    the seed study's data set: ``data: {}`` is seed 001's."""

    source: Literal["make_regression"]
    n_samples: int = Field(default=2000, ge=10, le=10_000_000)  # upper bounds: what fits a machine, not a choice
    n_features: int = Field(default=20, ge=1, le=100_000)
    n_informative: int | None = Field(default=None, ge=1)  # None: make_regression's default (10)
    noise: float = Field(default=0.1, ge=0)
    random_state: int = Field(default=42, ge=0)  # the data set is fixed across run seeds, as in the seed script


class MakeClassificationData(_Split):
    """sklearn ``make_classification`` with its arguments (defaults as scikit-learn's, except ``n_samples`` 2000
    and a fixed ``random_state`` 42)."""

    source: Literal["make_classification"]
    n_samples: int = Field(default=2000, ge=10, le=10_000_000)
    n_features: int = Field(default=20, ge=1, le=100_000)
    n_informative: int = Field(default=2, ge=1)
    n_redundant: int = Field(default=2, ge=0)
    n_classes: int = Field(default=2, ge=2, le=1000)
    n_clusters_per_class: int = Field(default=2, ge=1)
    class_sep: float = Field(default=1.0, gt=0)
    flip_y: float = Field(default=0.01, ge=0, le=1)
    random_state: int = Field(default=42, ge=0)


class DiabetesData(_Split):
    """scikit-learn's bundled ``load_diabetes``: 442 patients × 10 features, a disease-progression target."""

    source: Literal["diabetes"]


class DigitsData(_Split):
    """scikit-learn's bundled ``load_digits``: 1,797 handwritten digits as 8×8 images (16 grey levels), 10 classes —
    seed 003's task at the size that ships with scikit-learn."""

    source: Literal["digits"]


class CSVData(_Split):
    """A local CSV file with a header row: numeric ``features`` (default: every column but ``target``)."""

    source: Literal["csv"]
    path: str = Field(min_length=1, max_length=4096)
    target: str = Field(min_length=1)
    features: list[str] | None = Field(default=None, min_length=1)
    test_path: str | None = Field(default=None, min_length=1, max_length=4096)  # a second file: the test set

    @field_validator("features")
    @classmethod
    def _inputs_apart_from_target(cls, features: list[str] | None, info: ValidationInfo) -> list[str] | None:
        target = info.data.get("target")  # validated before: fields are checked in order
        if features is not None and target in features:
            raise ValueError(f"lists the target column {target!r}, which would train as an input (leave it out)")
        twice = next((name for i, name in enumerate(features or []) if name in features[:i]), None)
        if twice is not None:
            raise ValueError(f"lists the column {twice!r} twice (give each column once)")
        return features


class IDXData(_Split):
    """MNIST-format IDX files at a local path (seed 003's data set when you have it): unsigned-byte images
    ``(n, rows, cols)`` and labels ``(n,)``, optionally gzip-compressed; ``limit`` keeps the first samples."""

    source: Literal["idx"]
    images: str = Field(min_length=1, max_length=4096)
    labels: str = Field(min_length=1, max_length=4096)
    limit: int | None = Field(default=None, ge=10)
    test_images: str | None = Field(default=None, min_length=1, max_length=4096)  # MNIST's t10k files: the test set
    test_labels: str | None = Field(default=None, min_length=1, max_length=4096)


class FunctionData(_Split):
    """A function of yours, ``"package.module:function"`` (importable, or under the current directory) or
    ``"path/to/file.py:function"``, called with ``kwargs`` and returning ``(x, y)``: ``x`` ``(n, features…)``,
    ``y`` ``(n,)`` numbers or class labels; or ``(x, y, x_test, y_test)``, the last two its own test set."""

    source: Literal["function"]
    function: str = Field(pattern=r"^[^:]+:[A-Za-z_][\w.]*$", max_length=1000)
    kwargs: dict[str, Any] = Field(default_factory=dict)


SPLIT_KEYS = tuple(_Split.model_fields)  # what the other sources do to their samples, and a Dataset never needs


class TorchDatasets(_Section):
    """Your own torch ``Dataset`` s: ``factory`` (``"package.module:function"`` or ``"path/to/file.py:function"``)
    called with ``kwargs`` returns ``{"train": Dataset, "val": Dataset}``, with ``"test": Dataset`` for a test set of
    its own; each item is ``(x, y)``. Nothing is re-split, scaled or relabelled. Every epoch a ``DataLoader`` reads
    the training set in the run's own shuffled order, so the Dataset's transforms and augmentation run each epoch,
    their randomness seeded per batch from the run's seed (:mod:`emabench.tasks.datasets`); the validation and test
    sets are read once. ``fetch: once`` reads the training set once too and reuses it (for a Dataset without
    randomness: the same run, faster)."""

    source: Literal["dataset"]
    factory: str = Field(pattern=r"^[^:]+:[A-Za-z_][\w.]*$", max_length=1000)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    num_workers: int = Field(default=0, ge=0, le=64)  # DataLoader processes; the batches are the same for any number
    drop_last: bool = False  # drop each epoch's last partial batch, as DataLoader(drop_last=True)
    fetch: Literal["every_epoch", "once"] = "every_epoch"  # once: the training set read once (no augmentation)
    n_classes: int | None = Field(default=None, ge=2, le=1000)  # null: the largest label + 1 (one pass over the sets)
    test_every: int | None = Field(default=None, ge=1)  # also evaluate on the test set every N epochs (curves)

    @model_validator(mode="before")
    @classmethod
    def _never_resplit(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            resplit = next((key for key in SPLIT_KEYS if key in raw and key != "test_every"), None)
            if resplit is not None:
                raise ValueError(
                    f"{resplit} is not for source: dataset, which is never re-split, scaled or relabelled (your "
                    "factory returns its train, val and test sets as they are); leave it out"
                )
        return raw


DataSpec = Annotated[
    MakeRegressionData
    | MakeClassificationData
    | DiabetesData
    | DigitsData
    | CSVData
    | IDXData
    | FunctionData
    | TorchDatasets,
    Field(discriminator="source"),
]
DATA_SOURCES = ("make_regression", "make_classification", "diabetes", "digits", "csv", "idx", "function", "dataset")
CLASSIFICATION_ONLY = ("make_classification", "digits", "idx")
REGRESSION_ONLY = ("make_regression", "diabetes")
