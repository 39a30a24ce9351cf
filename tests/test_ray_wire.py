"""What a Ray task sends and what the driver writes, without Ray: a task's run-folder calls go through
:class:`~emabench.runs.ray_task.RemoteRun` into the :class:`~emabench.runs.ray_ledger.Ledger`, and the driver applies
the drained calls to real run folders (:class:`~emabench.runs.ray_executor.UnitInFlight`). The files must be the
local engines' files, a retry after a lost attempt must continue from the last checkpoint the driver received, and
a failed run must be listed and counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from emabench.config import Config, with_overrides
from emabench.runs.encoding import decode_checkpoint
from emabench.runs.folder import RunFolder, find_runs
from emabench.runs.layout import CHECKPOINT
from emabench.runs.plan import Unit
from emabench.runs.ray_executor import UnitInFlight
from emabench.runs.ray_ledger import Ledger
from emabench.runs.ray_task import RemoteRun
from emabench.runs.unit import train_stack

RAY_KEYS = {"ray_attempt", "ray_node", "wall_time_s"}  # what DONE may add or change on the Ray path


class NodeLost(Exception):
    """Stands for a node that dies: the task stops and sends nothing more."""


class LocalCourier:
    """The task side of :class:`~emabench.runs.ray_task.Courier` without Ray: posts straight into the ledger, every
    epoch, until ``lose_after`` epochs have been flushed (then the "node" is lost)."""

    def __init__(self, ledger: Ledger, key: int, lose_after: int | None = None) -> None:
        self.ledger, self.key, self.lose_after = ledger, key, lose_after
        self.start = ledger.begin(key, f"node-{key}")
        self.attempt, self.node = self.start["attempt"], f"node-{key}"
        self.events: list[Any] = []
        self.flushes = 0

    def add(self, index: int, kind: str, payload: Any) -> None:
        self.events.append((index, kind, payload))

    def flush(self, force: bool = False) -> None:
        if self.lose_after is not None and self.flushes == self.lose_after:
            raise NodeLost
        self.flushes += 1
        self.ledger.post(self.key, self.attempt, self.events)
        self.events = []


def configs(tiny_config: Config) -> list[Config]:
    """Three runs of one stack; the first stops early, so it finishes while the others train on."""
    base = with_overrides(tiny_config, {"train.max_epochs": 9, "train.early_stopping.patience": None})
    return [
        with_overrides(base, {"train.max_epochs": 3, "seed": 0}),
        *(with_overrides(base, {"seed": s}) for s in (1, 2)),
    ]


def remote_attempt(ledger: Ledger, runs: list[Config], lose_after: int | None = None, **kwargs: Any) -> LocalCourier:
    """One attempt of unit 0 as a task would run it: where to start from the ledger, calls through RemoteRun."""
    courier = LocalCourier(ledger, 0, lose_after)
    todo, checkpoints = courier.start["runs"], courier.start["checkpoints"]
    proxies = [RemoteRun(courier, i, runs[i].to_dict(), checkpoints.get(i)) for i in todo]
    stack = [runs[i] for i in todo]
    try:
        train_stack(stack, proxies, resume=bool(checkpoints), plots=False, flush=courier.flush, **kwargs)  # type: ignore[arg-type]
    except NodeLost:
        return courier
    courier.flush(force=True)
    return courier


def apply_drained(ledger: Ledger, unit: UnitInFlight) -> None:
    """The driver's side: every drained call applied to the real folders, in order."""
    for entry in ledger.drain():
        if entry[0] == "call":
            unit.apply(*entry[2:])
        else:
            unit.attempts = entry[2]


def in_flight(runs: list[Config], root: Path) -> UnitInFlight:
    folders = [RunFolder.for_config(c, root) for c in runs]
    return UnitInFlight(0, Unit(runs, False), folders, locks=[])


def assert_same_folders(local: Path, remote: Path) -> None:
    a, b = find_runs([local]), find_runs([remote])
    assert [f.name for f in a] == [f.name for f in b] and a
    for x, y in zip(a, b):
        for name in ("config.yaml", "history.csv", "metrics.csv"):
            assert (x.path / name).read_bytes() == (y.path / name).read_bytes(), (x.name, name)
        info_x, info_y = x.done_info(), y.done_info()
        assert {k: v for k, v in info_x.items() if k not in RAY_KEYS} == {
            k: v for k, v in info_y.items() if k not in RAY_KEYS
        }
        assert sorted(p.name for p in x.path.iterdir()) == sorted(p.name for p in y.path.iterdir())


def test_the_driver_writes_the_local_engines_files(tiny_config: Config, tmp_path: Path):
    runs = configs(tiny_config)
    train_stack(runs, [RunFolder.for_config(c, tmp_path / "local") for c in runs], checkpoint_every=2, plots=False)
    ledger = Ledger()
    ledger.register(0, len(runs))
    unit = in_flight(runs, tmp_path / "remote")
    remote_attempt(ledger, runs, checkpoint_every=2)
    apply_drained(ledger, unit)
    assert_same_folders(tmp_path / "local", tmp_path / "remote")
    assert [unit.outcome(i, "", False).status for i in range(3)] == ["completed"] * 3
    assert all(f.done_info()["ray_attempt"] == 1 for f in find_runs([tmp_path / "remote"]))


def test_an_interrupted_task_leaves_the_local_checkpoint(tiny_config: Config, tmp_path: Path):
    runs = configs(tiny_config)
    asked: list[int] = []

    def stop() -> bool:  # after the fifth epoch, as Ctrl-C would
        asked.append(1)
        return len(asked) > 5

    local = [RunFolder.for_config(c, tmp_path / "local") for c in runs]
    train_stack(runs, local, stop=stop, checkpoint_every=2, plots=False)
    asked.clear()
    ledger = Ledger()
    ledger.register(0, len(runs))
    unit = in_flight(runs, tmp_path / "remote")
    remote_attempt(ledger, runs, stop=stop, checkpoint_every=2)
    apply_drained(ledger, unit)
    assert [unit.outcome(i, "", False).status for i in range(3)] == ["completed", "interrupted", "interrupted"]
    for x, y in zip(local[1:], unit.folders[1:]):
        assert (x.path / "history.csv").read_bytes() == (y.path / "history.csv").read_bytes()
        saved_x = torch.load(x.path / CHECKPOINT, weights_only=True)
        saved_y = torch.load(y.path / CHECKPOINT, weights_only=True)
        assert saved_x["epoch"] == saved_y["epoch"] == 5
        assert_same_state(saved_x, saved_y)


def assert_same_state(a: Any, b: Any, where: str = "state") -> None:
    if where == "state.wall_time_s":
        return
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), where
    else:
        assert a == b or (a != a and b != b), where  # NaN == NaN in a history row


def test_a_retry_continues_from_the_last_checkpoint_received(tiny_config: Config, tmp_path: Path):
    runs = configs(tiny_config)
    train_stack(runs, [RunFolder.for_config(c, tmp_path / "straight") for c in runs], plots=False)
    ledger = Ledger()
    ledger.register(0, len(runs))
    unit = in_flight(runs, tmp_path / "remote")
    lost = remote_attempt(ledger, runs, lose_after=5, checkpoint_every=2)  # epochs 1-5 reach the driver, 6 is lost
    apply_drained(ledger, unit)
    assert [len(f.read_history()) for f in unit.folders] == [3, 5, 5]  # every row that arrived is on disk
    assert torch.load(unit.folders[1].path / CHECKPOINT, weights_only=True)["epoch"] == 4

    retry = remote_attempt(ledger, runs, checkpoint_every=2)
    assert retry.attempt == 2 and retry.start["runs"] == [1, 2]  # the finished run is not trained again
    resumed = {i: decode_checkpoint(data, "wire") for i, data in retry.start["checkpoints"].items()}
    assert {i: (s["epoch"], len(s["history"])) for i, s in resumed.items()} == {1: (4, 4), 2: (4, 4)}
    apply_drained(ledger, unit)
    assert ledger.post(0, lost.attempt, [(1, "row", {"epoch": 99})])  # a late call of the lost attempt: dropped
    assert ledger.drain() == []
    assert_same_histories(tmp_path / "straight", tmp_path / "remote")
    infos = [f.done_info() for f in unit.folders]
    assert [(i["ray_attempt"], i["resumed_from_epoch"]) for i in infos] == [(1, 0), (2, 4), (2, 4)]
    assert not any(f.has_checkpoint for f in unit.folders)


def assert_same_histories(a: Path, b: Path) -> None:
    runs_a, runs_b = find_runs([a]), find_runs([b])
    assert [r.name for r in runs_a] == [r.name for r in runs_b]
    for x, y in zip(runs_a, runs_b):
        pd.testing.assert_frame_equal(x.read_history(), y.read_history(), check_exact=True)


def test_a_failed_run_is_listed_counted_and_keeps_its_checkpoint(tiny_config: Config, tmp_path: Path):
    runs = configs(tiny_config)
    ledger = Ledger()
    ledger.register(0, len(runs))
    unit = in_flight(runs, tmp_path)
    remote_attempt(ledger, runs, lose_after=5, checkpoint_every=2)
    apply_drained(ledger, unit)
    unit.attempts = 4
    outcomes = [unit.outcome(i, "NodeDiedError: node 1 is dead", False) for i in range(3)]
    assert [o.status for o in outcomes] == ["completed", "failed", "failed"]
    assert outcomes[1].error == "NodeDiedError: node 1 is dead" and outcomes[1].epochs == 5
    failed = unit.folders[1]
    assert failed.status == "failed" and failed.has_checkpoint
    info = json.loads((failed.path / "FAILED").read_text())
    assert info | {"emabench": ""} == {
        "status": "failed",
        "error": "NodeDiedError: node 1 is dead",
        "epochs": 5,
        "checkpoint": True,
        "attempts": 4,
        "emabench": "",
    }
    assert [f.status for f in find_runs([tmp_path])] == ["completed", "failed", "failed"]


def test_a_run_that_failed_before_it_started_is_listed(tiny_config: Config, tmp_path: Path):
    unit = in_flight([tiny_config], tmp_path)
    outcome = unit.outcome(0, "RunError: no GPU here", False)
    (folder,) = find_runs([tmp_path])
    assert outcome.status == folder.status == "failed" and folder.read_config() == tiny_config


@pytest.mark.parametrize("kind", ["start", "row", "checkpoint"])
def test_the_ledger_drops_calls_of_a_replaced_attempt(kind: str):
    ledger = Ledger()
    ledger.register(7, 1)
    first = ledger.begin(7, "a")["attempt"]
    ledger.begin(7, "b")
    assert ledger.post(7, first, [(0, kind, {"epoch": 1} if kind != "start" else None)]) is True
    assert [e[0] for e in ledger.drain()] == ["begin", "begin"]
