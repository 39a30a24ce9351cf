"""``emabench show`` and ``emabench ls``: one run's config and final table; runs and sweeps with their status."""

from __future__ import annotations

from math import nan
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from emabench.cli.common import STATUS_STYLES, RunsDirOption, console, handles_errors, print_metrics


@handles_errors
def show(
    run: Annotated[str, typer.Argument(help="A run folder, or a run id (or a unique prefix of one) under --runs-dir.")],
    runs_dir: RunsDirOption = Path("runs"),
) -> None:
    """Print one run's config, status and final metrics table."""
    from rich.syntax import Syntax

    from emabench.report import collect

    folder = collect.find_run(run, runs_dir)
    console.print(f"Run folder: [bold]{escape(str(folder.path))}[/]", highlight=False)
    console.print(Syntax(folder.read_config_text().rstrip(), "yaml", theme="ansi_dark", background_color="default"))
    status = folder.status
    style = STATUS_STYLES.get(status, "white")
    if folder.is_done:
        info = folder.done_info()
        console.print(
            f"[{style}]{status}[/]: {info.get('stop_reason', '')} after {info.get('epochs', '?')} epochs, "
            f"{float(info.get('wall_time_s', nan)):.1f} s",
            highlight=False,
        )
        print_metrics(folder)
    else:
        console.print(f"[{style}]{status}[/]: {collect.epochs_so_far(folder)} epochs recorded, no final metrics yet")


@handles_errors
def ls(
    paths: Annotated[list[Path] | None, typer.Argument(help="Folders to list (default: --runs-dir).")] = None,
    runs_dir: RunsDirOption = Path("runs"),
) -> None:
    """List runs and sweeps with their status (completed, diverged, interrupted, incomplete) and epochs."""
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
        table = Table()
        for column in ("run", "status", "epochs", "stop reason", "wall time"):
            table.add_column(column, justify="right" if column in ("epochs", "wall time") else "left")
        for r in part.to_dict("records"):
            style = STATUS_STYLES.get(r["status"], "white")
            wall = "" if r["wall_time_s"] != r["wall_time_s"] else f"{r['wall_time_s']:.1f} s"
            table.add_row(r["run_id"], f"[{style}]{r['status']}[/]", str(r["epochs"]), r["stop_reason"], wall)
        console.print(table)
