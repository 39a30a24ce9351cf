"""Your own training loop writes run folders that ``emabench report``, ``ls`` and ``show`` read like their own.

    from emabench.track import Run

    with Run(name="mnist-cnn", seed=seed, config=vars(args), task="classification", runs_dir="runs") as run:
        for epoch in range(1, epochs + 1):
            ...  # train an epoch, evaluate the raw model and its average
            run.log(epoch, {"raw": {"val_loss": l, "accuracy": a}, "ema": {"val_loss": le, "accuracy": ae}},
                    train_loss=tl, lr=lr)

The folder is an ordinary run folder (:mod:`emabench.runs.layout`), written through
:class:`~emabench.runs.folder.RunFolder` (every file atomically):

- ``config.yaml``: ``name``, ``seed``, ``task`` (when given) and ``params``, the ``config`` you pass (plain values:
  numbers, strings, booleans, ``None``, paths, lists and mappings of them; your config's own ``seed`` and ``name``,
  if it has them, must equal the run's and are written once, at the top). Its hash is the run id, so the same
  config lands in the same folder: re-running a finished one raises :class:`RunFinished` (check
  :attr:`Run.finished` first, or pass ``overwrite=True``).
- ``history.csv``: one row per :meth:`Run.log`, the runner's columns: ``epoch, train_loss, lr``, then per model
  (``raw`` first) ``<model>_val_loss, <model>_<metric>…`` and ``<model>_decay`` when a model logs its decay.
- ``task.json``: the metrics logged and the direction of each, from ``task`` (``"classification"``,
  ``"regression"``) or from ``metrics`` (``{"bleu": "higher"}``) (:mod:`emabench.tasks.declared`).
- at the end of the block, ``metrics.csv`` (the runner's final table) and ``DONE``; ``FAILED`` with the traceback if
  the block raised, ``INTERRUPTED`` on Ctrl-C (the exception goes on either way).

Torch-free: this module imports neither torch nor the trainer.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import re
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from emabench import __version__
from emabench.config import NAME_PATTERN, dump_yaml, parse_yaml
from emabench.errors import ConfigError, RunError, one_line
from emabench.runs.folder import RunFolder
from emabench.runs.lock import RunLock
from emabench.tasks.declared import DeclaredTask, check_directions, declare
from emabench.tasks.metric_specs import VAL_LOSS

MODEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,39}$")  # as an averager's name in a config
BASELINE = "raw"
DECAY = "decay"  # a model's decay: a history column, not a metric
STOP_REASON = "end_of_loop"


class RunFinished(RunError):
    """The run's folder is finished already (``DONE``): the same config was tracked to its end before."""


class Run:
    """One run of your own loop, tracked into ``<runs_dir>/<name>-seed<seed>-<hash of its config>``.

    Args:
        name: the experiment's name (letters, digits, ``._-``), shared by the runs the report compares.
        seed: this run's seed (an int ≥ 0); ``None``: ``config["seed"]``. Runs are paired by it.
        config: your settings, e.g. ``vars(args)``; the report groups runs by what differs here (``params.<key>``).
        task: ``"classification"`` or ``"regression"``: the direction of its metrics (accuracy, f1_macro; mse,
            mae, r2).
        runs_dir: the folder the run folder goes in (``emabench report`` reads ``runs/`` by default).
        metrics: the direction of every other metric you log: ``{"bleu": "higher", "ter": "lower"}``.
        overwrite: train a finished config again (its folder is cleared when the block starts).
    """

    def __init__(
        self,
        *,
        name: str,
        seed: int | None = None,
        config: Mapping[str, Any] | None = None,
        task: str | None = None,
        runs_dir: str | Path = "runs",
        metrics: Mapping[str, str] | None = None,
        overwrite: bool = False,
    ) -> None:
        params = plain(dict(config or {}), "config")
        seed = _identity(params, "seed", seed)
        name = _identity(params, "name", name)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed: must be an int >= 0, got {seed!r}")
        seed = int(seed)
        if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
            raise ValueError(
                f"name: letters, digits, '.', '_' and '-' (at most 64, a letter or digit first), got {name!r}"
            )
        if task not in (None, "classification", "regression"):
            raise ValueError(f"task: must be 'classification', 'regression' or None, got {task!r}")
        self.directions = dict(metrics or {})
        check_directions(self.directions)
        if task is None and not self.directions:
            raise ValueError("give task='classification' or 'regression', or each metric's direction: metrics={...}")
        self.name, self.seed, self.task = name, seed, task
        self.config = (
            {"name": name, "seed": seed} | ({"task": task} if task else {}) | ({"params": params} if params else {})
        )
        _check_readable(self.config)
        self.folder = RunFolder.for_config(self.config, runs_dir)
        self.overwrite = overwrite
        self._lock: RunLock | None = None
        self._rows: list[dict[str, float]] = []
        self._declared: DeclaredTask | None = None
        self._shape: dict[str, tuple[str, ...]] = {}  # model → its keys, as the first epoch logged them
        self._started = 0.0
        self._diverged = False  # the last epoch's training loss, where logged, is not finite

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def path(self) -> Path:
        """The run folder."""
        return self.folder.path

    @property
    def finished(self) -> bool:
        """Whether this config was tracked to its end before (its folder holds ``DONE``)."""
        return self.folder.is_done

    # --- the block ---------------------------------------------------------------------------------------------------
    def __enter__(self) -> Run:
        if self.finished and not self.overwrite:
            raise RunFinished(f"{self.path}: this config finished before (DONE); check Run.finished or overwrite=True")
        lock = self.folder.try_lock()
        if lock is None:
            raise RunError(f"{self.path}: another process is tracking this run")
        if self.finished and not self.overwrite:  # finished by that process while we waited for the lock
            lock.release()
            raise RunFinished(f"{self.path}: this config finished before (DONE); check Run.finished or overwrite=True")
        self._lock, self._rows, self._declared, self._shape = lock, [], None, {}
        self.folder.start(self.config)
        self._started = time.monotonic()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        """The block's end: ``DONE``; ``INTERRUPTED`` on Ctrl-C; ``FAILED`` on any other exception (which goes on:
        a folder that cannot be marked does not hide it)."""
        try:
            if error is None and self._declared is None:
                error = ValueError("the run logged no epoch: call run.log(epoch, {...}) once per epoch")
                self._fail(error)
                raise error
            if error is None and self._declared is not None:
                self._finish(self._declared)
            elif isinstance(error, KeyboardInterrupt):
                with contextlib.suppress(RunError):
                    self.folder.interrupt({"epochs": self._epochs(), "emabench": __version__})
            else:
                with contextlib.suppress(RunError):
                    self._fail(error)
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    # --- each epoch --------------------------------------------------------------------------------------------------
    def log(
        self,
        epoch: int,
        models: Mapping[str, Mapping[str, float]],
        *,
        train_loss: float | None = None,
        lr: float | None = None,
    ) -> None:
        """Record one epoch: ``models`` maps ``raw`` and each averaged model to its validation metrics
        (``val_loss`` and the same metrics for every model; ``decay`` optionally: the averager's decay, not a metric).
        Numbers may be Python or numpy scalars or 0-d tensors. Epochs must increase from call to call."""
        if self._lock is None:
            raise RuntimeError("Run.log: only inside `with Run(...) as run:`")
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 1:
            raise ValueError(f"epoch: must be an int >= 1, got {epoch!r}")
        if self._rows and epoch <= self._rows[-1]["epoch"]:
            raise ValueError(f"epoch {epoch}: must follow epoch {int(self._rows[-1]['epoch'])}")
        if not self._shape:
            self._first_epoch(models)
        if not isinstance(models, Mapping) or set(models) != set(self._shape):
            raise ValueError(f"epoch {epoch}: log the models of the first epoch, {', '.join(self._shape)}")
        row = {"epoch": int(epoch), "train_loss": _number(train_loss, "train_loss"), "lr": _number(lr, "lr")}
        for model, keys in self._shape.items():
            values = models[model]
            if not isinstance(values, Mapping) or set(values) != set(keys):
                raise ValueError(f"epoch {epoch}, model {model!r}: log what the first epoch did, {', '.join(keys)}")
            row |= {f"{model}_{key}": _number(values[key], f"{model}.{key}") for key in keys}
        self.folder.record_epoch(row)
        self._rows.append(row)
        self._diverged = train_loss is not None and not math.isfinite(row["train_loss"])

    def _first_epoch(self, models: Mapping[str, Mapping[str, float]]) -> None:
        """The models and metrics every epoch logs (``raw`` first, ``val_loss`` first, then ``raw``'s order), and
        the run's task from them (``task.json``)."""
        if not isinstance(models, Mapping) or BASELINE not in models:
            raise ValueError(f"models: a mapping with {BASELINE!r} (the model as trained) and each averaged model")
        for model, values in models.items():
            if not isinstance(model, str) or not MODEL_NAME.match(model):
                raise ValueError(f"model name {model!r}: a letter, then letters, digits, '_', '.', '-' (at most 40)")
            if not isinstance(values, Mapping):
                raise ValueError(
                    f"model {model!r}: its metrics as a mapping, e.g. {{'val_loss': 0.3, 'accuracy': 0.9}}"
                )
        metrics = sorted((k for k in models[BASELINE] if k != DECAY), key=lambda k: k != VAL_LOSS.name)
        shape = {}
        for model in [BASELINE, *(m for m in models if m != BASELINE)]:
            if {k for k in models[model] if k != DECAY} != set(metrics):
                raise ValueError(f"model {model!r}: every model logs what raw logs ({', '.join(metrics)})")
            shape[model] = (*metrics, *([DECAY] if DECAY in models[model] else []))
        task = declare(self.task, self.directions, metrics)
        columns = ["epoch", "train_loss", "lr", *(f"{m}_{k}" for m, keys in shape.items() for k in keys)]
        if len(set(columns)) != len(columns):
            raise ValueError(f"models and metrics give one history column twice: {', '.join(columns)}")
        self.folder.write_task(task)
        self._declared, self._shape = task, shape

    # --- the end -----------------------------------------------------------------------------------------------------
    def _finish(self, task: DeclaredTask) -> None:
        """``metrics.csv`` from the history, then ``DONE``: ``diverged`` when the last epoch's raw validation loss, or
        its training loss where one was logged, is not finite (the report counts such runs and leaves them out)."""
        diverged = not math.isfinite(self._rows[-1][f"{BASELINE}_val_loss"]) or self._diverged
        info = {
            "status": "diverged" if diverged else "completed",
            "stop_reason": "diverged" if diverged else STOP_REASON,
            "stop_epoch": self._epochs(),
            "epochs": self._epochs(),
            "wall_time_s": round(time.monotonic() - self._started, 3),
            "recorded_by": "emabench.track",
            "emabench": __version__,
        }
        self.folder.finish(self._rows, {}, info, task=task, seed=self.seed, plots=False)

    def _fail(self, error: BaseException) -> None:
        info = {
            "status": "failed",
            "error": f"{type(error).__name__}: {one_line(str(error), 300)}",
            "traceback": "".join(traceback.format_exception(error)),
            "epochs": self._epochs(),
            "emabench": __version__,
        }
        self.folder.fail(self.config, info)

    def _epochs(self) -> int:
        return int(self._rows[-1]["epoch"]) if self._rows else 0


# --- the config, as plain values config.yaml can hold ----------------------------------------------------------------
def plain(value: Any, where: str) -> Any:
    """``value`` as YAML-safe plain types: mappings with string keys (no dots: the report joins keys with dots),
    lists (from lists and tuples), strings (from paths too), numbers, booleans and ``None``; a ``ValueError`` naming
    ``where`` for anything else."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str) or not key or "." in key:
                raise ValueError(f"{where}: key {key!r} must be a non-empty string without '.'")
        return {key: plain(item, f"{where}[{key!r}]") for key, item in value.items()}
    raise ValueError(
        f"{where}: a {type(value).__name__} cannot go into config.yaml (numbers, strings, booleans, None, paths, "
        "lists and mappings of them); pass str(value) or leave it out"
    )


def _identity(params: dict[str, Any], key: str, given: Any) -> Any:
    """The run's ``seed`` or ``name``: ``given``, or the config's; the config's own (if any) must agree and is taken
    out of ``params`` (config.yaml holds it once, at the top)."""
    if key not in params:
        return given
    own = params.pop(key)
    if given is not None and own != given:
        raise ValueError(f"config[{key!r}] is {own!r} but {key}={given!r}: a run has one {key}")
    return own


def _check_readable(document: dict[str, Any]) -> None:
    """config.yaml must read back as written (by ``ls``, ``show`` and ``report``, within their bounds)."""
    text = dump_yaml(document)
    try:
        back = parse_yaml(text, "config")
    except ConfigError as err:  # past the bounds every config.yaml is read within
        raise ValueError(str(err)) from None
    if repr(back) != repr(document):
        raise ValueError("config: does not read back from YAML as given (a float nan in a key?)")


def _number(value: Any, where: str) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: a number (or a 0-d tensor), got {type(value).__name__}") from None
