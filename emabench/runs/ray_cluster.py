"""Reaching Ray for a sweep: the optional import, the cluster (``RAY_ADDRESS``) or a local instance, and the checks
that tasks can run there (resources, devices) before anything is written or submitted."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from emabench.errors import ConfigError, RunError

CONNECT_TIMEOUT_S = 10.0  # for the RAY_ADDRESS check before ray.init


@dataclass(frozen=True)
class RayOptions:
    """What each task asks Ray for, and how often Ray retries a task whose worker or node is lost."""

    cpus_per_task: int = 1  # the seed MLP gains nothing from more threads
    gpus_per_task: float = 0.0  # 0.25 packs four tasks on one GPU
    retries: int = 3  # Ray's max_retries (its default for tasks)


def require_ray() -> ModuleType:
    """The ``ray`` module, or a one-line :class:`ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'emabench[ray]'") from None
    return ray


def check_devices(devices: set[str], options: RayOptions) -> None:
    """Refuse device settings the tasks could not honour: workers, not the driver, must have the GPUs."""
    if "cuda" in devices and options.gpus_per_task <= 0:
        raise ConfigError("device: 'cuda' with --engine ray needs --gpus-per-task > 0 (e.g. 1, or 0.25 to share)")
    if "cpu" in devices and options.gpus_per_task > 0:
        raise ConfigError("device: 'cpu' with --gpus-per-task: the GPUs would sit idle (use device: auto or cuda)")


def connect(ray: ModuleType, jobs: int, options: RayOptions) -> bool:
    """Connect to ``RAY_ADDRESS`` or start a local instance; ``True`` if this call did (and so must undo it)."""
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        _check_reachable(address)
        settings: dict[str, Any] = {"address": address, "logging_level": logging.WARNING}
    else:  # a private instance: its start-up notices (token generated, ...) are noise here
        cpus = jobs * options.cpus_per_task
        settings = {"num_cpus": cpus, "include_dashboard": False, "logging_level": logging.ERROR}
    main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(log_to_driver=False, **settings)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at RAY_ADDRESS={address}" if address else "a local Ray instance"
        raise RunError(f"--engine ray: cannot start or reach {where} ({first_line(err)})") from None
    finally:
        if main:  # ray.init replaces SIGTERM's handler with sys.exit; keep the caller's (a deferred stop)
            signal.signal(signal.SIGTERM, sigterm)
    return True


def _check_reachable(address: str) -> None:
    """Refuse a ``host:port`` that nothing answers on at once: Ray itself retries such an address for minutes."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\[\]/]+?)\]?:(\d+)", address)
    if match is None:  # "auto", "local", anything else: left to Ray
        return
    try:
        socket.create_connection((match[1], int(match[2])), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise RunError(f"--engine ray: nothing answers at RAY_ADDRESS={address} ({err.strerror or err})") from None


def check_fits(ray: ModuleType, options: RayOptions) -> None:
    """Refuse tasks no node alive now can run (Ray would keep them pending forever)."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    need = {"CPU": options.cpus_per_task, "GPU": options.gpus_per_task}
    if any(all(node.get(k, 0) >= v for k, v in need.items()) for node in nodes):
        return
    have = ", ".join(f"{n.get('CPU', 0):g} CPU/{n.get('GPU', 0):g} GPU" for n in nodes) or "none"
    raise RunError(
        f"--engine ray: no node of the cluster has {need['CPU']:g} CPU and {need['GPU']:g} GPU for a task "
        f"(--cpus-per-task/--gpus-per-task; nodes: {have})"
    )


def first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
