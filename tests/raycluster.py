"""A real two-node Ray cluster on this machine, for the slow tests of ``--engine ray``.

The head (``ray start --head``) and a second node (``ray start --address=...``) each get their own temporary
directory, one CPU and a token of their own (``RAY_AUTH_TOKEN``, so nothing of the user's ``~/.ray`` is used or
changed). Each node is one ``ray start --block`` process; stopping or losing a node means SIGKILL to exactly the
processes it started (its process tree, frozen first so nothing new is spawned meanwhile) — never ``ray stop``,
which would stop every Ray on the machine.

The driver can run in a mount namespace of its own (:func:`isolated_driver`, where ``unshare`` is allowed): its runs
folder is then a private tmpfs that no Ray worker can see, so a sweep that completes proves the workers need no
shared filesystem.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # ended meanwhile
            os.kill(pid, signum)


@dataclass
class Node:
    name: str
    process: subprocess.Popen
    log: Path

    def kill(self) -> float:
        """SIGKILL this node's processes (raylet, its workers, agents; the GCS too for the head); returns when."""
        tree = process_tree(self.process.pid)
        signal_all(tree, signal.SIGSTOP)  # frozen, nothing new is spawned; then everything it had spawned
        tree = sorted(set(tree) | set(process_tree(self.process.pid)))
        killed_at = time.monotonic()
        signal_all(tree, signal.SIGKILL)
        self.process.wait(timeout=30)
        return killed_at


class LocalCluster:
    """Head + second node on 127.0.0.1, one CPU each (see the module's docstring)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="eb-ray-", dir="/tmp"))  # short: Ray's socket paths must fit
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}
        self.nodes: dict[str, Node] = {}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def driver_env(self) -> dict[str, str]:
        return {k: self.env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")} | {"RAY_ADDRESS": self.address}

    def start(self) -> LocalCluster:
        self.start_node("head", "--head", f"--port={self.port}", "--include-dashboard=false")
        self.start_node("node2", f"--address={self.address}")
        return self

    def start_node(self, name: str, *args: str) -> Node:
        temp = self.root / name
        log = self.root / f"{name}.log"
        command = [str(RAY), "start", *args, "--num-cpus=1", "--node-ip-address=127.0.0.1", f"--temp-dir={temp}"]
        command += ["--object-store-memory=100000000", "--disable-usage-stats", "--block"]
        with log.open("ab") as out:
            process = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        node = self.nodes[name] = Node(name, process, log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"Ray runtime started" not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                if process.poll() is None:
                    node.kill()
                raise RuntimeError(f"ray start {name} failed:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        return node

    def stop(self) -> None:
        for node in reversed(list(self.nodes.values())):
            if node.process.poll() is None:
                node.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def can_unshare() -> bool:
    """Whether this process may give a child its own mount namespace and mount a tmpfs there."""
    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as probe:
        command = ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "probe", probe]
        return subprocess.run(command, capture_output=True).returncode == 0


def isolated_driver(args: list[str], private: Path, copy_to: Path) -> list[str]:
    """``python -m emabench ARGS --runs-dir PRIVATE`` in its own mount namespace, where PRIVATE is a fresh tmpfs
    (invisible to every other process, Ray's workers included); when it ends, PRIVATE is copied to ``copy_to`` so
    the test can read it. While it runs, ``/proc/<pid>/root/PRIVATE`` shows the driver's view."""
    emabench = [sys.executable, "-m", "emabench", *args, "--runs-dir", str(private)]
    script = 'mount -t tmpfs emabench-driver "$0" && "$@"; rc=$?; cp -a "$0/." "$COPY_TO/"; exit $rc'
    namespace = ["env", f"COPY_TO={copy_to}", "unshare", "--mount", "--propagation", "private"]
    return [*namespace, "sh", "-c", script, str(private), *emabench]
