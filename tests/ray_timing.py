"""The figures the README quotes for ``--engine ray``: one sweep's wall time on each engine, the bytes a task sends
and receives, and what losing a node costs. Not a test (it takes minutes); run it as

    .venv/bin/python -m tests.ray_timing            # 40 betas × 10 seeds of the seed study, 30 epochs each

Each sweep is ``python -m emabench sweep`` in a fresh runs folder, timed from process start to exit. The Ray cases run
on the two-node local cluster of :mod:`tests.raycluster` (head + one node, one CPU each, as the tests use), started
once beforehand (not timed). The node-loss case kills the second node (its processes, by PID) once the driver has
both tasks' checkpoints from the middle of training, and compares with the same sweep undisturbed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from .conftest import SEED_CONFIG
from .raycluster import LocalCluster

POLL_S = 1.0  # how often the node-loss case reads checkpoints: rarely, not to take CPU from the sweep it times


def sweep_args(betas: int, seeds: int, epochs: int) -> list[str]:
    beta_list = ",".join(f"{0.95 + 0.001 * i:.3f}" for i in range(betas))
    return [
        "sweep",
        str(SEED_CONFIG),
        "--beta",
        beta_list,
        "--seeds",
        f"0-{seeds - 1}",
        "--set",
        f"train.max_epochs={epochs}",
        "--set",
        "device=cpu",
        "--jobs",
        "2",
        "-q",
    ]


def slowest_checkpoint(runs: Path, sample: int = 40) -> int:
    """The earliest checkpoint epoch among a random sample of the runs' checkpoints on the driver's disk: a task
    checkpoints all its runs at once, so 40 of 400 (from both tasks' units) tell where the slower one is without
    reading every file in each poll."""
    paths = list(runs.glob("*/*/checkpoint.pt"))
    epochs = []
    for path in random.sample(paths, min(sample, len(paths))):
        try:
            epochs.append(int(torch.load(path, weights_only=True)["epoch"]))
        except Exception:  # replaced meanwhile: read next time
            continue
    return min(epochs) if len(epochs) == min(sample, len(paths)) and len(paths) > sample else 0


def resumed_epochs(runs: Path) -> dict[tuple[int, int], int]:
    """How many runs finished in which attempt, continued from which checkpoint epoch."""
    counts: dict[tuple[int, int], int] = {}
    for done in runs.glob("*/*/DONE"):
        info = json.loads(done.read_text())
        key = (info["ray_attempt"], info["resumed_from_epoch"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def timed(command: list[str], env: dict[str, str], kill_when=None) -> tuple[float, str, float | None]:
    """Run ``command``; its wall time, its output, and when (seconds after start) ``kill_when()`` fired."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    fired = None
    while kill_when is not None and fired is None and process.poll() is None:
        if kill_when():
            fired = time.perf_counter() - started
        time.sleep(POLL_S)
    out, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{command} exited {process.returncode}:\n{out}")
    return time.perf_counter() - started, out, fired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--betas", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--checkpoint-every", type=int, default=5)
    parser.add_argument("--local", action=argparse.BooleanOptionalAction, default=True, help="time the local engines")
    options = parser.parse_args()
    base = [sys.executable, "-m", "emabench", *sweep_args(options.betas, options.seeds, options.epochs)]
    every = ["--checkpoint-every", str(options.checkpoint_every)]
    work = Path(tempfile.mkdtemp(prefix="eb-timing-"))
    local_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    for engine in ("vectorized", "process") if options.local else ():
        seconds, out, _ = timed([*base, "--engine", engine, "--runs-dir", str(work / engine)], local_env)
        print(f"--engine {engine} --jobs 2: {seconds:.1f} s  {out.strip().splitlines()[0]}", flush=True)
    cluster = LocalCluster().start()
    try:
        env = local_env | cluster.driver_env
        ray = [*base, "--engine", "ray"]
        for name, extra in (("ray", []), ("ray-checkpointed", every)):
            seconds, out, _ = timed([*ray, *extra, "--runs-dir", str(work / name)], env)
            print(f"--engine ray --jobs 2 {' '.join(extra)}: {seconds:.1f} s\n{out.strip()}", flush=True)
        runs, half = work / "ray-node-lost", options.epochs // 2
        killed: dict[str, object] = {}

        def lose_node() -> bool:
            epoch = slowest_checkpoint(runs)
            if epoch < half:
                return False
            killed["at_epoch"] = epoch
            cluster.nodes["node2"].kill()
            return True

        seconds, out, fired = timed([*ray, *every, "--runs-dir", str(runs)], env, kill_when=lose_node)
        print(f"--engine ray --jobs 2 {' '.join(every)}, node2 killed {fired:.1f} s in (both units' checkpoints at")
        print(f"epoch >= {killed['at_epoch']} on the driver's disk): {seconds:.1f} s\n{out.strip()}", flush=True)
        print(f"runs by (attempt, resumed from epoch): {resumed_epochs(runs)}")
    finally:
        cluster.stop()
    print(f"runs folders kept under {work}")


if __name__ == "__main__":
    main()
