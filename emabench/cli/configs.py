"""``emabench configs``: the configs shipped inside the package — list them, or print one to copy and edit."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from emabench.cli.common import console, handles_errors
from emabench.errors import ConfigError


@handles_errors
def configs(
    name: Annotated[
        str | None,
        typer.Argument(help="A shipped config to print, e.g. regression (default: list them all).", show_default=False),
    ] = None,
    defaults: Annotated[
        bool,
        typer.Option(
            "--defaults",
            help="Print the default config: every key with the value it takes when a config leaves it out, the "
            "required ones marked (it loads as it is: `emabench configs --defaults > my.yaml`).",
        ),
    ] = False,
) -> None:
    """List the configs shipped with emabench, or print one (comments included) to copy and edit.

    `emabench configs regression > my.yaml`, edit it, then `emabench run my.yaml`. `emabench run` with no config
    trains the shipped regression.yaml (the seed-001 study). A config needs only a few keys; `--defaults` prints
    every other key with its default.
    """
    from emabench.config import default_config_text, shipped_config_text, shipped_configs

    if defaults:
        if name is not None:
            raise ConfigError(f"give either a config NAME ({name}) or --defaults, not both")
        sys.stdout.write(default_config_text())
        return
    if name is not None:
        sys.stdout.write(shipped_config_text(name))  # verbatim: a redirect gives a file that loads as it is
        return
    table = Table(title="configs shipped with emabench", show_lines=False)
    table.add_column("name", no_wrap=True)
    table.add_column("what it is")
    for shipped in shipped_configs():
        table.add_row(shipped, escape(_summary(shipped_config_text(shipped))))
    console.print(table)
    console.print("Print one: emabench configs NAME (e.g. emabench configs regression > my.yaml)", highlight=False)


def _summary(text: str) -> str:
    """The config's leading comment, as one line (the YAML's own description of itself); a shell command continued
    over two comment lines (``\\`` at the end of the first) is joined back into one."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(" ".join(lines).replace("\\ ", "").split())
