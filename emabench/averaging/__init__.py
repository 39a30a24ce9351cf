"""emabench's weight-averaging library: torch only, usable in any training loop.

    from emabench.averaging import EMA
    ema = EMA(model, beta=0.999, update_after_step=100, update_every=1, inv_gamma=1.0, power=2/3)
    ...  # after every optimizer.step():
    ema.update()
    ema.averaged_model(x)  # or ema(x); with ema.swapped_into(model): evaluate(model)

Rules (all share that interface, ``state_dict()`` round-trips their counters):

- ``EMA``: the seed's warm-up EMA; ``ConstantEMA``: constant decay; ``TFEMA``: TensorFlow's ``min(β, (1+n)/(10+n))``;
  ``BiasCorrectedEMA``: zero-initialised EMA divided by ``1 − β^t``;
- ``SWA``: equal average of snapshots (Polyak from a start step), with ``swa_annealed_lr`` and ``update_bn``;
- ``PowerEMA``: EDM2's power-function EMA; ``PostHocEMA``: snapshots of ≥ 2 of them, any ``sigma_rel`` afterwards.

``decay_for_horizon`` turns a half-life in steps, samples or epochs into the decay to pass as ``beta``.
"""

from emabench.averaging.base import Averager
from emabench.averaging.ema import EMA
from emabench.averaging.exponential import TFEMA, BiasCorrectedEMA, ConstantEMA
from emabench.averaging.horizon import decay_for_horizon
from emabench.averaging.posthoc import PostHocEMA, power_function_inner_product, solve_weights
from emabench.averaging.power import PowerEMA, gamma_to_sigma_rel, power_function_beta, sigma_rel_to_gamma
from emabench.averaging.schedules import decay_from_half_life, half_life, tf_decay, warmup_decay
from emabench.averaging.swa import SWA, swa_annealed_lr, update_bn

__all__ = [
    "EMA",
    "SWA",
    "TFEMA",
    "Averager",
    "BiasCorrectedEMA",
    "ConstantEMA",
    "PostHocEMA",
    "PowerEMA",
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
]
