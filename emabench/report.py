"""``emabench report``: read finished run folders (never re-train) and compare every averaged model with raw.

Data flow: run folders → :func:`collect` (a tidy frame, one row per run and model) → :func:`summarize_groups`
(one row per group of runs that differ only in their seed) → CSV / Markdown / terminal renderings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emabench.config import parse_yaml
from emabench.errors import RunError
from emabench.rundir import RunFolder, find_runs
from emabench.tables import FINAL_METRICS

# Keys that identify a run but are never a "setting" to group by.
IDENTITY_KEYS = ("seed", "name")
SHORT_NAMES = {"ema.beta": "beta"}


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"ema": {"beta": 0.9}}`` → ``{"ema.beta": 0.9}``; lists become strings so they can be grouped."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = str(value) if isinstance(value, list) else value
    return flat


@dataclass
class Collection:
    """The finished runs found, as a tidy frame, and the folders skipped with the reason."""

    runs: pd.DataFrame
    skipped: list[tuple[RunFolder, str]] = field(default_factory=list)


def collect(roots: Iterable[str | Path]) -> Collection:
    """One row per (finished run, model): the run's flattened config, its final metrics and status."""
    rows, skipped = [], []
    for folder in find_runs(roots):
        if not folder.is_done:
            skipped.append((folder, folder.status))
            continue
        config = flatten(parse_yaml(folder.read_config_text(), str(folder.path)))
        info = folder.done_info()
        history = folder.read_history()
        for record in folder.read_metrics().to_dict("records"):
            model = record["model"]
            decay = history.get(f"{model}_decay")
            rows.append(
                config
                | {
                    "run_id": folder.name,
                    "run_path": str(folder.path),
                    "status": info.get("status", "completed"),
                    "epochs": int(info.get("epochs", len(history))),
                    "model": model,
                    "decay_reached": float(decay.iloc[-1]) if decay is not None else np.nan,
                }
                | {m: record[m] for m in FINAL_METRICS}
            )
    return Collection(pd.DataFrame(rows), skipped)


def group_keys(runs: pd.DataFrame) -> list[str]:
    """Config keys whose values differ between runs (the swept settings), plus ``ema.beta`` always."""
    config_keys = [c for c in runs.columns if "." in c or c in IDENTITY_KEYS or c == "device"]
    varying = [k for k in config_keys if k not in IDENTITY_KEYS and runs[k].astype(str).nunique() > 1]
    return (["ema.beta"] if "ema.beta" in runs.columns else []) + [k for k in varying if k != "ema.beta"]


def summarize_groups(runs: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per group: ``n_seeds``, mean ± std of every model's final metrics, and for each averaged model
    the mean relative MSE improvement over raw (paired by seed) and the number of seeds where it beat raw."""
    if runs.empty:
        raise RunError("no finished runs to report")
    by = list(by) if by is not None else group_keys(runs)
    models = list(dict.fromkeys(runs["model"]))
    rows = []
    for key, group in runs.groupby(by, sort=True, dropna=False) if by else [((), runs)]:
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = {SHORT_NAMES.get(k, k): v for k, v in zip(by, key)}
        wide = group.pivot_table(index="seed", columns="model", values=[*FINAL_METRICS, "decay_reached"])
        row["n_seeds"] = int(len(wide))
        row["diverged"] = int((group.drop_duplicates("run_id")["status"] == "diverged").sum())
        for model in models:
            for metric in FINAL_METRICS:
                values = wide[(metric, model)] if (metric, model) in wide else pd.Series(dtype=float)
                row[f"{model}_{metric}_mean"] = values.mean()
                row[f"{model}_{metric}_std"] = values.std(ddof=1)
        for model in models[1:] if models[0] == "raw" else models:
            raw, avg = wide[("mse", "raw")], wide[("mse", model)]
            row[f"{model}_mse_improvement_pct"] = float(((raw - avg) / raw * 100.0).mean())
            row[f"{model}_wins"] = int((avg < raw).sum())
            if ("decay_reached", model) in wide:
                row[f"{model}_decay_reached"] = float(wide[("decay_reached", model)].mean())
        rows.append(row)
    return pd.DataFrame(rows)


# --- renderings -------------------------------------------------------------------------------------------------


def display_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Human rows, one per (group, model): ``mean ± std`` of each metric, and for averaged models the paired
    MSE gain over raw and the seeds won."""
    models = [c.removesuffix("_mse_mean") for c in table.columns if c.endswith("_mse_mean")]
    keys = [c for c in table.columns if not any(c.startswith(f"{m}_") for m in models)]
    keys = [k for k in keys if k not in ("n_seeds", "diverged")]
    header = [*keys, "model", "n", "MSE", "MAE", "R2", "MSE gain vs raw", "wins", "decay reached"]
    body = []
    for row in table.to_dict("records"):
        for m in models:
            cells = [_fmt(row[k]) for k in keys] + [m, str(row["n_seeds"])]
            cells += [_pm(row[f"{m}_{k}_mean"], row[f"{m}_{k}_std"], 4) for k in FINAL_METRICS]
            if f"{m}_mse_improvement_pct" in row:
                cells += [f"{row[f'{m}_mse_improvement_pct']:+.1f}%", f"{row[f'{m}_wins']}/{row['n_seeds']}"]
                decay = row.get(f"{m}_decay_reached", np.nan)
                cells.append("" if np.isnan(decay) else f"{decay:.4f}")
            else:
                cells += ["", "", ""]
            body.append(cells)
    return header, body


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _pm(mean: float, std: float, digits: int) -> str:
    if np.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def to_markdown(table: pd.DataFrame, title: str = "emabench report") -> str:
    header, body = display_rows(table)
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    lines += [
        "",
        "Final-epoch validation metrics, mean ± std over seeds (ddof=1). *MSE gain vs raw*: mean over seeds of",
        "(raw − averaged)/raw, paired by seed (negative: the average is worse). *wins*: seeds where the averaged",
        "model's MSE is below raw's. *decay reached*: the EMA decay used at the last update (mean over seeds).",
    ]
    return "\n".join(lines) + "\n"


def to_csv(table: pd.DataFrame) -> str:
    return table.to_csv(index=False, lineterminator="\n")
