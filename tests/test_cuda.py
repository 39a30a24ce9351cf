"""The CUDA path (skipped cleanly without a GPU): the same engine on the device agrees with the CPU run."""

from __future__ import annotations

import pytest
import torch

from emabench.config import with_overrides

from .test_engine import engine_history

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_cuda_run_matches_cpu(tiny_config):
    cpu = engine_history([tiny_config])[0]
    gpu = engine_history([with_overrides(tiny_config, {"device": "cuda"})])[0]
    assert len(gpu) == len(cpu)
    for a, b in zip(gpu, cpu):  # same randomness (drawn on the CPU); kernels differ, so not bit for bit
        for column in ("train_loss", "raw_mse", "ema_mse"):
            assert a[column] == pytest.approx(b[column], rel=1e-3, abs=1e-5)


def test_cuda_stacked_sweep_with_averagers(tiny_config):
    configs = [
        with_overrides(tiny_config, {"device": "cuda", "seed": s, "ema.beta": b}) for s, b in [(0, 0.9), (1, 0.99)]
    ]
    histories = engine_history(configs)
    assert all(len(h) > 0 for h in histories)
    assert all(torch.isfinite(torch.tensor([r["ema_mse"] for r in h])).all() for h in histories)


def test_cuda_digits_lenet_matches_cpu():
    from emabench.config import load_config

    from .conftest import ROOT
    from .test_engine_tasks import histories

    config = with_overrides(load_config(ROOT / "configs" / "digits.yaml"), {"train.max_epochs": 2})
    cpu = histories([with_overrides(config, {"device": "cpu"})])[0]
    gpu = histories([with_overrides(config, {"device": "cuda"})])[0]
    for a, b in zip(gpu, cpu):  # cuDNN's convolutions differ from the CPU's in the last bits
        assert a["raw_accuracy"] == pytest.approx(b["raw_accuracy"], abs=0.02)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_mixed_precision_trains(tiny_config, precision):
    config = with_overrides(tiny_config, {"device": "cuda", "train.precision": precision})
    (history,) = engine_history([config])
    assert all(torch.isfinite(torch.tensor([r["raw_val_loss"] for r in history])))
    assert history[-1]["raw_val_loss"] < history[0]["raw_val_loss"]
