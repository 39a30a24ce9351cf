"""Tracking's contract that needs neither MLflow nor TensorBoard: ``track:`` never names a run; run folders report
every step of their lifecycle to the process's observer, from whichever process writes them; what the copies call
things; MLflow's batch limits; and a missing extra or an unknown tracker refused in one line before anything
trains. The copies themselves are read back in ``tests/test_tracking_copies.py``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from emabench.cli import app
from emabench.config import Config, identity, with_overrides
from emabench.runs import single
from emabench.runs.folder import RunFolder, find_runs
from emabench.runs.layout import CONFIG, run_id
from emabench.runs.observe import RunObserver, observing
from emabench.runs.sweep import sweep
from emabench.tracking.mlflow_copier import MAX_ENTITIES, MAX_PARAMS, batches
from emabench.tracking.names import Column, Naming, params
from tests.conftest import TINY_SETS

runner = CliRunner()


class Recorder(RunObserver):
    """Appends one line per event to a file, so the events of a ``--jobs`` worker reach the test too."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def _note(self, *parts: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(" ".join(str(p) for p in (os.getpid(), *parts)) + "\n")

    def sweep_started(self, folder: Path, spec: dict[str, Any]) -> None:
        self._note("sweep_started", folder.name)

    def started(self, run: Any, config: Any) -> None:
        self._note("started", run.name, config.seed)

    def resumed(self, run: Any, rows: Any) -> None:
        self._note("resumed", run.name, len(rows))

    def flushed(self, run: Any, rows: Any) -> None:
        self._note("flushed", run.name, rows[-1]["epoch"] if rows else 0)

    def ended(self, run: Any, status: str) -> None:
        self._note("ended", run.name, status)

    def existing(self, run: Any) -> None:
        self._note("existing", run.name)

    def sweep_ended(self, folder: Path, statuses: Any) -> None:
        self._note("sweep_ended", folder.name, ",".join(sorted(statuses)))

    def events(self) -> list[list[str]]:
        return [line.split() for line in Path(self.path).read_text(encoding="utf-8").splitlines()]


def _after(epochs: int):
    """A stop check that says stop once ``epochs`` epochs have been asked about."""
    asked = [0]

    def stop() -> bool:
        asked[0] += 1
        return asked[0] > epochs

    return stop


# --- track: is not the run -------------------------------------------------------------------------------------


def test_track_never_names_a_run_nor_is_written_to_its_config(tiny_config: Config, tmp_path: Path):
    tracked = with_overrides(tiny_config, {"track": ["mlflow", "tensorboard"]})
    assert run_id(tracked.to_dict()) == run_id(tiny_config.to_dict())
    assert identity(tracked.to_dict()) == identity(tiny_config.to_dict())
    first = single.run(tracked, tmp_path, plots=False)
    assert first.status == "completed" and "track" not in (first.folder.path / CONFIG).read_text()
    assert single.run(tiny_config, tmp_path).status == "skipped"  # the same run, finished
    folder_tracked, _ = sweep(tracked, {"seed": [0, 1]}, tmp_path / "s")
    folder_plain, outcomes = sweep(tiny_config, {"seed": [0, 1]}, tmp_path / "s")
    assert folder_tracked == folder_plain and {o.status for o in outcomes} == {"skipped"}


def test_track_is_checked_like_any_key(tmp_path: Path):
    result = runner.invoke(app, ["run", "--set", "track=[wandb]", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2 and "track.0: Input should be 'mlflow' or 'tensorboard'" in result.output
    result = runner.invoke(app, ["sweep", "--seeds", "0-1", "--track", "wandb", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--track: 'wandb' is not one of mlflow, tensorboard" in result.output
    result = runner.invoke(app, ["report", str(tmp_path), "--track", "tensorboard"])
    assert result.exit_code == 2 and "report --track: mlflow only" in result.output
    assert not find_runs([tmp_path])


@pytest.mark.parametrize(
    ("tracker", "module", "extra"),
    [("mlflow", "mlflow", "emabench[mlflow]"), ("tensorboard", "tensorboard.compat.proto.event_pb2", "tensorboard")],
)
def test_a_missing_extra_is_one_line_before_anything_trains(
    tracker: str, module: str, extra: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it raises ImportError
    result = runner.invoke(app, ["run", *sum((["--set", s] for s in TINY_SETS), []), "--track", tracker,
                                 "--runs-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"--track {tracker} needs" in result.output and extra in result.output
    assert len(result.output.strip().splitlines()) == 1 and not find_runs([tmp_path])


# --- the observer sees every step, from the process that writes the folder ------------------------------------


def test_workers_report_the_runs_they_write(tiny_config: Config, tmp_path: Path):
    recorder = Recorder(tmp_path / "events.txt")
    with observing(recorder):
        folder, outcomes = sweep(tiny_config, {"seed": [0, 1, 2]}, tmp_path, jobs=2, engine="process")
    events = recorder.events()
    here = str(os.getpid())
    assert [e[1:] for e in events if e[0] == here] == [
        ["sweep_started", folder.name],
        ["sweep_ended", folder.name, "completed,completed,completed"],
    ]
    names = {o.folder.name for o in outcomes}
    for name in names:
        mine = [e for e in events if len(e) > 2 and e[2] == name]
        assert {e[0] for e in mine} != {here} and len({e[0] for e in mine}) == 1  # one worker wrote it
        kinds = [e[1] for e in mine]
        assert kinds[0] == "started" and kinds[-1] == "ended" and mine[-1][3] == "completed"
        epochs = len(RunFolder(folder / name).read_history())
        assert mine[-2][1:] == ["flushed", name, str(epochs)]  # the last rows reached history.csv before the end


def test_a_resumed_sweep_says_resumed_and_finished_runs_say_existing(tiny_config: Config, tmp_path: Path):
    recorder = Recorder(tmp_path / "events.txt")
    config = with_overrides(tiny_config, {"train.early_stopping.patience": None})
    with observing(recorder):
        sweep(config, {"seed": [0, 1]}, tmp_path, stop=_after(2), checkpoint_every=1)
        sweep(config, {"seed": [0, 1]}, tmp_path)
        folder, _ = sweep(config, {"seed": [0, 1]}, tmp_path)
    names = sorted(f.name for f in find_runs([folder]))
    for name in names:
        mine = [e[1:] for e in recorder.events() if len(e) > 2 and e[2] == name and e[1] != "flushed"]
        assert [e[0] for e in mine] == ["started", "ended", "resumed", "ended", "existing"]
        assert mine[1][2] == "interrupted" and mine[3][2] == "completed"
        checkpoint = int(mine[2][2])  # the rows it continued from: the epochs trained before the stop
        flushed = [int(e[3]) for e in recorder.events() if e[1:3] == ["flushed", name]]
        assert 1 <= checkpoint < len(RunFolder(folder / name).read_history()) and checkpoint in flushed


# --- names, batches ----------------------------------------------------------------------------------------


def test_columns_split_into_models_and_metrics(tiny_config: Config):
    config = with_overrides(
        tiny_config,
        {
            "averagers": {
                "ema_0.99": {"kind": "tf_ema", "beta": 0.99, "update_every": 1},
                "ema_val": {"kind": "tf_ema", "beta": 0.9, "update_every": 1},
            }
        },
    )
    naming = Naming.of(config)
    assert naming.column("ema_val_loss") == Column("ema", "val_loss")  # not ema_val's "loss"
    assert naming.column("ema_val_val_loss") == Column("ema_val", "val_loss")
    assert naming.column("ema_0.99_decay") == Column("ema_0.99", "decay")
    assert naming.column("raw_r2").key == "raw/r2" and naming.column("ema_half_life").key == "ema/half_life"
    assert naming.column("train_loss") == Column(None, "train_loss") and naming.column("lr").key == "lr"
    assert "epoch" not in naming.columns(["epoch", "lr"])


def test_params_are_the_config_flattened_with_the_run_id(tiny_config: Config):
    config = with_overrides(tiny_config, {"track": ["mlflow"]})
    flat = params(config)
    assert flat["ema.beta"] == str(config.ema.beta) and flat["train.optimizer.lr"] == str(config.train.optimizer.lr)
    assert flat["model.hidden_sizes"] == "[64, 32]" and flat["seed"] == "0" and flat["data.n_informative"] == "null"
    assert flat["run_id"] == run_id(config.to_dict()) and not any(k.startswith("track") for k in flat)


def test_batches_keep_mlflow_limits_and_put_the_tags_last():
    params, metrics, tags = [f"p{i}" for i in range(250)], [f"m{i}" for i in range(2500)], ["t0", "t1"]
    out = batches(metrics, params, tags)
    assert all(len(p) <= MAX_PARAMS and len(m) + len(p) + len(t) <= MAX_ENTITIES for m, p, t in out)
    assert [x for b in out for x in b[1]] == params and [x for b in out for x in b[0]] == metrics
    assert out[-1][2] == tags and not any(t for _, _, t in out[:-1])
    assert batches([], [], ["t"]) == [([], [], ["t"])] and len(batches(["m"] * 5, ["p"] * 3, [])) == 1
