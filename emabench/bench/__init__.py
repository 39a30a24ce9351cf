"""``emabench bench``: measured speed, always as a ratio against a reference run side by side in the same session.

Sub-benchmarks, each writing rows of one table (``bench.csv``, ``bench.md``):

- ``run`` (:mod:`.run`): the training loop vs the seed script per epoch and as whole processes, and what a run costs
  besides its import and training;
- ``ema`` (:mod:`.ema`): one EMA update vs torch's ``AveragedModel``, ema-pytorch and the seed's loop, and the
  update inside the real training loop vs a bare ``lerp_``;
- ``sweep`` (:mod:`.sweep`): 40-run sweeps vs one run, the seed study and the digits classifier;
- ``scaling`` (:mod:`.scaling`): R stacked runs, the cost of a replica-epoch from R = 1 to 1024.

The timings are medians of interleaved repetitions; the machine is noisy, so read the ratios, not the digits.
"""

from emabench.bench.common import Row, machine, to_csv, to_markdown
from emabench.bench.ema import bench_ema
from emabench.bench.run import bench_run
from emabench.bench.scaling import bench_scaling
from emabench.bench.sweep import bench_sweep

BENCHMARKS = ("run", "ema", "sweep", "scaling")

__all__ = [
    "BENCHMARKS",
    "Row",
    "bench_ema",
    "bench_run",
    "bench_scaling",
    "bench_sweep",
    "machine",
    "to_csv",
    "to_markdown",
]
