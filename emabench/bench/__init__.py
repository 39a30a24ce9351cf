"""``emabench bench``: measured speed, always as a ratio against a reference run side by side in the same session.

Sub-benchmarks, each writing rows of one table (``bench.csv``, ``bench.md``):

- ``run`` (:mod:`.run`): the training loop vs the seed script per epoch and as whole processes, and what a run costs
  besides its import and training;
- ``ema`` (:mod:`.ema`): one EMA update vs torch's ``AveragedModel``, ema-pytorch and the seed's loop, and the
  update inside the real training loop vs a bare ``lerp_``;
- ``sweep`` (:mod:`.sweep`): 40-run sweeps vs one run, the seed study and the digits classifier;
- ``scaling`` (:mod:`.scaling`): R stacked runs, the cost of a replica-epoch from R = 1 to 1024;
- ``tracking`` (:mod:`.tracking`): a 40-run sweep copied to MLflow or TensorBoard vs the same sweep untracked (not in
  the default set: it needs the extras and trains 3 × 3 sweeps).

The timings are medians of interleaved repetitions; the machine is noisy, so read the ratios, not the digits.
"""

from emabench.bench.common import Row, machine, to_csv, to_markdown
from emabench.bench.ema import bench_ema
from emabench.bench.run import bench_run
from emabench.bench.scaling import bench_scaling
from emabench.bench.sweep import bench_sweep
from emabench.bench.tracking import bench_tracking

BENCHMARKS = ("run", "ema", "sweep", "scaling", "tracking")
DEFAULT = ("run", "ema", "sweep", "scaling")  # what `emabench bench` runs without arguments

__all__ = [
    "BENCHMARKS",
    "DEFAULT",
    "Row",
    "bench_ema",
    "bench_run",
    "bench_scaling",
    "bench_sweep",
    "bench_tracking",
    "machine",
    "to_csv",
    "to_markdown",
]
