"""The report's tables, pure functions of the collected frames: per run (best epoch, stability, decay reached),
the paired comparisons with the baseline (:mod:`.comparisons`, the primary ones decided as one family), the
per-group summary, the blog's run beside ours (:mod:`.published`, seed study only) and the decay reached, gathered
in a :class:`Report` by :func:`build_report`. No renderer is imported here.

Definitions used throughout:

- **task**: each run's ``config.task`` (regression when a config predates it) gives its metrics and which direction
  of each is better (:mod:`.specs`); runs of different tasks are grouped apart and never compared.
- **group**: the runs that differ only in their seed (default: grouped by every config key that varies, plus
  ``ema.beta``; ``--by`` picks the keys). Models are compared with ``raw`` *within* a group, paired by seed.
- **final epoch**: the metrics of the last epoch each run trained (``metrics.csv``), what the seed study reports.
- **best epoch**: each model's metrics at the epoch of its lowest validation loss (``history.csv``). It is picked on
  the validation set itself, so it is optimistic; it is never called "final".
- **stability**: std (ddof=1) of a model's validation loss over epochs ``> burn_in`` (default 9: epochs ≥ 10, the
  same window as ``val_loss_std`` in ``metrics.csv``).
- **decay reached**: the averager's decay at the last epoch (``<model>_decay`` in history) and its half-life
  ``ln 0.5 / ln d`` in updates (:func:`emabench.averaging.half_life`) and in epochs.
- **diverged runs** are counted per group (``n_diverged``) and excluded: their metrics are set to NaN, and the
  statistics drop non-finite values (a pair goes when either side is NaN), so nothing NaN is ever averaged.
- **baseline**: ``raw`` unless ``--baseline`` names another model; every other model is compared with it.
- Statistics come from :mod:`emabench.report.stats` (descriptive: t-intervals at ``1 − alpha``, unadjusted
  p-values) and :mod:`emabench.report.verdicts` (the primary question of :mod:`emabench.report.question`, decided as
  one family: better, worse, equivalent, inconclusive, too few seeds).

- **protocols**: with a held-out test set every comparison above is also measured on it: final vs final (the
  primary), each model at its best validation epoch vs the baseline's final weights (early-stopped), and best vs
  best (:mod:`emabench.report.specs`); the test set chose nothing.
- **churn**: per group and model, the share of test samples on which two seeds' predictions differ
  (:mod:`emabench.report.churn`), where the seeds share one test set.
- **versus** (``--versus KEY=VALUE``, optional): each other value of a setting vs VALUE, per model, paired by seed
  and by the other group keys, its primary rows a family of their own (:mod:`emabench.report.versus`).

The columns of each table are listed where they are written (:mod:`emabench.report.files`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from emabench.averaging import half_life
from emabench.errors import ConfigError, InputError
from emabench.report import stats
from emabench.report.churn import churn_table
from emabench.report.collect import ALIASES, Collection
from emabench.report.comparisons import ALPHA, comparison_table, summarize_groups
from emabench.report.groups import iter_groups, model_order, resolve_by, with_groups
from emabench.report.published import reference_table
from emabench.report.question import Question, resolve_question
from emabench.report.specs import STABILITY, metric_columns, tasks_in
from emabench.report.studies import looks_of, split_studies
from emabench.report.verdicts import Family, Looks
from emabench.report.versus import Versus, grouping_with, parse_versus, versus_table
from emabench.results.tables import STABILITY_FROM_EPOCH
from emabench.tasks.base import Task
from emabench.tasks.registry import get_task

DEFAULT_BURN_IN = STABILITY_FROM_EPOCH - 1  # epochs > 9, i.e. from epoch 10 on, as metrics.csv's val_loss_std


# --- per-run numbers from history -------------------------------------------------------------------------------


def per_run_table(runs: pd.DataFrame, curves: pd.DataFrame, burn_in: int = DEFAULT_BURN_IN) -> pd.DataFrame:
    """``runs`` plus, per run and model: best-epoch metrics (its task's), stability after ``burn_in``, the decay
    reached and its half-life. Diverged runs get NaN metrics (counted, never averaged). Models without a history
    (post-hoc syntheses) get NaN for everything read from history."""
    if burn_in < 0:
        raise ConfigError(f"--burn-in: must be >= 0 epochs, got {burn_in}")
    runs = runs if "task" in runs.columns else runs.assign(task="regression")
    tasks = {name: get_task(name) for name in runs["task"].unique()}
    task_of_run = dict(zip(runs["run_id"], runs["task"]))
    extra = {
        (run, model): _from_history(part, burn_in, tasks[task_of_run[run]])
        for (run, model), part in curves.groupby(["run_id", "model"], sort=False)
        if run in task_of_run
    }
    added = pd.DataFrame(
        [extra.get((r, m), _empty(tasks[t])) for r, m, t in zip(runs["run_id"], runs["model"], runs["task"])],
        index=runs.index,
    )
    table = pd.concat([runs, added], axis=1)
    updates = [_updates_per_epoch(row, model) for row, model in zip(table.to_dict("records"), table["model"])]
    table["half_life_epochs"] = table["half_life_updates"] / np.asarray(updates, dtype=float)
    columns = list(dict.fromkeys(c for task in tasks.values() for c in metric_columns(task) if c in table.columns))
    table.loc[table["status"] == "diverged", columns] = np.nan
    return table


def _empty(task: Task) -> dict[str, float]:
    row = {"best_epoch": np.nan, **{f"best_{m}": np.nan for m in task.final_metrics}, STABILITY.name: np.nan}
    return row | {"decay_reached": np.nan, "half_life_updates": np.nan}


def _from_history(curve: pd.DataFrame, burn_in: int, task: Task) -> dict[str, float]:
    curve = curve.sort_values("epoch")
    finite = curve[np.isfinite(curve["val_loss"].to_numpy(float))]
    row = _empty(task)
    if len(finite):
        best = finite.loc[finite["val_loss"].idxmin()]  # first epoch of the minimum on ties (lower loss is better)
        row |= {"best_epoch": float(best["epoch"]), **{f"best_{m}": float(best[m]) for m in task.final_metrics}}
    row[STABILITY.name] = stats.stability(curve, "val_loss", burn_in) if len(curve) else np.nan
    decays = curve["decay"].to_numpy(float)
    decays = decays[np.isfinite(decays)]
    row["decay_reached"] = float(decays[-1]) if decays.size else np.nan
    row["half_life_updates"] = half_life(row["decay_reached"]) if decays.size else np.nan
    return row


def _updates_per_epoch(config: dict[str, Any], model: str) -> float:
    """Optimizer steps per epoch over the averager's ``update_every`` (NaN when the config lacks a key, or
    accumulates gradients: how its last partial step counts is the engine's, not restated here)."""
    try:
        n = int(config["data.n_samples"])
        n_train = n - math.ceil(float(config["data.test_size"]) * n)  # train_test_split's rounding
        steps = math.ceil(n_train / int(config["train.batch_size"]))  # the last partial batch is kept
    except (KeyError, TypeError, ValueError):
        return float("nan")
    accumulation = config.get("train.grad_accumulation", 1)
    if accumulation not in (1, None) and not (isinstance(accumulation, float) and math.isnan(accumulation)):
        return float("nan")
    every = config.get("ema.update_every" if model == "ema" else f"averagers.{model}.update_every", 1)
    every = 1 if every is None or (isinstance(every, float) and math.isnan(every)) else every
    return steps / float(every)


def decay_table(per_run: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per group and averaged model with a decay: the configured beta (when the config has one), and the decay
    reached at the last epoch and its half-life (mean, min, max over non-diverged seeds)."""
    rows = []
    for label, group in iter_groups(per_run, by):
        for model in model_order(group):
            values = group[group["model"] == model]
            decay = values["decay_reached"].to_numpy(float)
            if not np.isfinite(decay).any():
                continue
            configured = _configured_beta(values, model)
            rows.append(
                {"group": label, "model": model, "configured_beta": configured, "n": int(np.isfinite(decay).sum())}
                | {"decay_mean": _finite_mean(values["decay_reached"])}
                | {"decay_min": float(np.nanmin(decay)), "decay_max": float(np.nanmax(decay))}
                | {"half_life_updates_mean": _finite_mean(values["half_life_updates"])}
                | {"half_life_epochs_mean": _finite_mean(values["half_life_epochs"])}
                | {"epochs_mean": _finite_mean(values.loc[values["status"] != "diverged", "epochs"].astype(float))}
            )
    return pd.DataFrame(rows)


def _configured_beta(values: pd.DataFrame, model: str) -> float:
    column = "ema.beta" if model == "ema" else f"averagers.{model}.beta"
    if column not in values.columns:
        return float("nan")
    configured = pd.to_numeric(values[column], errors="coerce").dropna().unique()
    return float(configured[0]) if len(configured) == 1 else float("nan")


# --- the report -------------------------------------------------------------------------------------------------


def _finite_mean(values: pd.Series) -> float:
    finite = values.to_numpy(float)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else float("nan")


@dataclass
class Report:
    """Everything the renderings need; pure data."""

    by: list[str]
    per_run: pd.DataFrame  # per_run.csv, with a ``group`` label column
    curves: pd.DataFrame  # non-diverged runs' curves, with ``group``, ``seed``, ``status`` and ``task``
    comparison: pd.DataFrame  # comparison.csv (every comparison described; the primary ones with verdicts)
    summary: pd.DataFrame  # report.csv
    reference: pd.DataFrame  # the blog's run beside ours: seed-study groups only, else empty
    decay: pd.DataFrame
    burn_in: int
    alpha: float
    family: Family  # the primary comparisons, decided together
    question: Question  # the primary measure per task, its margin, and the baseline model
    looks: Looks | None  # a sequential study's looks (``sweep --until-decided``), else None
    tasks: list[Task] = field(default_factory=list)  # the tasks of the report's runs
    sources: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (folder, status)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (kept, dropped): the same config twice
    versus: Versus | None = None  # ``--versus KEY=VALUE``: each value of a setting vs one, a family of their own
    churn: pd.DataFrame = field(default_factory=pd.DataFrame)  # test-set disagreement between seeds (:mod:`.churn`)


def build_report(
    collection: Collection,
    by: Sequence[str] | None = None,
    burn_in: int = DEFAULT_BURN_IN,
    alpha: float = ALPHA,
    sources: Sequence[str] = (),
    versus: str | None = None,
    primary: str | None = None,
    margin: str | None = None,
    baseline: str | None = None,
) -> Report:
    """All statistics of the report from a :class:`Collection` (see the module docstring); with ``versus``
    (``KEY=VALUE``) also each other value of KEY vs VALUE (:mod:`emabench.report.versus`; KEY joins ``by``).
    ``primary``, ``margin``, ``baseline``: the command line's choices of
    :func:`~emabench.report.question.resolve_question` (None: the runs' config, else the defaults)."""
    if collection.runs.empty:
        raise InputError(f"no finished runs under {', '.join(sources) or 'the given folders'}")
    target = parse_versus(versus, collection.runs) if versus else None
    keys = resolve_by(collection.runs, grouping_with(collection.runs, by, target[0]) if target else by)
    runs = collection.runs.sort_values([*keys, "seed"], kind="stable") if keys else collection.runs
    per_run = with_groups(per_run_table(runs.reset_index(drop=True), collection.curves, burn_in), keys)
    question = resolve_question(per_run, tasks_in(per_run), primary, margin, check_baseline(per_run, baseline))
    looks = looks_of(collection)
    comparison, family = comparison_table(per_run, keys, question, alpha, looks)
    run_info = per_run.drop_duplicates("run_id").set_index("run_id")[["group", "seed", "status", "task"]]
    curves = collection.curves[collection.curves["run_id"].isin(run_info.index)].join(run_info, on="run_id")
    order = {run: i for i, run in enumerate(run_info.index)}  # the groups' order, as in the tables
    curves = curves.sort_values("run_id", key=lambda s: s.map(order), kind="stable")
    churn = churn_table(per_run, collection.predictions, keys)
    return Report(
        by=keys,
        per_run=per_run,
        curves=curves[curves["status"] != "diverged"].reset_index(drop=True),
        comparison=comparison,
        summary=summarize_groups(per_run, keys, comparison, question.baseline, alpha, churn),
        reference=reference_table(per_run, keys),
        decay=decay_table(per_run, keys),
        burn_in=burn_in,
        alpha=alpha,
        family=family,
        question=question,
        looks=looks,
        tasks=tasks_in(per_run),
        sources=list(sources),
        skipped=[(str(folder.path), status) for folder, status in collection.skipped],
        duplicates=[(str(kept.path), str(dropped.path)) for kept, dropped in collection.duplicates],
        versus=versus_table(per_run, keys, *target, question, alpha) if target else None,
        churn=churn,
    )


def check_baseline(per_run: pd.DataFrame, baseline: str | None) -> str | None:
    """``--baseline``: a model the runs have (one-line :class:`ConfigError` listing them), or None."""
    if baseline is None:
        return None
    models = list(dict.fromkeys(per_run["model"]))
    if baseline not in models:
        raise ConfigError(f"--baseline: no model {baseline!r} in these runs (models: {', '.join(models)})")
    return baseline


@dataclass
class Study:
    """One study's report (:mod:`emabench.report.studies`); ``label`` is empty when the runs hold only one."""

    label: str
    report: Report


def build_studies(collection: Collection, versus: str | None = None, **options: Any) -> list[Study]:
    """A :class:`Report` per study of the collection (one, unlabelled, when it holds one): ``options`` are
    :func:`build_report`'s. ``versus`` goes to the studies whose runs have its key (all of them if none does, so
    that the refusal names the key)."""
    parts = split_studies(collection)
    if len(parts) == 1:
        return [Study("", build_report(collection, versus=versus, **options))]
    key = versus.partition("=")[0].strip() if versus else ""
    asked = [label for label, part in parts if _varies(part.runs, key)] or [label for label, _ in parts]
    return [
        Study(label, build_report(part, versus=versus if label in asked else None, **options)) for label, part in parts
    ]


def _varies(runs: pd.DataFrame, key: str) -> bool:
    key = ALIASES.get(key, key)
    return bool(key) and key in runs.columns and runs[key].astype(str).nunique() > 1
