"""emabench.track: a loop of one's own writes run folders that ls, show and report read like the runner's own."""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from emabench.cli import app
from emabench.errors import RunError
from emabench.report.collect import collect
from emabench.report.frames import build_report
from emabench.report.specs import compared_columns, task_of, tasks_in
from emabench.runs.folder import RunFolder
from emabench.runs.integrity import problems
from emabench.tasks.declared import DeclaredTask, declare
from emabench.tasks.registry import get_task
from emabench.track import Run, RunFinished


def curve(seed: int, epoch: int, model: str) -> dict[str, float]:
    """Closed-form metrics: the averaged model is ahead of raw by a seed-dependent margin (never a tie)."""
    gain = 0.01 + 0.001 * seed if model == "ema" else 0.0
    return {"val_loss": 1.0 / epoch - gain, "accuracy": 0.8 + 0.01 * math.sin(seed + epoch) + gain}


def track(runs: Path, seed: int, beta: float, epochs: int = 12, **options) -> Run:
    config = {"lr": 0.1, "beta": beta, "seed": seed, "out": Path("out") / "x", "sizes": (64, 32)}
    with Run(name="mine", seed=seed, config=config, task="classification", runs_dir=runs, **options) as run:
        for epoch in range(1, epochs + 1):
            models = {m: curve(seed, epoch, m) for m in ("raw", "ema")}
            models["ema"]["decay"] = beta
            run.log(epoch, models, train_loss=2.0 / epoch, lr=0.1 * 0.7**epoch)
    return run


def test_importing_the_tracker_loads_neither_torch_nor_the_trainer():
    code = "import emabench.track, sys; assert not {'torch', 'emabench.train'} & set(sys.modules), sys.modules.keys()"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_tracked_run_is_an_ordinary_run_folder(tmp_path: Path):
    run = track(tmp_path, seed=3, beta=0.9)
    names = sorted(p.name for p in run.path.iterdir())
    assert names == ["DONE", "config.yaml", "history.csv", "metrics.csv", "task.json"]
    config = yaml.safe_load((run.path / "config.yaml").read_text())
    # the config's own seed is the run's, written once; paths and tuples become plain YAML values
    assert config == {
        "name": "mine",
        "seed": 3,
        "task": "classification",
        "params": {"lr": 0.1, "beta": 0.9, "out": "out/x", "sizes": [64, 32]},
    }
    assert run.path.name.startswith("mine-seed3-")
    history = pd.read_csv(run.path / "history.csv")
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
    assert history["epoch"].tolist() == list(range(1, 13))
    assert history["lr"].iloc[-1] == pytest.approx(0.1 * 0.7**12)
    metrics = pd.read_csv(run.path / "metrics.csv").set_index("model")
    raw, ema = curve(3, 12, "raw")["accuracy"], curve(3, 12, "ema")["accuracy"]
    assert metrics.loc["ema", "accuracy"] == pytest.approx(ema)
    assert metrics.loc["ema", "accuracy_improvement_pct"] == pytest.approx((ema - raw) / raw * 100)
    settled = [curve(3, e, "ema")["val_loss"] for e in range(10, 13)]
    assert metrics.loc["ema", "val_loss_std"] == pytest.approx(statistics.stdev(settled))
    done = json.loads((run.path / "DONE").read_text())
    assert done["status"] == "completed" and done["epochs"] == 12
    for name in ("config.yaml", "history.csv", "metrics.csv", "task.json"):
        assert done["sha256"][name] == hashlib.sha256((run.path / name).read_bytes()).hexdigest()
    assert json.loads((run.path / "task.json").read_text()) == {
        "name": "classification(accuracy)",
        "metrics": {"val_loss": "lower", "accuracy": "higher"},
    }
    assert problems(run.path) == []


def test_ls_show_and_the_reports_collection_read_tracked_runs(tmp_path: Path):
    for seed in range(3):
        for beta in (0.9, 0.99):
            track(tmp_path, seed, beta)
    runner = CliRunner()
    listed = runner.invoke(app, ["ls", "--runs-dir", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert "6 runs (6 completed)" in listed.output
    run_id = sorted(p.name for p in tmp_path.iterdir())[0]
    shown = runner.invoke(app, ["show", run_id, "--runs-dir", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert "params:" in shown.output and "accuracy gain" in shown.output and "macro-F1" not in shown.output
    collection = collect([tmp_path])
    assert set(collection.runs["task"]) == {"classification(accuracy)"}
    assert set(collection.runs["params.beta"]) == {0.9, 0.99}  # the user's config keys are the report's keys
    assert sorted(collection.curves.dropna(subset=["decay"])["decay"].unique()) == [0.9, 0.99]


def test_the_report_takes_each_metrics_direction_from_the_run_folder(tmp_path: Path):
    """Custom metrics, one higher-is-better and one lower-is-better: the report compares each in its own
    direction, as task.json declares it."""
    for seed in range(6):
        with Run(
            name="mt", seed=seed, config={"k": 1}, metrics={"bleu": "higher", "ter": "lower"}, runs_dir=tmp_path
        ) as run:
            for epoch in (1, 2):
                raw = {"val_loss": 1.0 / epoch, "bleu": 20.0 + seed, "ter": 50.0 - seed}
                ema = {"val_loss": 0.9 / epoch, "bleu": 21.0 + seed, "ter": 49.0 - seed}
                run.log(epoch, {"raw": raw, "ema": ema})
    runs = collect([tmp_path]).runs
    task = task_of(runs)
    assert task.name == "custom(bleu:higher, ter:lower)"
    assert compared_columns(task)["final"] == {"bleu": True, "ter": False}
    assert [t.name for t in tasks_in(runs)] == [task.name]
    metrics = pd.read_csv(next(tmp_path.iterdir()) / "metrics.csv").set_index("model")
    assert metrics.loc["ema", "bleu_improvement_pct"] > 0 and metrics.loc["ema", "ter_improvement_pct"] > 0
    comparison = build_report(collect([tmp_path])).comparison
    final = comparison[comparison["selection"] == "final"].set_index("metric")
    assert set(final["task"]) == {"custom(bleu:higher, ter:lower)"}
    assert final.loc["bleu", "higher_is_better"] and not final.loc["ter", "higher_is_better"]
    assert (final["wins"] == 6).all()  # the averaged model wins every seed, in each metric's own direction


def test_an_exception_marks_the_run_failed_and_ctrl_c_interrupted(tmp_path: Path):
    with pytest.raises(ZeroDivisionError), Run(name="f", seed=0, task="regression", runs_dir=tmp_path) as failed:
        failed.log(1, {"raw": {"val_loss": 1.0, "mse": 1.0}})
        _ = 1 / 0
    record = json.loads((failed.path / "FAILED").read_text())
    assert record["error"].startswith("ZeroDivisionError") and "1 / 0" in record["traceback"]
    assert record["epochs"] == 1
    with pytest.raises(KeyboardInterrupt), Run(name="i", seed=0, task="regression", runs_dir=tmp_path) as stopped:
        stopped.log(1, {"raw": {"val_loss": 1.0, "mse": 1.0}})
        raise KeyboardInterrupt
    assert json.loads((stopped.path / "INTERRUPTED").read_text())["epochs"] == 1
    assert not (stopped.path / "DONE").exists() and not (stopped.path / ".lock").exists()
    with (
        pytest.raises(ValueError, match="logged no epoch"),
        Run(name="e", seed=0, task="regression", runs_dir=tmp_path),
    ):
        pass
    statuses = {RunFolder(p).name.split("-")[0]: RunFolder(p).status for p in tmp_path.iterdir()}
    assert statuses == {"f": "failed", "i": "interrupted", "e": "failed"}
    listed = CliRunner().invoke(app, ["ls", "--runs-dir", str(tmp_path)])
    assert "2 failed, 1 interrupted" in listed.output


def test_a_finished_config_is_detected_and_an_unfinished_one_restarts(tmp_path: Path):
    first = track(tmp_path, seed=1, beta=0.9, epochs=2)
    again = Run(
        name="mine",
        seed=1,
        config={"lr": 0.1, "beta": 0.9, "out": "out/x", "sizes": [64, 32]},
        task="classification",
        runs_dir=tmp_path,
    )
    assert again.path == first.path and again.finished  # the id is the config's hash: the same config, the same run
    with pytest.raises(RunFinished, match="finished before"), again:
        pass
    assert track(tmp_path, seed=1, beta=0.99, epochs=2).path != first.path
    assert track(tmp_path, seed=1, beta=0.9, epochs=3, overwrite=True).path == first.path
    assert len(pd.read_csv(first.path / "history.csv")) == 3
    with pytest.raises(KeyboardInterrupt), Run(name="r", seed=0, task="regression", runs_dir=tmp_path) as run:
        run.log(1, {"raw": {"val_loss": 2.0, "mse": 2.0}})
        raise KeyboardInterrupt
    with Run(name="r", seed=0, task="regression", runs_dir=tmp_path) as rerun:  # an interrupted run starts over
        rerun.log(1, {"raw": {"val_loss": 1.0, "mse": 1.0}})
    assert rerun.path == run.path and RunFolder(run.path).status == "completed"


def test_one_run_is_tracked_by_one_block_at_a_time(tmp_path: Path):
    with Run(name="l", seed=0, task="regression", runs_dir=tmp_path) as run:
        with (
            pytest.raises(RunError, match="another process"),
            Run(name="l", seed=0, task="regression", runs_dir=tmp_path),
        ):
            pass
        run.log(1, {"raw": {"val_loss": 1.0, "mse": 1.0}})
    assert RunFolder(run.path).status == "completed"


def test_a_diverged_run_is_marked_so(tmp_path: Path):
    with Run(name="d", seed=0, task="regression", runs_dir=tmp_path) as run:
        run.log(1, {"raw": {"val_loss": 1.0, "mse": 1.0}}, train_loss=1.0)
        run.log(2, {"raw": {"val_loss": 2.0, "mse": 2.0}}, train_loss=float("nan"))
    assert RunFolder(run.path).status == "diverged"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"seed": -1}, "seed: must be an int >= 0"),
        ({"seed": True}, "seed: must be an int >= 0"),
        ({"name": "my run"}, "name: letters, digits"),
        ({"task": "vision"}, "task: must be 'classification', 'regression' or None"),
        ({"task": None}, "give task='classification' or 'regression'"),
        ({"metrics": {"bleu": "up"}}, "metrics['bleu']: must be 'higher' or 'lower'"),
        ({"config": {"device": object()}}, "config['device']: a object cannot go into config.yaml"),
        ({"config": {"a.b": 1}}, "key 'a.b' must be a non-empty string without '.'"),
        ({"config": {"seed": 2}}, "config['seed'] is 2 but seed=0"),
        ({"config": {"x": "y" * 1_000_001}}, "characters of YAML"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(tmp_path: Path, kwargs: dict, message: str):
    arguments = {"name": "b", "seed": 0, "task": "classification", "runs_dir": tmp_path} | kwargs
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        Run(**arguments)
    assert "\n" not in str(raised.value)
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    "epochs,message",
    [
        ([(1, {"ema": {"val_loss": 1.0, "accuracy": 0.5}})], "a mapping with 'raw'"),
        ([(1, {"raw": {"accuracy": 0.5}})], "every model must log 'val_loss'"),
        ([(1, {"raw": {"val_loss": 1.0, "bleu": 0.5}})], "metric 'bleu': no direction"),
        ([(1, {"raw": {"val_loss": 1.0, "accuracy": 0.5}, "ema": {"val_loss": 1.0}})], "every model logs what raw"),
        ([(1, {"raw": {"val_loss": 1.0, "model": 0.5}})], "'model' is a column emabench uses"),
        ([(1, {"raw": {"val_loss": 1.0, "accuracy": "high"}})], "raw.accuracy: a number"),
        ([(0, {"raw": {"val_loss": 1.0, "accuracy": 0.5}})], "epoch: must be an int >= 1"),
        (
            [(2, {"raw": {"val_loss": 1.0, "accuracy": 0.5}}), (2, {"raw": {"val_loss": 1.0, "accuracy": 0.5}})],
            "epoch 2: must follow epoch 2",
        ),
        (
            [(1, {"raw": {"val_loss": 1.0, "accuracy": 0.5}}), (2, {"raw": {"val_loss": 1.0}})],
            "log what the first epoch did",
        ),
    ],
)
def test_bad_epochs_are_refused_in_one_line(tmp_path: Path, epochs: list, message: str):
    with (
        pytest.raises(ValueError, match=re.escape(message)),
        Run(name="b", seed=0, task="classification", runs_dir=tmp_path) as run,
    ):
        for epoch, models in epochs:
            run.log(epoch, models)
    assert RunFolder(run.path).status == "failed"


def test_numbers_may_be_numpy_scalars_and_0d_arrays(tmp_path: Path):
    with Run(name="n", seed=np.int64(0), task="regression", runs_dir=tmp_path) as run:
        run.log(np.int64(1), {"raw": {"val_loss": np.float32(0.5), "mse": np.array(0.25)}}, lr=np.float64(0.1))
    history = pd.read_csv(run.path / "history.csv")
    assert history.loc[0, ["epoch", "raw_val_loss", "raw_mse", "lr"]].tolist() == [1, 0.5, 0.25, 0.1]
    assert math.isnan(history.loc[0, "train_loss"])  # not logged
    assert yaml.safe_load((run.path / "config.yaml").read_text())["seed"] == 0


def test_declared_tasks_are_named_by_their_metrics_and_read_back_from_the_name():
    assert declare("classification", {}, ["val_loss", "accuracy", "f1_macro", "ece"]).name == "classification"
    assert declare("classification", {}, ["accuracy", "val_loss"]).name == "classification(accuracy)"
    mixed = declare("classification", {"top5": "higher"}, ["val_loss", "accuracy", "top5"])
    assert mixed.name == "classification(accuracy, top5:higher)"
    for task in (mixed, declare(None, {"bleu": "higher", "ter": "lower"}, ["val_loss", "bleu", "ter"])):
        back = get_task(task.name)
        assert isinstance(back, DeclaredTask) and back.name == task.name and back.metrics == task.metrics
    assert type(get_task("classification")).__name__ == "Classification"  # the built-in task, loss and all
    with pytest.raises(ValueError, match="'accuracy' is higher-is-better"):
        declare("classification", {"accuracy": "lower"}, ["val_loss", "accuracy"])
    with pytest.raises(ValueError, match="'val_loss' is lower-is-better"):
        get_task("custom(val_loss:higher)")
    with pytest.raises(ValueError, match="given a direction but never logged"):
        declare(None, {"bleu": "higher", "ter": "lower"}, ["val_loss", "bleu"])
    with pytest.raises(ValueError, match="a metric besides val_loss"):
        declare("regression", {}, ["val_loss"])


def test_a_changed_or_planted_task_file_makes_the_folder_damaged(tmp_path: Path):
    run = track(tmp_path, seed=0, beta=0.9, epochs=2)
    (run.path / "task.json").write_text(json.dumps({"name": "classification(accuracy)", "metrics": {}}))
    assert problems(run.path) == ["task.json changed after the run finished"]
    (run.path / "task.json").unlink()
    assert problems(run.path) == ["task.json missing or unreadable"]
    done = json.loads((run.path / "DONE").read_text())
    del done["sha256"]["task.json"]
    (run.path / "DONE").write_text(json.dumps(done))
    assert problems(run.path) == []  # a run folder of the runner's, which has none
    (run.path / "task.json").write_text(json.dumps({"name": "custom(accuracy:lower)"}))
    assert problems(run.path) == ["task.json added after the run finished"]


def test_the_lightning_callback_without_lightning_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "lightning", None)  # what an environment without Lightning gives
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "emabench.integrations.lightning", raising=False)
    import emabench.integrations  # the package itself needs no framework

    with pytest.raises(ImportError, match=re.escape("pip install 'emabench[lightning]'")):
        import emabench.integrations.lightning  # noqa: F401
    assert emabench.integrations.__name__ == "emabench.integrations"


def test_emabench_run_does_not_resume_a_tracked_run(tmp_path: Path):
    run = track(tmp_path, seed=0, beta=0.9, epochs=1)
    result = CliRunner().invoke(app, ["run", "--resume", str(run.path)])
    assert result.exit_code == 2
    assert "a run tracked by its own loop (emabench.track); run that loop again instead" in result.output
