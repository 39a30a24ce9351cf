"""Wall time of one run on 1 process vs ``--nproc N`` processes: ``emabench run CONFIG [--nproc N]``.

Runs the whole command (``python -m emabench run CONFIG --force -q``: start-up, data, training, outputs) ``--repeats``
times for each process count, interleaved, into a temporary runs folder, and prints per count the median (and the
range) of the command's wall time and of the training time the run itself records (``DONE``'s ``wall_time_s``:
from the trainer's start to the last epoch, without start-up or the launch). Asserts nothing. Run from the
repository root: ``.venv/bin/python benchmarks/run_nproc_wall_time.py examples/custom_model.yaml --nproc 2``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(config: str, runs: Path, nproc: int) -> tuple[float, float]:
    command = [sys.executable, "-m", "emabench", "run", config, "--runs-dir", str(runs), "--force", "-q"]
    command += ["--nproc", str(nproc)] if nproc > 1 else []
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - start
    (done,) = runs.glob("*/DONE")
    return wall, float(json.loads(done.read_text())["wall_time_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    counts = [1, args.nproc]
    results: dict[int, list[tuple[float, float]]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for n in counts:
                results[n].append(one_run(args.config, Path(folder) / f"p{n}", n))
    for n in counts:
        walls, trains = zip(*results[n])
        print(
            f"{n} process(es): command {statistics.median(walls):.2f} s ({min(walls):.2f}-{max(walls):.2f}), "
            f"training {statistics.median(trains):.2f} s ({min(trains):.2f}-{max(trains):.2f}), "
            f"median of {args.repeats}"
        )


if __name__ == "__main__":
    main()
