"""``emabench bench ema``: the averaging library's update against torch's ``AveragedModel``, ema-pytorch and the
seed's per-tensor loop (one update, from the seed MLP to a 25M-parameter MLP; µs and GB/s: 3 tensors of the model's
size are touched), and inside the seed study's real training loop: the EMA update against a bare ``lerp_`` over the
same buffer, its share of a step, and six averagers against one.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch

from emabench.bench.common import Row, median_interleaved, seed_config


def _mlp(widths: Sequence[int]) -> torch.nn.Module:
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


EMA_MODELS = {
    "seed MLP (3.5k params)": (20, 64, 32, 1),
    "MLP 1.1M params": (512, 1024, 512, 1),
    "MLP 25.2M params": (2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048),
}


def _updaters(model: torch.nn.Module) -> dict[str, Callable[[], None]]:
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from emabench.averaging import EMA
    from emabench.bench.reference import SeedEMA

    ours = EMA(model, beta=0.999, update_after_step=0, update_every=1)
    torch_avg = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.999), use_buffers=False)
    seed = SeedEMA(model, beta=0.999, update_after_step=0, update_every=1)
    updaters = {
        "emabench EMA": ours.update,
        "torch AveragedModel": lambda: torch_avg.update_parameters(model),
        "seed EMA loop": seed.update,
    }
    try:
        from ema_pytorch import EMA as LucidEMA

        lucid = LucidEMA(model, beta=0.999, update_after_step=0, update_every=1, use_foreach=True)
        updaters["ema-pytorch (foreach)"] = lucid.update
    except ImportError:
        pass
    return updaters


def bench_ema(repeats: int = 5) -> list[Row]:
    rows = []
    for name, widths in EMA_MODELS.items():
        model = _mlp(widths)
        numel = sum(p.numel() for p in model.parameters())
        updaters = _updaters(model)
        calls = max(3, min(2000, int(2e8 // max(numel, 1) // 40)))
        times = {label: [] for label in updaters}
        for _ in range(repeats):
            for label, update in updaters.items():
                for _ in range(3):
                    update()  # past the copy phase, caches warm
                start = time.perf_counter()
                for _ in range(calls):
                    update()
                times[label].append((time.perf_counter() - start) / calls * 1e6)
        ours = statistics.median(times.pop("emabench EMA"))
        gbps = 3 * 4 * numel / (ours * 1e-6) / 1e9
        for label, values in times.items():
            rows.append(
                Row(
                    "ema",
                    f"{name}: vs {label}",
                    ours,
                    statistics.median(values),
                    "us/update",
                    "<= 1.0" if "25.2M" in name and "seed" not in label else "",
                    f"emabench {gbps:.1f} GB/s",
                )
            )
    rows += _in_the_training_loop(repeats)
    rows.append(_many_averagers_vs_one(repeats))
    return rows


def _in_the_training_loop(repeats: int) -> list[Row]:
    """Inside the seed study's real loop (forward, backward, Adam, EMA, dropout masks, batching): the EMA's
    ``update(step)`` timed per call, against a bare ``lerp_`` of the same two flat buffers with the same weight
    timed the same way in place of it (the cost of one torch call after a training step), and against the step."""
    from emabench.config import load_config, with_overrides
    from emabench.tasks.data import make_dataset
    from emabench.train.loop import Trainer

    config = with_overrides(load_config(seed_config()), {"device": "cpu"})
    trainer = Trainer([config], make_dataset(config.data, config.task))
    for _ in range(3):
        trainer.run_epoch()  # past update_after_step: every update averages
    ema = trainer.averagers["ema"]
    averaged, online = ema._check_pair()  # the library's own flat views (one buffer each side)
    update, spent = ema.update, [0.0]

    def timed_update(step: int | None = None) -> None:
        start = time.perf_counter()
        update(step)
        spent[0] += time.perf_counter() - start

    def timed_lerp(step: int | None = None) -> None:
        weight = 1.0 - ema.decay  # outside the clock: the reference is the lerp_ call alone
        start = time.perf_counter()
        averaged.lerp_(online, weight)
        spent[0] += time.perf_counter() - start

    steps = -(-trainer.data.n_train // config.train.batch_size)
    results: dict[str, list[tuple[float, float]]] = {"update": [], "lerp": []}
    try:
        for i in range(max(repeats, 5) * 2):
            kind = ("update", "lerp")[i % 2]
            ema.update = timed_update if kind == "update" else timed_lerp  # an instance attribute, for this only
            spent[0] = 0.0
            start = time.perf_counter()
            trainer._train_one_epoch()
            results[kind].append((spent[0] / steps * 1e6, (time.perf_counter() - start) / steps * 1e6))
    finally:
        del ema.update
    update_us = statistics.median(s[0] for s in results["update"])
    lerp_us = statistics.median(s[0] for s in results["lerp"])
    step_us = statistics.median(s[1] for s in results["update"])
    return [
        Row("ema", "seed MLP: EMA update vs a bare lerp_ of the same buffer (real loop)", update_us, lerp_us, "us",
            "<= 1.5", "both timed per call between training steps; the bare lerp_ is one torch call"),
        Row("ema", "seed MLP: EMA update / whole training step (real loop)", update_us, step_us, "us", "",
            "ratio = the EMA's share of a step; the seed's per-tensor loop: ~0.12"),
    ]  # fmt: skip


def _many_averagers_vs_one(repeats: int) -> Row:
    """Per optimizer step: updating every averager of the shipped averagers.yaml (seed EMA, constant EMA, TF EMA, SWA,
    post-hoc EMA with two power profiles: six averaged copies) vs the seed EMA alone, on the seed MLP."""
    from emabench.config import load_config, shipped_config_path, with_overrides
    from emabench.tasks.data import make_dataset
    from emabench.train.loop import Trainer

    config = with_overrides(load_config(shipped_config_path("averagers")), {"device": "cpu"})
    trainer = Trainer([config], make_dataset(config.data, config.task))
    for _ in range(3):
        trainer.run_epoch()  # past every warm-up and copy phase
    every, seed_only = list(trainer.averagers.values()), [trainer.averagers["ema"]]
    steps, clock = 2000, [trainer.step]

    def timed(averagers: list) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            for step in range(clock[0] + 1, clock[0] + steps + 1):
                for averager in averagers:
                    averager.update(step)
            clock[0] += steps  # both sides move on: every averager sees increasing steps
            return (time.perf_counter() - start) / steps * 1e6

        return run

    many, one = median_interleaved(timed(every), timed(seed_only), repeats)
    return Row(
        "ema",
        "configs/averagers.yaml: all averagers (6 averaged copies) vs the seed EMA alone",
        many,
        one,
        "us/step",
        "",
        "per optimizer step, seed MLP; post-hoc snapshots every 250 steps included",
    )
