"""Every command block of every ``docs/`` page runs, in order, as the page writes it.

Each page runs in an empty folder of its own holding a copy of ``configs/`` and ``examples/``; its ``bash`` blocks
run one after the other, each line through the CLI (``emabench …`` and ``python -m emabench …`` through typer's
``CliRunner``, ``make run`` as the Makefile's recipe), with what a shell would do done here: ``\\`` continues a line,
``#`` starts a comment, ``&&`` chains, ``> FILE`` redirects the output, a glob expands to the paths it matches, and
``RUN_ID`` is the first run id the last ``emabench ls`` printed. A page may mark a block, in an HTML comment on the
line above it, with its reason in the comment:

- ``<!-- docs-test: slow (why) -->``: run by the slow test only (``make test-slow``);
- ``<!-- docs-test: skip (why) -->``: not run (it needs Ray, a cluster, several minutes of measurement);
- ``<!-- docs-test: file NAME -->`` above a non-shell block: its text is written to ``NAME`` for the commands after.

The ONLY deviation from the page: every config a command loads is cut to :data:`EPOCHS` epochs and at most
:data:`SAMPLES` generated samples (with what that needs: an SWA start, a post-hoc snapshot interval, a warm-up within
that length), so that the default suite stays quick. No page may speak of issues or of how the project was built.
"""

from __future__ import annotations

import glob
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import emabench.config
from emabench.cli import app
from emabench.config import Config, with_overrides

from .conftest import ROOT

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
MARK = re.compile(r"<!--\s*docs-test:\s*(skip|slow|file)\b\s*(.*?)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")
RUN_ID = re.compile(r"\b[A-Za-z0-9][\w.-]*-seed\d+-[0-9a-f]{8}\b")
EPOCHS, SAMPLES = 3, 300

runner = CliRunner()


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    mark: str  # "", "skip", "slow" or "file"
    note: str  # the mark's reason, or the file name


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, each with the ``docs-test`` mark on the line above it (if any)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, index = [], 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        above = MARK.search(lines[index - 1]) if index else None
        mark, note = (above.group(1), above.group(2)) if above else ("", "")
        found.append(Block(page.name, index + 1, fence.group(1), "\n".join(lines[index + 1 : end]), mark, note))
        index = end + 1
    return found


def commands(block: Block) -> list[str]:
    """A shell block's commands: continuations joined, comments dropped, ``&&`` chains split."""
    joined = re.sub(r"\\\n", " ", block.text)
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        command: list[str] = []
        for word in [*words, "&&"]:
            if word == "&&":
                out.append(shlex.join(command))
                command = []
            else:
                command.append(word)
    return out


def make_run_recipe() -> list[str]:
    recipe = (ROOT / "Makefile").read_text(encoding="utf-8").split("\nrun:", 1)[1].splitlines()[1]
    return shlex.split(recipe)[1:]


def shortened(config: Config) -> Config:
    """``config`` cut to :data:`EPOCHS` epochs and :data:`SAMPLES` generated samples, and what that needs."""
    cut: dict[str, Any] = {}
    if config.train.max_epochs > EPOCHS:
        cut["train.max_epochs"] = EPOCHS
    if config.data.source in ("make_regression", "make_classification") and config.data.n_samples > SAMPLES:
        cut["data.n_samples"] = SAMPLES
    # a faster EMA warm-up: within so few steps the seed's decay would stay below 0.99, and a sweep's betas 0.99 and
    # 0.999 would be one run, trained once (as they are not at full length)
    cut["ema.inv_gamma"] = 0.01
    cut["ema.update_after_step"] = min(config.ema.update_after_step, 5)
    schedule = config.train.lr_schedule
    if schedule.warmup:
        cut["train.lr_schedule.warmup"] = min(schedule.warmup, 1 if schedule.per == "epoch" else 10)
    if config.train.swa_lr is not None and config.train.swa_lr.start_epoch >= EPOCHS:
        cut["train.swa_lr.start_epoch"] = 1
    for name, spec in config.averagers.items():
        if spec.kind == "swa" and spec.start_epoch >= EPOCHS:
            cut[f"averagers.{name}.start_epoch"] = 1
        if spec.kind == "posthoc":
            cut[f"averagers.{name}.snapshot_every"] = min(spec.snapshot_every, 5)
    return with_overrides(config, cut) if cut else config


def run_page(page: Path, folder: Path, monkeypatch: pytest.MonkeyPatch, marks: set[str]) -> int:
    """Run the page's shell blocks whose mark is in ``marks`` (and write its ``file`` blocks); the commands run."""
    shutil.copytree(ROOT / "configs", folder / "configs")
    shutil.copytree(ROOT / "examples", folder / "examples")
    load = emabench.config.load_config
    monkeypatch.setattr(emabench.config, "load_config", lambda *a, **k: shortened(load(*a, **k)))
    monkeypatch.chdir(folder)
    state: dict[str, str] = {}
    count = 0
    for block in blocks(page):
        if block.mark == "file":
            (folder / block.note).write_text(block.text + "\n", encoding="utf-8")
        elif block.language == "bash" and block.mark in marks:
            for command in commands(block):
                run_command(command, block, folder, state)
                count += 1
    return count


def run_command(command: str, block: Block, folder: Path, state: dict[str, str]) -> None:
    where = f"{block.page}:{block.line}: {command}"
    words = shlex.split(command)
    output = None
    if ">" in words:
        at = words.index(">")
        words, output = words[:at], words[at + 1]
    if words == ["source", ".venv/bin/activate"]:
        return  # the shell's PATH: the commands below run through the CLI itself
    if words == ["make", "run"]:
        args = make_run_recipe()
    elif words[0] == "emabench":
        args = words[1:]
    elif words[:3] == ["python", "-m", "emabench"]:
        args = words[3:]
    else:
        pytest.fail(f"{where}: not a command this test runs; mark its block <!-- docs-test: skip (why) -->")
    args = [_expanded(arg, state, folder, where) for arg in args]
    result = runner.invoke(app, [a for arg in args for a in arg])
    assert result.exit_code == 0, f"{where} → exit {result.exit_code}\n{result.output}"
    if output is not None:
        (folder / output).write_text(result.stdout, encoding="utf-8")
    if args and args[0] == ["ls"]:
        state["ls"] = result.output


def _expanded(arg: str, state: dict[str, str], folder: Path, where: str) -> list[str]:
    if arg == "RUN_ID":
        match = RUN_ID.search(state.get("ls", ""))
        assert match, f"{where}: RUN_ID, but no `emabench ls` before it printed a run id"
        return [match.group(0)]
    if any(c in arg for c in "*?["):
        matches = sorted(glob.glob(arg, root_dir=folder))
        assert matches, f"{where}: {arg} matches nothing"
        return [m + "/" if arg.endswith("/") and not m.endswith("/") else m for m in matches]
    return [arg]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_a_pages_commands_run_in_order(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_page(page, tmp_path, monkeypatch, {""})


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_a_pages_commands_run_in_order_slow_ones_too(page, tmp_path, monkeypatch) -> None:
    run_page(page, tmp_path, monkeypatch, {"", "slow"})


def test_every_page_is_linked_and_every_mark_says_why() -> None:
    """Every page is reached from the README (directly or through another page), every skip says why."""
    texts = {page.name: page.read_text(encoding="utf-8") for page in PAGES}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in PAGES:
        linked = f"docs/{page.name}" in readme or any(f"]({page.name}" in t for n, t in texts.items() if n != page.name)
        assert linked, f"{page.name}: no link to it from README.md or another page"
    for page in PAGES:
        for block in blocks(page):
            assert block.mark != "skip" or len(block.note) > 10, f"{page.name}:{block.line}: say why it is skipped"
            assert block.mark != "file" or block.language != "bash", f"{page.name}:{block.line}"
    quick = {p.name for p in PAGES for b in blocks(p) if b.language == "bash" and b.mark == ""}
    assert quick >= {"command-line.md", "configs.md", "report.md"}  # the quick suite runs a block of each


HISTORY = re.compile(r"\bissues?\s*#?\d+|\(issue\b|\bsessions?\b|\bticket", re.IGNORECASE)


@pytest.mark.parametrize(
    "path", [ROOT / "README.md", *PAGES, *sorted((ROOT / "emabench" / "configs").iterdir())], ids=lambda p: p.name
)
def test_no_page_speaks_of_how_the_project_was_built(path: Path) -> None:
    """The pages and the shipped configs (``emabench configs`` prints their comments) speak of emabench, not of the
    issues, tickets or sessions it was built in."""
    found = [line for line in path.read_text(encoding="utf-8").splitlines() if HISTORY.search(line)]
    assert found == [], found
