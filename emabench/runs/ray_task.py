"""Inside a Ray task: one unit of a sweep, trained by the same code as the local engines
(:func:`emabench.runs.unit.train_stack`) through proxies of its run folders.

A task gets its runs' configs (plain dicts) and a handle to the sweep's :class:`~emabench.runs.ray_ledger.Ledger`,
never a path: it asks the ledger where to start (:meth:`~Ledger.begin`: the runs still to train and the latest
checkpoint the driver holds for them, so a retry after a lost node continues from there), and every call the
trainer makes on a run folder (start, a history row, a checkpoint, finish, interrupt) becomes a :data:`WireEvent`.
Checkpoints are serialized here, as the bytes of ``checkpoint.pt``: the cost stays with the tasks, and the driver
and the ledger only move bytes.
:class:`Courier` sends them in one blocking :meth:`~Ledger.post` per epoch that has more than history rows in it (a
checkpoint, a finished run, a start), or once rows have waited :data:`ROWS_EVERY_S`; the reply says whether to stop.
The driver applies the calls to the real folders (:mod:`emabench.runs.ray_executor`).

Devices: ``device: auto`` means the GPU Ray assigned this task (``--gpus-per-task`` > 0: Ray sets
``CUDA_VISIBLE_DEVICES`` to it, so it is ``cuda`` here) and the CPU otherwise — never a GPU Ray did not assign,
which Ray (since 2.4x) no longer hides from tasks that asked for none. The config itself is not changed (its hash
names the run); only the trainer's copy says where to train.

Nothing here imports torch or the trainer at module level: the ledger actor unpickles references into this module.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from emabench.errors import RunError

if TYPE_CHECKING:
    from emabench.config import Config
    from emabench.runs.ray_ledger import WireEvent

ROWS_EVERY_S = 5.0  # history rows alone reach the driver at most this often (a live history.csv, few messages)
STOP_POLL_S = 0.5  # a task asks "stop?" at most this often: one small actor call, not one per (short) epoch


@dataclass(frozen=True)
class TaskSpec:
    """What every task of one sweep is told besides its configs."""

    checkpoint_every: int
    cpus: float
    gpus: float


def train_unit(key: int, configs: list[dict[str, Any]], spec: TaskSpec, ledger: Any) -> dict[str, Any]:
    """One Ray task (and each of its retries): train unit ``key``'s unfinished runs, from the driver's latest
    checkpoint of them if it has one; returns the attempt number and node."""
    import ray
    import torch

    from emabench.config import Config
    from emabench.runs.unit import train_stack

    node = ray.get_runtime_context().get_node_id()
    courier = Courier(ledger, key)
    start = courier.begin(node)
    summary = {"attempt": courier.attempt, "node": node}
    if start["stop"] or not start["runs"]:
        return summary
    device = _device(spec, node)
    torch.set_num_threads(max(1, int(spec.cpus)))
    stack = [_placed(Config.model_validate(configs[i]), device) for i in start["runs"]]
    runs = [RemoteRun(courier, i, configs[i], start["checkpoints"].get(i)) for i in start["runs"]]
    try:
        train_stack(
            stack,
            runs,  # type: ignore[arg-type]  # RunFolder's lifecycle, sent to the driver
            stop=courier.stop,
            checkpoint_every=spec.checkpoint_every,
            resume=bool(start["checkpoints"]),
            plots=False,  # drawn by the driver, which writes the folders
            flush=courier.flush,
        )
    except BaseException:
        with contextlib.suppress(Exception):  # the interrupt marks train_stack left; the error itself goes on
            courier.flush(force=True)
        raise
    courier.flush(force=True)
    return summary


def _device(spec: TaskSpec, node: str) -> str | None:
    """``cuda`` when Ray assigned this task a GPU (checked usable), else ``None`` (``auto`` means the CPU)."""
    if spec.gpus <= 0:
        return None
    import ray
    import torch

    if not torch.cuda.is_available():
        raise RunError(
            f"Ray gave this task GPU {ray.get_gpu_ids()} on node {node[:12]}, but torch sees no CUDA device there "
            "(is a CUDA build of torch installed on that node?)"
        )
    return "cuda"


def _placed(config: Config, device: str | None) -> Config:
    """The trainer's copy of ``config``: ``auto`` resolved to the device Ray assigned (see the module's docstring)."""
    if config.device != "auto":
        return config
    return config.model_copy(update={"device": device or "cpu"})


class Courier:
    """A task's line to the ledger: collects the runs' events, posts them, and answers "stop?" without waiting."""

    def __init__(self, ledger: Any, key: int) -> None:
        self._ledger = ledger
        self._key = key
        self.attempt = 0
        self.node = ""
        self._events: list[WireEvent] = []
        self._urgent = False  # something besides rows waits
        self._last_post = time.monotonic()
        self._stop = False
        self._poll: Any = None  # an unanswered ledger.stopping() call
        self._asked = 0.0  # when it was sent

    def begin(self, node: str) -> dict[str, Any]:
        import ray

        start = ray.get(self._ledger.begin.remote(self._key, node))
        self.attempt, self.node, self._stop = start["attempt"], node, start["stop"]
        return start

    def add(self, index: int, kind: str, payload: Any) -> None:
        self._events.append((index, kind, payload))
        self._urgent = self._urgent or kind != "row"

    def flush(self, force: bool = False) -> None:
        """Post what waits if it matters now (see the module's docstring), and wait for the ledger to have it."""
        import ray

        due = self._urgent or force or time.monotonic() - self._last_post >= ROWS_EVERY_S
        if not self._events or not due:
            return
        events, self._events, self._urgent = self._events, [], False
        self._stop = ray.get(self._ledger.post.remote(self._key, self.attempt, events)) or self._stop
        self._last_post = time.monotonic()

    def stop(self) -> bool:
        """Whether the sweep is stopping: the answer to the previous question (or a post's reply), and a new
        question sent (every :data:`STOP_POLL_S` at most), so an epoch never waits for the network. An unreachable
        ledger (the driver is gone) reads as a stop."""
        import ray

        if self._stop:
            return True
        try:
            if self._poll is not None and ray.wait([self._poll], timeout=0)[0]:
                self._stop, self._poll = bool(ray.get(self._poll)), None
        except ray.exceptions.RayError:
            self._stop = True
        if not self._stop and self._poll is None and time.monotonic() - self._asked >= STOP_POLL_S:
            self._poll, self._asked = self._ledger.stopping.remote(), time.monotonic()
        return self._stop


class RemoteRun:
    """A run folder's lifecycle inside a task (the methods :func:`~emabench.runs.unit.train_stack` calls): each call
    becomes an event for the driver; a checkpoint is sent as the bytes of ``checkpoint.pt``, made here (the driver
    writes them as they are). ``path`` is the run's id, for messages only: the task never sees a path."""

    def __init__(self, courier: Courier, index: int, config: dict[str, Any], checkpoint: bytes | None) -> None:
        from emabench.runs.layout import run_id

        self._courier = courier
        self._index = index
        self._config = config  # as the driver has it: the checkpoint's tag is its hash
        self._checkpoint = checkpoint
        self.path = PurePosixPath(run_id(config))

    @property
    def name(self) -> str:
        return self.path.name

    def _send(self, kind: str, payload: Any) -> None:
        self._courier.add(self._index, kind, payload)

    def start(self, config: Config) -> None:
        self._send("start", None)

    def record_epoch(self, row: dict[str, Any]) -> None:
        self._send("row", dict(row))

    def save_checkpoint(self, config: Config, state: dict[str, Any]) -> None:
        from emabench.runs.encoding import encode_checkpoint
        from emabench.runs.layout import run_hash

        self._send("checkpoint", encode_checkpoint(state, run_hash(self._config)))

    def checkpoint_for(self, config: Config) -> dict[str, Any]:
        from emabench.runs.encoding import decode_checkpoint

        if self._checkpoint is None:
            raise RunError(f"{self.name}: the driver holds no checkpoint to resume from")
        return decode_checkpoint(self._checkpoint, self.name)

    def resume(self, history: list[dict[str, Any]]) -> None:
        self._send("resume", len(history))

    def finish(
        self, history: list[dict[str, Any]], extra: dict[str, dict[str, float]], info: dict[str, Any], **_: Any
    ) -> None:
        where = {"ray_attempt": self._courier.attempt, "ray_node": self._courier.node}
        self._send("finish", (extra, info | where))

    def interrupt(self, info: dict[str, Any]) -> None:
        self._send("interrupt", info)

    def fail(self, config: Config, info: dict[str, Any]) -> None:
        self._send("fail", info)
