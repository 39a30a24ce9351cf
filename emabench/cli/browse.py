"""``emabench show`` and ``emabench ls``: one run's config and final table; runs and sweeps with their status."""

from __future__ import annotations

import json
from math import nan
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from emabench.cli.common import STATUS_STYLES, RunsDirOption, console, handles_errors
from emabench.cli.tables import print_fitted, print_run_metrics
from emabench.errors import RunError


@handles_errors
def show(
    run: Annotated[
        str,
        typer.Argument(
            help="A run folder's path, or a run id as `emabench ls` prints it (or an unambiguous prefix of one) "
            "under --runs-dir."
        ),
    ],
    runs_dir: RunsDirOption = Path("runs"),
) -> None:
    """Print one run's config, status and final metrics table.

    RUN is a path (runs/sweep-…/regression-seed0-…), a run id from `emabench ls`, or a prefix that matches one run
    only; when several runs match, their paths are listed. The same run id found in several folders (the same
    config trained by `run` and again by a sweep) is one run: the first is shown and the others named. A damaged
    run (a file changed or missing since it finished) exits 3 saying what is wrong.
    """
    from rich.syntax import Syntax

    from emabench.report import collect

    folder, same = collect.find_run(run, runs_dir)
    console.print(f"Run folder: [bold]{escape(str(folder.path))}[/]", highlight=False, soft_wrap=True)
    for other in same:
        console.print(
            f"The same run (same config) is also at {escape(str(other.path))}", highlight=False, soft_wrap=True
        )
    damage = folder.problems()
    if not any(p.startswith(("no config", "config.yaml unreadable")) for p in damage):
        text = folder.read_config_text().rstrip()
        # word_wrap: a line longer than the terminal (a long path, a config written in flow style) wraps at a space
        # instead of being cut off at the edge
        console.print(Syntax(text, "yaml", theme="ansi_dark", background_color="default", word_wrap=True))
    if damage:  # what it holds cannot be trusted: say what is wrong instead of its table
        raise RunError(f"{folder.path}: damaged, {'; '.join(damage)}")
    status = folder.status
    style = STATUS_STYLES.get(status, "white")
    if folder.is_done:
        info = folder.done_info()
        console.print(
            f"[{style}]{status}[/]: {info.get('stop_reason', '')} after {info.get('epochs', '?')} epochs, "
            f"{float(info.get('wall_time_s', nan)):.1f} s",
            highlight=False,
        )
        print_run_metrics(console, folder)
    else:
        console.print(f"[{style}]{status}[/]: {collect.epochs_so_far(folder)} epochs recorded, no final metrics yet")


@handles_errors
def ls(
    paths: Annotated[list[Path] | None, typer.Argument(help="Folders to list (default: --runs-dir).")] = None,
    runs_dir: RunsDirOption = Path("runs"),
) -> None:
    """List runs and sweeps with their status (completed, diverged, failed, interrupted, incomplete, damaged) and
    epochs; the run ids are what `emabench show` takes. A damaged folder (a file changed or missing since the run
    finished, a config that is not valid) is listed with what is wrong."""
    from emabench.report import collect

    roots = paths or [runs_dir]
    runs = collect.inventory(roots)
    if runs.empty:
        console.print(f"No runs under {', '.join(map(str, roots))}.", highlight=False)
        return
    for folder, part in runs.groupby("folder", sort=True):
        counts = ", ".join(f"{n} {status}" for status, n in sorted(part["status"].value_counts().items()))
        kind = "sweep" if part["is_sweep"].iloc[0] else "runs in"
        console.print(f"[bold]{kind} {escape(folder)}[/]: {len(part)} runs ({counts})", highlight=False, soft_wrap=True)
        keys = shown_settings(Path(folder))
        header = ["run", *(SETTING_LABELS.get(k, k) for k in keys), "status", "epochs", "stop reason", "wall time"]
        rows = [
            [
                r["run_id"],
                *run_settings(Path(r["path"]), keys),
                r["status"],
                str(r["epochs"]),
                r["stop_reason"],
                "" if r["wall_time_s"] != r["wall_time_s"] else f"{r['wall_time_s']:.1f} s",
            ]
            for r in part.to_dict("records")
        ]
        rows.sort(key=lambda row: [_order(value) for value in row[1 : 1 + len(keys)]])  # by setting, then by id
        print_fitted(console, header, rows, keep=1, style_of=STATUS_STYLES.get)
        for r in part[part["status"] == "damaged"].to_dict("records"):
            console.print(
                f"[red]damaged[/] {escape(r['run_id'])}: {escape(r['problems'])}", highlight=False, soft_wrap=True
            )


SETTING_LABELS = {"ema.beta": "beta"}  # the rest are shown by their dotted key, as --grid and --where take it


def shown_settings(folder: Path) -> list[str]:
    """The settings ``ls`` shows beside each run id: its seed and EMA beta, then the keys its sweep swept."""
    from emabench.runs.sweep_folder import swept_keys

    return list(dict.fromkeys(["seed", "ema.beta", *swept_keys(folder)]))


def run_settings(path: Path, keys: list[str]) -> list[str]:
    """The values of dotted ``keys`` in a run's ``config.yaml`` (``?`` where it cannot be read)."""
    from emabench.config import parse_yaml
    from emabench.errors import EmabenchError
    from emabench.runs.folder import RunFolder

    try:
        raw = parse_yaml(RunFolder(path).read_config_text(), str(path))
    except EmabenchError:
        raw = None
    values = []
    for key in keys:
        node = raw
        for part in key.split("."):
            node = node.get(part, "?") if isinstance(node, dict) else "?"
        values.append(node if isinstance(node, str) else json.dumps(node))
    return values


def _order(value: str) -> tuple[int, float, str]:
    """Numbers in numeric order (seed 10 after seed 9), anything else after them as text."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)
