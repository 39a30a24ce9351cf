"""``report --versus KEY=VALUE``: does a *setting* help? The runs whose config has ``KEY = VALUE`` are the baseline;
every other value of KEY is compared with it, for each model (raw and each averaged model), on every metric and
selection the averaged-vs-raw comparisons use (final epoch, best epoch, stability). Pure functions of the per-run
frame; no renderer is imported here.

**Pairing.** A run of value v is paired with the baseline run of the same seed AND the same value of every other
grouping key (the report's ``--by`` keys but KEY): ``--versus train.teacher.weight=0.0`` on a sweep of two betas
compares teacher 0.1 with 0.0 at each beta separately, model by model (raw with raw, ema with ema). KEY always joins
the report's grouping (``--by``), so runs of two values of KEY are never one group of the averaged-vs-raw tables.

**Statistics.** Exactly those of the comparisons with the baseline model (:func:`comparisons.paired_long`, i.e.
:func:`stats.compare_models` with value v in place of the compared model and the baseline value in place of the
baseline model): mean ± std and t-intervals of each side, the paired difference ``v − baseline`` with its CI,
unadjusted p-values, wins in the metric's direction (from the task's :class:`~emabench.tasks.base.MetricSpec`); and
on the primary measure a verdict (:mod:`emabench.report.verdicts`).

**Multiplicity: the versus comparisons of a report are a family of their own** (their primary rows decided together,
:func:`verdicts.judge`), apart from the family of the comparisons with the baseline model. Why not one family: the two
answer different questions (which setting to train with; whether to average at a setting), and a reader acts on each
separately; and asking one more question must not change the answers already given: in a joint family, adding
``--versus`` would weaken (and could flip) every verdict of the same runs. The price, said in the report: each family
keeps its own chance of any false claim below α, so over both families together it is below 2α (Bonferroni over
the two).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from emabench.config import parse_yaml
from emabench.errors import ConfigError
from emabench.report.collect import ALIASES, SHORT_NAMES, did_you_mean, matches
from emabench.report.comparisons import ALPHA, measures_text, paired_long
from emabench.report.groups import (
    IDENTITY_KEYS,
    config_keys,
    group_keys,
    group_values,
    iter_groups,
    model_order,
    plain_value,
)
from emabench.report.question import Question
from emabench.report.verdicts import Family, Pair, judge

_BASE = "\x00baseline"  # the baseline side's label inside the comparison; never shown
_LEAD = ("key", "value", "baseline_value", "model", "task", "selection", "set", "metric", "higher_is_better")
_LEAD += ("n_seeds", "n_unpaired", "n_diverged")


@dataclass(frozen=True)
class Versus:
    """The versus comparisons of a report: KEY, the baseline value (as the runs hold it), the other values, the
    other grouping keys (runs are paired by seed within each of their groups), the table (``versus.csv``) and its
    family of primary comparisons."""

    key: str
    baseline: Any
    values: list[Any]
    by: list[str]
    table: pd.DataFrame
    family: Family

    @property
    def title(self) -> str:
        """``train.teacher.weight: each value vs 0``: the report's heading for this section."""
        return f"{key_text(self.key)}: each value vs {plain_value(self.baseline)}"


def key_text(key: str) -> str:
    return SHORT_NAMES.get(key, key)


def parse_versus(text: str, runs: pd.DataFrame) -> tuple[str, Any]:
    """``"train.teacher.weight=0.0"`` → ``("train.teacher.weight", 0.0)``: the key (aliases like ``beta`` allowed)
    and the baseline value as the runs hold it. One-line :class:`ConfigError` when the runs hold several tasks, the
    key is unknown, is ``seed``, does not vary, or no run has the value (the values are listed)."""
    key, sep, raw = text.partition("=")
    key = ALIASES.get(key.strip(), key.strip())
    if not sep or not key or not raw.strip():
        raise ConfigError(f"--versus {text!r}: expected KEY=VALUE, e.g. --versus train.teacher.weight=0.0")
    tasks = sorted(map(str, runs["task"].unique())) if "task" in runs.columns else []
    if len(tasks) > 1:
        raise ConfigError(
            f"--versus: the runs hold several tasks ({', '.join(tasks)}) and a setting is compared within one task; "
            "pick one with --where task=NAME"
        )
    if key == "seed":
        raise ConfigError("--versus seed: runs are paired by seed, so seed cannot be the compared setting")
    if key not in config_keys(runs):
        raise ConfigError(f"--versus: unknown key {key!r}{did_you_mean(key, config_keys(runs))}")
    values = list(pd.unique(runs.drop_duplicates("run_id")[key]))
    if runs[key].astype(str).nunique() < 2:
        varying = [k for k in config_keys(runs) if k not in IDENTITY_KEYS and runs[k].astype(str).nunique() > 1]
        raise ConfigError(
            f"--versus {key_text(key)}: every run has {key_text(key)}={plain_value(values[0])}, so it does not vary "
            f"(keys that vary: {', '.join(map(key_text, varying)) or 'none'})"
        )
    wanted = parse_yaml(raw, f"--versus {key}")
    found = [v for v in values if matches(v, wanted)]
    if not found:
        raise ConfigError(
            f"--versus {key_text(key)}={raw.strip()}: no run has that value; its values are "
            f"{', '.join(plain_value(v) for v in values)}"
        )
    return key, _python(found[0])


def grouping_with(runs: pd.DataFrame, by: Sequence[str] | None, key: str) -> list[str] | None:
    """The report's ``--by`` with KEY in it (``None``: the default grouping, when that already holds KEY)."""
    if by:
        keys = [ALIASES.get(k, k) for k in by]
        return keys if key in keys else [*keys, key]
    default = group_keys(runs)
    return None if key in default else [*default, key]


def versus_table(
    per_run: pd.DataFrame, by: Sequence[str], key: str, baseline: Any, question: Question, alpha: float = ALPHA
) -> Versus:
    """Every value of ``key`` vs ``baseline``, per model, selection and metric, paired by seed within each group of
    the other keys in ``by``; the primary rows decided as a family of their own (module docstring). Columns: the
    other group keys, ``key``, ``value``, ``baseline_value``, ``model``, ``task``, ``selection``, ``set``, ``metric``,
    ``higher_is_better``, ``n_seeds``, ``n_unpaired`` (seeds only one side ran), ``n_diverged`` (diverged runs of
    the two sides), then those of ``comparison.csv`` from ``n`` on (``baseline_*`` the baseline value's, ``diff_*``
    value − baseline)."""
    others = [k for k in by if k != key]
    parts, pairs = [], []
    for (_, group), values in zip(iter_groups(per_run, others), group_values(per_run, others)):
        long, group_pairs = _compare_values(group, key, baseline, alpha)
        if long.empty:
            continue
        for k, v in reversed(list(zip(others, values))):
            long.insert(0, k, v)
        parts.append(long)
        pairs += group_pairs
    if not parts:
        raise ConfigError(
            f"--versus {key_text(key)}={plain_value(baseline)}: no run of another value has the same "
            f"{', '.join(map(key_text, others))} as a baseline run, so nothing can be paired (does {key_text(key)} "
            "vary together with one of them?)"
        )
    table, family = judge(pd.concat(parts, ignore_index=True), pairs, question, alpha, [*others, "value"])
    table = table.drop(columns="baseline")  # the baseline value's text: ``baseline_value`` holds the value
    tested = table[(table["role"] == "primary") & (table["identical_to"] == "")]
    family = replace(family, description=_describe(tested, key, others, family.tests))
    values = [_python(v) for v in pd.unique(table["value"])]
    return Versus(key, baseline, values, others, table, family)


def _compare_values(group: pd.DataFrame, key: str, baseline: Any, alpha: float) -> tuple[pd.DataFrame, list[Pair]]:
    """One group's comparisons of each other value of ``key`` with ``baseline``, model by model, uncorrected; and
    each row's seeds and paired values."""
    is_base = np.array([matches(v, baseline) for v in group[key]], dtype=bool)
    if is_base.all() or not is_base.any():
        return pd.DataFrame(), []
    labels = {_label(v): _python(v) for v in pd.unique(group.loc[~is_base, key])}
    side = np.where(is_base, _BASE, [_label(v) for v in group[key]])
    # compare_models pairs the rows of each "model" with the baseline model's by seed: here the two sides (value,
    # baseline value) play the models' part, within each real model (``compared``)
    frame = group.assign(compared=group["model"].to_numpy(), model=side)
    long, pairs = paired_long(
        frame, group_by=["compared"], models=[_BASE, *labels], baseline=_BASE, alpha=alpha, cross_model=False
    )
    long["_row"] = np.arange(len(long))
    base_models = set(frame.loc[is_base, "compared"])
    long = long[long["compared"].isin(base_models)]  # a model the baseline runs lack is compared with nothing
    runs = frame.drop_duplicates("run_id")
    diverged = runs["status"].eq("diverged").groupby(runs["model"]).sum()
    long = long.rename(columns={"model": "side"}).rename(columns={"compared": "model"})
    long = long.assign(
        n_diverged=[int(diverged.get(_BASE, 0) + diverged.get(side, 0)) for side in long["side"]],
        key=key,
        value=[labels[side] for side in long["side"]],
        baseline_value=baseline,
    )
    ranks = {"model": {m: i for i, m in enumerate(model_order(group))}, "side": {k: i for i, k in enumerate(labels)}}
    long = long.sort_values(["model", "side"], key=lambda column: column.map(ranks[column.name]), kind="stable")
    kept = [pairs[i] for i in long["_row"]]
    long = long.assign(baseline=[plain_value(baseline)] * len(long))
    rest = [c for c in long.columns if c not in (*_LEAD, "side", "_row")]
    return long[[*_LEAD, *rest]].reset_index(drop=True), kept


def _label(value: Any) -> str:
    """A value's identity inside one comparison (its type and repr: ``1`` and ``1.0`` and ``"1"`` stay apart)."""
    value = _python(value)
    return f"{type(value).__name__}:{value!r}"


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _describe(rows: pd.DataFrame, key: str, others: Sequence[str], tests: int) -> str:
    """``the versus comparisons of train.teacher.weight (a family of their own, …): 6 tests (…)``; ``rows``: the
    distinct primary rows."""
    name = key_text(key)
    if not tests:
        return f"the versus comparisons of {name}: none could be tested (fewer than two seed pairs)"
    groups = len(rows[list(others)].drop_duplicates()) if others else 1
    return (
        f"the versus comparisons of {name} (a family of their own, apart from the comparisons with the baseline "
        f"model): {tests} tests ({rows['model'].nunique()} model(s) × {rows['value'].nunique()} value(s) in "
        f"{groups} group(s), each on {measures_text(rows)})"
    )
