"""emabench's weight-averaging library: torch only, usable in any training loop.

    from emabench.averaging import EMA
    ema = EMA(model, beta=0.999, update_after_step=100, update_every=1, inv_gamma=1.0, power=2/3)
    ...  # after every optimizer.step():
    ema.update(step)  # step = optimizer steps so far (1-based); ema.update() counts calls instead
    ema.averaged_model(x)  # or ema(x); with ema.swapped_into(model): evaluate(model)

Rules (all share that interface; ``state_dict()`` round-trips their counters and last decay):

- ``EMA``: the seed's warm-up EMA; ``ConstantEMA``: constant decay; ``TFEMA``: TensorFlow's ``min(β, (1+n)/(10+n))``;
  ``BiasCorrectedEMA``: zero-initialised EMA divided by ``1 − β^t``;
- ``ScheduledEMA``: a piecewise (constant or linear) decay schedule by step or epoch; ``AdaptiveEMA``: a decay that
  climbs or descends a ladder from validation losses (``observe``);
- ``SWA``: equal average of snapshots (Polyak from a start step), with ``swa_annealed_lr`` and ``update_bn``;
- ``PowerEMA``: EDM2's power-function EMA; ``PostHocEMA``: snapshots of ≥ 2 of them, any ``sigma_rel`` afterwards.

One cadence for all: ``update(step)`` takes the number of optimizer steps taken so far (the one just made included);
``update()`` counts calls, which is the same when it is called once per optimizer step (so with gradient accumulation,
call it after ``optimizer.step()``, not after every micro-batch). Rules with ``update_every=k`` average at steps
``1, k+1, 2k+1, …``; ``PowerEMA`` uses ``Δt`` = steps since its last update; ``SWA`` snapshots at
``t ≥ start_step, (t − start_step) % every == 0``; ``PostHocEMA`` snapshots at multiples of ``snapshot_every``. A
call acts on every such point passed since the previous call; a step that repeats or goes backwards is an error.

Precision: ``dtype=`` sets the dtype the average is kept and computed in; by default float16/bfloat16 models are
averaged in float32 (in bfloat16 a 0.999 EMA cannot move at all). ``swapped_into`` casts back to the model's dtype.

Models may stack R replicas along dim 0 of every tensor: ``beta`` (EMA, ConstantEMA, TFEMA, BiasCorrectedEMA) may be a
1-D tensor of length R; ``AdaptiveEMA(replicas=R)`` keeps one ladder position per replica.

``decay_for_horizon`` turns a half-life in steps, samples or epochs into the decay to pass as ``beta``.

Distributed training (seed 000 §4.2, see :mod:`emabench.averaging.distributed`): under DDP every averager stays
identical on all ranks without communication (``verify_consistent`` checks it); under FSDP2 / DTensor parameters each
rank keeps only its shard of the average, updated locally, gathered by ``full_state_dict()`` and saved by
``save_sharded`` / ``load_sharded`` (torch.distributed.checkpoint); ``CentralEMA`` (one rank holds the average, synced
every k steps) and ``MergedAverages`` (per-rank averages all-reduced every k steps) trade exactness for traffic.
"""

from emabench.averaging.base import Averager
from emabench.averaging.distributed import CentralEMA, MergedAverages, verify_consistent
from emabench.averaging.ema import EMA
from emabench.averaging.exponential import TFEMA, BiasCorrectedEMA, ConstantEMA
from emabench.averaging.horizon import decay_for_horizon
from emabench.averaging.posthoc import PostHocEMA, power_function_inner_product, solve_weights
from emabench.averaging.power import PowerEMA, gamma_to_sigma_rel, power_function_beta, sigma_rel_to_gamma
from emabench.averaging.scheduled import AdaptiveEMA, ScheduledEMA
from emabench.averaging.schedules import decay_from_half_life, half_life, tf_decay, warmup_decay
from emabench.averaging.swa import SWA, swa_annealed_lr, update_bn

__all__ = [
    "EMA",
    "SWA",
    "TFEMA",
    "AdaptiveEMA",
    "Averager",
    "BiasCorrectedEMA",
    "ConstantEMA",
    "PostHocEMA",
    "PowerEMA",
    "ScheduledEMA",
    "decay_for_horizon",
    "decay_from_half_life",
    "gamma_to_sigma_rel",
    "half_life",
    "power_function_beta",
    "power_function_inner_product",
    "sigma_rel_to_gamma",
    "solve_weights",
    "swa_annealed_lr",
    "tf_decay",
    "update_bn",
    "warmup_decay",
    "CentralEMA",
    "MergedAverages",
    "verify_consistent",
    "save_sharded",
    "load_sharded",
]


def __getattr__(name: str):  # the sharded helpers import torch.distributed.tensor (~0.5 s): only when asked for
    if name in ("save_sharded", "load_sharded"):
        from emabench.averaging import sharded

        return getattr(sharded, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
