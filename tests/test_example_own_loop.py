"""The shipped own-loop example (examples/own_loop.py): a pytorch/examples-style script tracked by emabench.track in a
few changed lines, run for two seeds and reported; tracking it changes none of its numbers."""

from __future__ import annotations

import ast
import difflib
import importlib.util
import io
import re
from contextlib import redirect_stdout
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from typer.testing import CliRunner

from emabench.cli import app
from tests.conftest import ROOT

EXAMPLES = ROOT / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def code_lines(name: str) -> list[str]:
    """The script's lines after its module docstring (each file's docstring describes that file)."""
    text = (EXAMPLES / f"{name}.py").read_text()
    return text.splitlines()[ast.parse(text).body[0].end_lineno :]


def test_tracking_the_script_changes_at_most_ten_lines():
    diff = list(difflib.unified_diff(code_lines("own_loop_untracked"), code_lines("own_loop"), lineterm="", n=0))
    added = [line for line in diff if line.startswith("+") and not line.startswith("+++")]
    removed = [line for line in diff if line.startswith("-") and not line.startswith("---")]
    assert len(added) <= 10 and len(removed) <= 10, "\n".join(diff)
    assert any("from emabench.track import Run" in line for line in added)


def test_the_example_runs_for_two_seeds_and_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # the example writes into runs/, as `emabench report` reads by default
    own_loop = load("own_loop")
    for seed in (0, 1):
        with redirect_stdout(io.StringIO()):
            own_loop.main(["--epochs", "2", "--seed", str(seed)])
    folders = sorted((tmp_path / "runs").iterdir())
    assert [f.name.split("-")[2] for f in folders] == ["seed0", "seed1"]
    assert all((f / "DONE").is_file() for f in folders)
    history = pd.read_csv(folders[0] / "history.csv")
    assert list(history.columns) == [
        "epoch",
        "train_loss",
        "lr",
        "raw_val_loss",
        "raw_accuracy",
        "ema_val_loss",
        "ema_accuracy",
        "ema_decay",
    ]
    assert history["lr"].tolist() == pytest.approx([1.0, 0.7])  # Adadelta's lr under StepLR(step_size=1, gamma=0.7)
    result = CliRunner().invoke(app, ["report"])
    assert result.exit_code == 0, result.output
    assert "classification(accuracy)" in result.output


def test_tracking_changes_none_of_the_scripts_numbers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The untracked script prints what the tracked one logs: the same numbers, to the last bit (tracking adds no
    pass over a DataLoader, so no draw from torch's global generator that would move the dropout masks)."""
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with redirect_stdout(printed):
        load("own_loop_untracked").main(["--epochs", "2", "--seed", "3"])
        load("own_loop").main(["--epochs", "2", "--seed", "3"])
    (folder,) = (tmp_path / "runs").iterdir()
    history = pd.read_csv(folder / "history.csv")
    lines = [line for line in printed.getvalue().splitlines() if line.startswith("Epoch")][:2]
    for line, row in zip(lines, history.to_dict("records")):
        raw, ema = (ast.literal_eval(text) for text in re.findall(r"\{[^}]*\}", line))
        assert raw == {"val_loss": row["raw_val_loss"], "accuracy": row["raw_accuracy"]}
        assert ema == {"val_loss": row["ema_val_loss"], "accuracy": row["ema_accuracy"]}


def test_iterating_a_dataloader_draws_from_the_global_generator_unless_it_has_its_own():
    """Why an extra evaluation pass changes a "raw" run: even an unshuffled DataLoader draws its workers' base seed
    from torch's global generator, which dropout draws from too; a loader given its own generator leaves it alone."""
    data = TensorDataset(torch.arange(10.0))
    torch.manual_seed(0)
    untouched = torch.rand(3)
    torch.manual_seed(0)
    list(DataLoader(data, batch_size=5))
    assert not torch.equal(torch.rand(3), untouched)
    torch.manual_seed(0)
    list(DataLoader(data, batch_size=5, generator=torch.Generator()))
    assert torch.equal(torch.rand(3), untouched)
