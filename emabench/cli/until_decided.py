"""``emabench sweep --until-decided``: train seeds in looks until every primary comparison is decided.

Look ``k`` trains seeds ``0 … n_k − 1`` of every grid point (5, 10, 20, 40, …, capped by ``--max-seeds``: only the
new seeds train, the finished ones are skipped), all into one sweep folder whose ``sweep.json`` records the looks;
then the report of that folder decides with the group-sequential levels (:mod:`emabench.report.sequential`) and the
study stops when no primary comparison is open, or at the cap. ``emabench report`` on the folder later applies the
same looks and levels.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emabench.cli.common import console, exit_interrupted
from emabench.errors import ConfigError

DEFAULT_MAX_SEEDS = 20  # looks at 5, 10, 20 seeds: what a few minutes of a small study buy
SweepLook = Callable[[dict[str, list[Any]], dict[str, Any]], tuple[Path, list[Any], bool]]


def check_options(seeds: str | None, max_seeds: int | None, until_decided: bool, force: bool = False) -> int:
    """``--max-seeds`` only with ``--until-decided``, which chooses the seeds itself and never retrains a look's
    seeds (no ``--force``); returns the cap (0 without ``--until-decided``)."""
    if until_decided and force:
        raise ConfigError("--force: not with --until-decided (each look keeps the seeds already trained)")
    if not until_decided:
        if max_seeds is not None:
            raise ConfigError("--max-seeds: only with --until-decided (it caps the seeds the looks may add)")
        return 0
    if seeds is not None:
        raise ConfigError(
            "--seeds: --until-decided chooses the seeds itself (0, 1, … in looks of 5, 10, 20, … up to --max-seeds); "
            "give --max-seeds instead"
        )
    return max_seeds or DEFAULT_MAX_SEEDS


def run_looks(axes: dict[str, list[Any]], max_seeds: int, train: SweepLook, quiet: bool) -> Path:
    """Train look after look through ``train(axes with seeds, sequential record)`` (the sweep, returning its folder,
    its outcomes and whether Ctrl-C stopped it) and decide after each; returns the sweep folder."""
    from emabench.report.sequential import looks

    counts = looks(max_seeds)
    started = time.perf_counter()
    folder = Path()
    for k, count in enumerate(counts):
        record = {"max_seeds": max_seeds, "alpha": 0.05, "looks": counts[: k + 1]}
        folder, outcomes, stopped = train(axes | {"seed": list(range(count))}, record)
        if stopped:
            exit_interrupted(f"look {k + 1} at {count} seeds; re-run the same command to continue ({folder})")
        report = _decide(folder)
        open_rows = _open(report)
        trained = sum(1 for o in outcomes if o.status != "skipped")
        console.print(
            f"Look {k + 1}/{len(counts)}: {count} seeds ({trained} runs trained, {time.perf_counter() - started:.0f} s "
            f"so far); {_tally(report)}" + (f"; open: {', '.join(open_rows)}" if open_rows else ""),
            highlight=False,
        )
        if not open_rows:
            break
    if not quiet:
        from emabench.cli.report import print_report

        print_report(report)
    stop = "every primary comparison decided" if not open_rows else f"the cap of {max_seeds} seeds reached"
    console.print(f"Stopped after look {k + 1} ({stop}). Report: emabench report {folder}", highlight=False)
    return folder


def _decide(folder: Path) -> Any:
    from emabench.report.collect import collect
    from emabench.report.frames import build_report

    return build_report(collect([folder]), sources=[str(folder)])


def _primary(report: Any) -> Any:
    rows = report.comparison
    return rows[rows["role"] == "primary"] if len(rows) else rows


def _open(report: Any) -> list[str]:
    """``beta=0.999 · ema`` for every primary comparison still inconclusive."""
    from emabench.report.groups import with_groups

    rows = _primary(report)
    rows = with_groups(rows[rows["verdict"] == "inconclusive"], report.by)
    return [f"{group} · {model}" for group, model in zip(rows["group"], rows["model"])]


def _tally(report: Any) -> str:
    """``2 better, 1 equivalent, 1 inconclusive``."""
    counts = _primary(report)["verdict"].value_counts()
    return ", ".join(f"{n} {verdict}" for verdict, n in counts.items()) or "no primary comparison"
