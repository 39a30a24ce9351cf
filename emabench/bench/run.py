"""``emabench bench run``: one run of the seed study against the seed script, and what a run costs besides training.

- per epoch: the training loop vs the seed script (:mod:`emabench.bench.reference`: DataLoader, per-tensor EMA
  loop, sklearn metrics), both in this process, interleaved A/B repetitions, same seed, fixed epochs;
- whole process: ``python -m emabench.bench.reference`` vs ``emabench run``, both for the same fixed epochs;
- a run's cost beyond its training: ``emabench run`` until its final table is shown, minus a bare ``import torch``
  process until its import is done and the training itself (from the run's ``DONE``), against a budget of 0.5 s;
  the time per figure in a warm process against 0.1 s (a run draws them after its table); and what follows the
  table until the process exits.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from emabench.bench.common import Row, median_interleaved, run_command, seed_config

OVERHEAD_BUDGET_S = 0.5  # the target: a run costs (python + torch import) + training + at most this
FIGURE_BUDGET_S = 0.1


def bench_run(repeats: int = 5, epochs: int = 10, process_epochs: int = 100) -> list[Row]:
    return [
        _per_epoch(repeats, epochs),
        _whole_process(repeats, process_epochs),
        *_beyond_training(max(3, repeats // 2 * 2 + 1), process_epochs),
    ]


def _per_epoch(repeats: int, epochs: int) -> Row:
    from emabench.bench.reference import SeedStudy
    from emabench.config import load_config, with_overrides
    from emabench.tasks.data import make_dataset
    from emabench.train.loop import Trainer

    config = with_overrides(
        load_config(seed_config()),
        {"device": "cpu", "train.max_epochs": 10_000, "train.early_stopping.patience": None},
    )
    ours, theirs = Trainer([config], make_dataset(config.data, config.task)), SeedStudy(seed=config.seed)
    for _ in range(3):  # warm-up: allocations, lazy initialisation, past the EMA's copy phase
        ours.run_epoch(), theirs.epoch()

    def timed(step: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            for _ in range(epochs):
                step()
            return (time.perf_counter() - start) / epochs * 1e3

        return run

    a, b = median_interleaved(timed(ours.run_epoch), timed(theirs.epoch), repeats)
    return Row("run", "per epoch, seed study (train + evaluate raw and EMA) vs the seed script", a, b, "ms", "<= 0.2")


def _whole_process(repeats: int, epochs: int) -> Row:
    runs_dir = tempfile.mkdtemp(prefix="emabench-bench-")
    ours = [*_emabench_run(runs_dir, epochs), "--force"]
    reference = [
        sys.executable, "-m", "emabench.bench.reference", "--epochs", str(epochs), "--no-early-stopping",
        "--figure", os.path.join(runs_dir, "seed.png"),
    ]  # fmt: skip
    a, b = median_interleaved(lambda: run_command(ours), lambda: run_command(reference), max(1, repeats // 2) * 2 - 1)
    note = f"{epochs} epochs each, no early stopping; start-up, data, training, outputs"
    return Row("run", "whole process (python -m ...) vs the seed script's", a, b, "s", "<= 0.5", note)


def _emabench_run(runs_dir: str, epochs: int) -> list[str]:
    return [
        sys.executable, "-m", "emabench", "run", str(seed_config()), "--runs-dir", runs_dir,
        "--set", f"train.max_epochs={epochs}", "--set", "train.early_stopping.patience=null",
    ]  # fmt: skip


def _beyond_training(repeats: int, epochs: int) -> list[Row]:
    """Medians over ``repeats`` fresh runs: the time until the final table shows and until the process ends, a bare
    ``import torch`` process's time until its import is done (seen the same way, by a line it prints), and the
    training (the run's ``DONE``); then the figures, drawn again in this warm process."""
    to_table, total, imports, training = [], [], [], []
    bare_import = [sys.executable, "-c", "import torch; print('imported', flush=True)"]
    for _ in range(repeats):
        imports.append(_until_line(bare_import, "imported")[0])
        runs_dir = tempfile.mkdtemp(prefix="emabench-bench-")
        shown, ended = _until_line([*_emabench_run(runs_dir, epochs), "--quiet"], "final validation metrics")
        to_table.append(shown)
        total.append(ended)
        done = next(Path(runs_dir).glob("*/DONE"))
        training.append(float(json.loads(done.read_text())["wall_time_s"]))
    shown, bare, trained = statistics.median(to_table), statistics.median(imports), statistics.median(training)
    note = f"table at {shown:.2f} s = import {bare:.2f} s + training {trained:.2f} s + the rest; {epochs} epochs"
    after = statistics.median(total) - shown
    return [
        Row("run", "a run beyond import + training, until its table", shown - bare - trained,
            OVERHEAD_BUDGET_S, "s", "<= 1.0", note),
        Row("run", "a run's figure (loss.png, r2.png), drawn in a warm process", _figure_s(runs_dir, repeats),
            FIGURE_BUDGET_S, "s", "<= 1.0", "both are drawn after the table is shown"),
        Row("run", "after the table until the process exits (figures, matplotlib's import, exit) vs the table",
            after, shown, "s", "", "what a user waits for the prompt once the table is on the screen"),
    ]  # fmt: skip


def _figure_s(runs_dir: str, repeats: int) -> float:
    """Median seconds per figure of the run in ``runs_dir``, redrawn here after a first (importing) draw."""
    from emabench.runs.folder import find_runs

    (run,) = find_runs([Path(runs_dir)])
    run.draw_run_figures()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run.draw_run_figures()
        times.append((time.perf_counter() - start) / 2)
    return statistics.median(times)


def _until_line(command: list[str], marker: str) -> tuple[float, float]:
    """Seconds until the process printed a line holding ``marker``, and until it exited."""
    start = time.perf_counter()
    shown = None
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as process:
        for line in process.stdout:
            if shown is None and marker in line:
                shown = time.perf_counter() - start
    ended = time.perf_counter() - start
    if process.returncode != 0 or shown is None:
        raise RuntimeError(f"{' '.join(command)} failed (exit {process.returncode})")
    return shown, ended
