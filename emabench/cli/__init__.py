"""The ``emabench`` command line: this module creates the Typer app and registers the commands; each command lives
in its own module (:mod:`.run`, :mod:`.sweep`, :mod:`.report`, :mod:`.browse` for show and ls, :mod:`.bench`) as a
plain function whose body checks its input, calls the library and renders the result (:mod:`.common` holds what
they share). The console script ``emabench = "emabench.cli:app"`` and ``python -m emabench`` both land here.
"""

from __future__ import annotations

import typer

from emabench.cli import bench, browse, report, run, sweep

app = typer.Typer(
    name="emabench",
    help="Does weight averaging (EMA, Polyak, SWA) help your training, and with which settings?\n\n"
    "Train the seed-001 study (`run`), sweep a grid of settings and seeds (`sweep`), and compare raw vs averaged "
    "models across seeds (`report`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal width
)
app.command()(run.run)
app.command()(sweep.sweep)
app.command()(report.report)
app.command()(browse.show)
app.command(name="ls")(browse.ls)
app.command()(bench.bench)


def main() -> None:
    app(prog_name="emabench")
