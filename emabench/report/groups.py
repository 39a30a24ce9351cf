"""Groups: the runs that differ only in their seed. Models are compared with ``raw`` *within* a group, paired by
seed; by default the groups are every config key that varies between the runs, plus ``ema.beta`` (``--by`` picks
the keys). Runs of different tasks are never compared: ``task`` is a group key whenever the runs hold more than one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd

from emabench.errors import ConfigError
from emabench.report.collect import ALIASES, SHORT_NAMES, did_you_mean

IDENTITY_KEYS = ("seed", "name")  # keys that identify a run but are never a "setting" to group by
TOP_LEVEL_KEYS = ("device", "task", "averagers")  # undotted config keys that are settings (averagers: their names)
BASELINE = "raw"
NOT_SETTINGS = ("report.",)  # config keys that are never a setting to group by


def config_keys(runs: pd.DataFrame) -> list[str]:
    """The runs' config keys (dotted, and the few top-level ones); ``report.*`` says how to report, not what ran."""
    return [
        c
        for c in runs.columns
        if ("." in c or c in (*IDENTITY_KEYS, *TOP_LEVEL_KEYS)) and not c.startswith(NOT_SETTINGS)
    ]


def group_keys(runs: pd.DataFrame) -> list[str]:
    """Config keys whose values differ between runs (the swept settings), plus ``ema.beta`` always; less a key whose
    value follows from an earlier one's (a sweep over ``train.optimizer.name`` whose ``by_name`` gives each optimizer
    its own ``lr``: the name groups the runs, and ``lr`` varies with it rather than beside it)."""
    varying = [k for k in config_keys(runs) if k not in IDENTITY_KEYS and runs[k].astype(str).nunique() > 1]
    keys = (["ema.beta"] if "ema.beta" in runs.columns else []) + [k for k in varying if k != "ema.beta"]
    text = runs[keys].astype(str)
    return [k for i, k in enumerate(keys) if not any(text.groupby(j)[k].nunique().max() == 1 for j in keys[:i])]


def _with_task(runs: pd.DataFrame, keys: list[str]) -> list[str]:
    """``keys``, with ``task`` in front when the runs hold several tasks (their metrics cannot be compared)."""
    if "task" in runs.columns and runs["task"].nunique() > 1 and "task" not in keys:
        return ["task", *keys]
    return keys


def resolve_by(runs: pd.DataFrame, by: Sequence[str] | None) -> list[str]:
    """The group keys: ``by`` (aliases like ``beta`` allowed) checked against the runs' config, or the swept keys.

    Refuses a grouping that leaves two runs of one seed in a group (they differ in a key not grouped by)."""
    if not by:
        keys = group_keys(runs)
    else:
        keys = list(dict.fromkeys(ALIASES.get(k, k) for k in by))
        for key in keys:
            if key == "seed":
                raise ConfigError("--by seed: models are compared paired by seed, so seed cannot group runs")
            if key not in config_keys(runs):
                raise ConfigError(f"--by: unknown key {key!r}{did_you_mean(key, config_keys(runs))}")
    keys = _with_task(runs, keys)
    for label, group in iter_groups(runs, keys):
        if group.duplicated(["seed", "model"]).any():
            others = [k for k in config_keys(runs) if k not in (*keys, "seed")]
            differ = differing_keys(group, others)
            raise ConfigError(
                f"--by {' '.join(keys) or '(none)'}: group {label} holds several runs per seed that differ in "
                f"{differ or 'their config'}; add --by for those keys or filter with --where KEY=VALUE"
            )
    return keys


SHOWN_KEYS = 6  # a refusal names this many differing keys, then a count


def differing_keys(group: pd.DataFrame, keys: Sequence[str]) -> str:
    """The ``keys`` whose values differ within ``group``, as ``--by``/``--where`` take them (short names; a dotted key
    left out when its first part is itself a differing key, as ``averagers.swa.kind`` under ``averagers``), at most
    :data:`SHOWN_KEYS` of them and a count."""
    differ = [k for k in keys if group[k].astype(str).nunique() > 1]
    tops = set(differ)
    shown = [SHORT_NAMES.get(k, k) for k in differ if k.split(".", 1)[0] not in tops or "." not in k]
    more = f" and {len(shown) - SHOWN_KEYS} more" if len(shown) > SHOWN_KEYS else ""
    return ", ".join(shown[:SHOWN_KEYS]) + more


def group_label(keys: Sequence[str], values: Sequence[Any]) -> str:
    """``beta=0.99, data.noise=0.1``; ``all runs`` without keys."""
    return ", ".join(f"{SHORT_NAMES.get(k, k)}={plain_value(v)}" for k, v in zip(keys, values)) or "all runs"


def plain_value(value: Any) -> str:
    """How a config value is shown: floats with :g (``0.1``, ``0.999``), anything else as its str."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def iter_groups(runs: pd.DataFrame, by: Sequence[str]) -> Iterator[tuple[str, pd.DataFrame]]:
    if not by:
        yield group_label([], []), runs
        return
    for key, group in runs.groupby(list(by), sort=True, dropna=False):
        yield group_label(by, key if isinstance(key, tuple) else (key,)), group


def model_order(runs: pd.DataFrame, baseline: str = BASELINE) -> list[str]:
    """The ``baseline`` model first, then the other models in order of appearance."""
    models = list(dict.fromkeys(runs["model"]))
    return sorted(models, key=lambda m: (m != baseline, models.index(m)))


def with_groups(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """``frame`` with a ``group`` label column."""
    labels = [group_label(by, values) for values in frame[list(by)].itertuples(index=False)] if by else None
    return frame.assign(group=labels if by else group_label([], []))


def group_values(runs: pd.DataFrame, by: Sequence[str]) -> list[tuple[Any, ...]]:
    """The key values of every group, in the order of :func:`iter_groups`."""
    if not by:
        return [()]
    return [k if isinstance(k, tuple) else (k,) for k, _ in runs.groupby(list(by), sort=True, dropna=False)]
