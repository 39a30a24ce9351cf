"""The engine against a faithful reference loop (nn.Sequential, torch Adam, ReduceLROnPlateau, EMA) and itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from torch import nn

from emabench.averaging import EMA
from emabench.config import Config, with_overrides
from emabench.stack.layers import StackedLinear
from emabench.tasks.data import make_dataset
from emabench.tasks.registry import get_task
from emabench.train.batches import keep_masks, mask_generator
from emabench.train.control import PlateauScheduler
from emabench.train.loop import Trainer
from emabench.train.stepper import ReplicaStepper


def seed_loop(cfg: Config) -> list[dict[str, float]]:
    """Seed 001's training loop with torch's own Adam and ReduceLROnPlateau and the library EMA on an ordinary
    nn.Sequential; the only change from the seed script is that shuffling and dropout masks come from generators
    seeded with cfg.seed, the run's own streams (so both sides see the same randomness)."""
    data = make_dataset(cfg.data)
    g = torch.Generator().manual_seed(cfg.seed)
    mask_stream = mask_generator(cfg.seed)  # the run's dropout stream (16 random bits a unit, see train/batches.py)
    widths = [data.n_features, *cfg.model.hidden_sizes, 1]
    linears = [nn.Linear(i, o) for i, o in zip(widths[:-1], widths[1:])]
    for linear in linears:
        nn.init.xavier_normal_(linear.weight, generator=g)
        nn.init.constant_(linear.bias, 0)
    model = nn.Sequential(*linears)
    opt = cfg.train.optimizer
    optimizer = torch.optim.Adam(
        model.parameters(), lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps, weight_decay=opt.weight_decay
    )
    s = cfg.train.scheduler
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode="min",
        factor=s.factor,
        patience=s.patience,
        threshold=s.threshold,
        threshold_mode=s.threshold_mode,
        cooldown=s.cooldown,
        min_lr=s.min_lr,
    )
    e = cfg.ema
    ema = EMA(
        model,
        beta=e.beta,
        update_after_step=e.update_after_step,
        update_every=e.update_every,
        inv_gamma=e.inv_gamma,
        power=e.power,
        min_value=e.min_value,
    )
    keep = 1 - cfg.model.dropout

    def forward(net, x, masks=None):
        for i, layer in enumerate(net):
            x = layer(x)
            if i < len(net) - 1:
                x = torch.relu(x)
                if masks is not None:
                    x = x * masks[i]
        return x

    def evaluate(net):
        with torch.no_grad():
            pred = forward(net, data.x_val).numpy()
        y = data.y_val.numpy()
        return {
            "val_loss": float(nn.functional.mse_loss(torch.tensor(pred), data.y_val)),
            "mse": mean_squared_error(y, pred),
            "mae": mean_absolute_error(y, pred),
            "r2": r2_score(y, pred),
        }

    history, best, bad = [], math.inf, 0
    n, bs = data.x_train.shape[0], cfg.train.batch_size
    for epoch in range(1, cfg.train.max_epochs + 1):
        perm = torch.randperm(n, generator=g)
        masks = [torch.from_numpy(keep_masks(mask_stream, (n, h), keep)).float() / keep for h in cfg.model.hidden_sizes]
        lr = optimizer.param_groups[0]["lr"]
        total = 0.0
        for start in range(0, n, bs):
            idx = perm[start : start + bs]
            optimizer.zero_grad()
            out = forward(model, data.x_train[idx], [m[start : start + bs] for m in masks])
            loss = nn.functional.mse_loss(out, data.y_train[idx])
            loss.backward()
            optimizer.step()
            ema.update()
            total += loss.item() * len(idx)
        raw, avg = evaluate(model), evaluate(ema.ema_model)
        scheduler.step(avg["val_loss"])
        history.append(
            {"epoch": epoch, "train_loss": total / n, "lr": lr}
            | {f"raw_{k}": v for k, v in raw.items()}
            | {f"ema_{k}": v for k, v in avg.items()}
        )
        if avg["val_loss"] < best:
            best, bad = avg["val_loss"], 0
        else:
            bad += 1
        if bad >= cfg.train.early_stopping.patience:
            break
    return history


def engine_history(configs: list[Config]) -> list[list[dict[str, float]]]:
    trainer = Trainer(configs, make_dataset(configs[0].data))
    histories = [[] for _ in configs]
    while not trainer.done:
        for record in trainer.run_epoch():
            histories[record.replica].append(record.row)
    return histories


COLUMNS = [
    "train_loss",
    "lr",
    "raw_val_loss",
    "raw_mse",
    "raw_mae",
    "raw_r2",
    "ema_val_loss",
    "ema_mse",
    "ema_mae",
    "ema_r2",
]


def assert_histories_close(ours, reference, atol=1e-5):
    assert len(ours) == len(reference), (len(ours), len(reference))
    for a, b in zip(ours, reference):
        for column in COLUMNS:
            assert a[column] == pytest.approx(b[column], abs=atol, rel=1e-5), (a["epoch"], column)


def test_engine_equals_the_seed_loop(tiny_config):
    cfg = with_overrides(tiny_config, {"train.max_epochs": 12, "train.early_stopping.patience": 4})
    assert_histories_close(engine_history([cfg])[0], seed_loop(cfg))


def test_stacked_replicas_equal_runs_alone(tiny_config):
    """Independent-run semantics: each replica of a stack equals the same config trained alone."""
    configs = [
        with_overrides(tiny_config, {"seed": 0, "ema.beta": 0.9, "train.max_epochs": 8}),
        with_overrides(tiny_config, {"seed": 1, "ema.beta": 0.99, "train.optimizer.lr": 3e-3, "model.dropout": 0.1}),
        with_overrides(tiny_config, {"seed": 2, "ema.beta": 0.999, "train.early_stopping.patience": 1}),
    ]
    stacked = engine_history(configs)
    for config, history in zip(configs, stacked):
        assert_histories_close(history, engine_history([config])[0])
    assert len({len(h) for h in stacked}) > 1  # the replicas really did stop at different epochs


def test_same_seed_same_history(tiny_config):
    first, second = engine_history([tiny_config])[0], engine_history([tiny_config])[0]
    assert first == second
    other = engine_history([with_overrides(tiny_config, {"seed": 5})])[0]
    assert other[0]["train_loss"] != first[0]["train_loss"]


def test_init_is_xavier_normal_with_zero_bias(seed_config):
    trainer = Trainer([seed_config], make_dataset(seed_config.data))
    for layer in [m for m in trainer.model.modules() if isinstance(m, StackedLinear)]:
        fan_in, fan_out, weight, bias = layer.in_features, layer.out_features, layer.weight, layer.bias
        assert torch.count_nonzero(bias) == 0
        if fan_in * fan_out >= 1000:
            assert weight.std().item() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.1)


def test_seed_data_matches_the_script(seed_config):
    data = make_dataset(seed_config.data)
    assert data.x_train.shape == (1600, 20) and data.x_val.shape == (400, 20)
    assert data.y_train.shape == (1600, 1) and data.x_train.dtype == torch.float32
    full_y = torch.cat([data.y_train, data.y_val])
    assert full_y.mean().item() == pytest.approx(0.0, abs=1e-6)  # scaled on all 2000 samples, as the seed does
    assert full_y.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)


def test_metrics_match_sklearn():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(50, 1, generator=g)
    pred = target + 0.3 * torch.randn(3, 50, 1, generator=g)
    ours = get_task("regression").evaluate(pred, target)
    for r in range(3):
        y, p = target.numpy(), pred[r].numpy()
        assert ours["mse"][r].item() == pytest.approx(mean_squared_error(y, p), abs=1e-6)
        assert ours["mae"][r].item() == pytest.approx(mean_absolute_error(y, p), abs=1e-6)
        assert ours["r2"][r].item() == pytest.approx(r2_score(y, p), abs=1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_stacked_adam_equals_torch_adam(fused):
    torch.manual_seed(0)
    params = [torch.randn(3, 7, requires_grad=True), torch.randn(3, 2, 2, requires_grad=True)]
    lrs, wds = [1e-2, 3e-3, 1e-2], [1e-5, 0.0, 1e-5]  # replicas 0 and 2 share a group
    ours = ReplicaStepper("adam", params, {"betas": (0.9, 0.999), "eps": 1e-8}, weight_decays=wds)
    twins = [[p[r].detach().clone().requires_grad_(True) for p in params] for r in range(3)]
    theirs = [torch.optim.Adam(t, lr=lr, weight_decay=wd, fused=fused) for t, lr, wd in zip(twins, lrs, wds)]
    for step in range(25):
        grads = [torch.sin(torch.arange(p.numel(), dtype=torch.float32).view_as(p) * (step + 1)) for p in params]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        ours.step(lrs)
        for r, (t, opt) in enumerate(zip(twins, theirs)):
            for tensor, g in zip(t, grads):
                tensor.grad = g[r].clone()
            opt.step()
        if step == 10:
            lrs = [1e-3, 1e-3, 1e-3]  # the plateau scheduler changes lrs between epochs
            for opt in theirs:
                opt.param_groups[0]["lr"] = 1e-3
    for r in range(3):
        for p, t in zip(params, twins[r]):
            torch.testing.assert_close(p[r].detach(), t.detach(), rtol=1e-6, atol=1e-7)


def test_plateau_scheduler_equals_torch():
    rng = np.random.default_rng(0)
    values = list(np.cumsum(rng.normal(0, 1, 120)))
    for kwargs in [
        dict(factor=0.5, patience=3, threshold=1e-4, threshold_mode="rel", cooldown=0, min_lr=0.0),
        dict(factor=0.3, patience=1, threshold=0.1, threshold_mode="abs", cooldown=2, min_lr=1e-4),
    ]:
        ours = PlateauScheduler(1e-2, **kwargs)
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-2)
        theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", **kwargs)
        for value in values:
            theirs.step(value)
            assert ours.step(value) == opt.param_groups[0]["lr"]
