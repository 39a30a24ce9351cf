"""The ``emabench`` command line: this module creates the Typer app and registers the commands; each command lives
in its own module (:mod:`.run`, :mod:`.sweep`, :mod:`.report`, :mod:`.browse` for show and ls, :mod:`.configs`,
:mod:`.bench`) as a plain function whose body checks its input, calls the library and renders the result
(:mod:`.common` holds what they share, the exit codes stated in every ``--help`` among it). The console script
``emabench = "emabench.cli:main"`` and ``python -m emabench`` both land in :func:`main`.
"""

from __future__ import annotations

import gc

import typer

from emabench.cli import bench, browse, configs, report, run, sweep
from emabench.cli.common import EXIT_CODES_HELP
from emabench.cli.memory import keep_freed_memory

app = typer.Typer(
    name="emabench",
    help="Does weight averaging (EMA, Polyak, SWA) help your training, and with which settings?\n\n"
    "Train the seed-001 study (`run`), sweep a grid of settings and seeds (`sweep`), and compare raw vs averaged "
    "models across seeds (`report`). `emabench configs` lists the configs shipped with it.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal width
)
for command, name in (
    (run.run, "run"),
    (sweep.sweep, "sweep"),
    (report.report, "report"),
    (browse.show, "show"),
    (browse.ls, "ls"),
    (configs.configs, "configs"),
    (bench.bench, "bench"),
):
    app.command(name=name, epilog=EXIT_CODES_HELP)(command)


def main() -> None:
    keep_freed_memory()
    try:
        app(prog_name="emabench")
    finally:
        # Leave the interpreter's final garbage collections out: walking torch's objects at exit took 0.45 s here,
        # 0.11 s frozen. Nothing of ours relies on them (files are written atomically and closed; atexit still runs).
        gc.freeze()
