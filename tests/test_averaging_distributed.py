"""The averagers under DistributedDataParallel and FSDP2 on CPU processes (gloo), and seed 000's two cheaper
designs. Each test spawns 2 or 4 processes; assertions run inside them (a failure carries the rank's traceback)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from emabench.averaging import ConstantEMA
from emabench.averaging.distributed import (
    CentralEMA,
    MergedAverages,
    drift_bound_central,
    state_tensors,
    verify_consistent,
)
from tests.averager_kinds import KINDS, evaluated
from tests.distributed_helpers import spawn

GLOBAL_BATCH = 16


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))


def _batch(step: int, rank: int = 0, world: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's rows of the global batch of ``step`` (the same global batch whatever the world size)."""
    x = torch.randn(GLOBAL_BATCH, 3, generator=torch.Generator().manual_seed(step))
    rows = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    return x[rows], x[rows].sum(1, keepdim=True).sin()


def _train_ddp(rank: int, world: int, averagers: dict, model: nn.Module, steps: range) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in steps:
        x, y = _batch(step, rank, world)
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()
        for averager in averagers.values():
            averager.update(step)


def _single_process_reference(steps: range) -> dict:
    """Every kind trained in one process on the global batch: what DDP's averages must equal."""
    model = _mlp()
    averagers = {name: factory(model) for name, factory in KINDS.items()}
    _train_ddp(0, 1, averagers, model, steps)
    return averagers


# ---------------------------------------------------------------- DDP


def _ddp_worker(rank: int, world: int, out: str) -> None:
    ddp = DDP(_mlp())
    # built on the wrapper for half the kinds, on its module for the others: the same averager either way
    averagers = {name: f(ddp if i % 2 else ddp.module) for i, (name, f) in enumerate(KINDS.items())}
    _train_ddp(rank, world, averagers, ddp, range(1, 13))
    for name, averager in averagers.items():
        assert verify_consistent(averager) == [], name
    if rank == 0:
        torch.save({name: a.state_dict() for name, a in averagers.items()}, Path(out) / "ddp.pt")

    broken = averagers["ema"]
    if rank == world - 1:
        with torch.no_grad():
            state_tensors(broken)[0].add_(1e-7)  # one rank's average goes its own way
    assert verify_consistent(broken, raise_error=False) == [world - 1]
    with pytest.raises(RuntimeError, match=rf"EMA differs across ranks: ranks \[{world - 1}\] do not match rank 0"):
        verify_consistent(broken)

    # BatchNorm: DDP broadcasts rank 0's running statistics only at the next forward, so right after a step every
    # rank holds its own; an averager of them differs across ranks, and the check says so
    bn = DDP(nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Linear(8, 1)))
    ema = ConstantEMA(bn, beta=0.9)
    _train_ddp(rank, world, {"ema": ema}, bn, range(1, 4))
    assert verify_consistent(ema, raise_error=False) == list(range(1, world))


def test_ddp_averages_are_identical_on_every_rank_and_load_in_one_process(tmp_path):
    """2 processes: every kind stays identical across ranks without communication, the check finds a rank that
    differs, and rank 0's state_dicts load in a single process and equal a single-process run on the global batch."""
    spawn(_ddp_worker, 2, str(tmp_path))
    saved = torch.load(tmp_path / "ddp.pt", weights_only=True)
    reference = _single_process_reference(range(1, 13))
    for name, factory in KINDS.items():
        loaded = factory(_mlp())
        loaded.load_state_dict(saved[name])
        assert loaded.num_updates == 12
        for key, value in evaluated(reference[name]).state_dict().items():
            torch.testing.assert_close(evaluated(loaded).state_dict()[key], value, rtol=1e-5, atol=1e-6)


def _ddp_resume_worker(rank: int, world: int, out: str) -> None:
    ddp = DDP(_mlp())
    saved = torch.load(Path(out) / "ddp.pt", weights_only=True)
    # the model is not the one the averages were taken from; only the averages and counters carry over
    averagers = {name: f(ddp) for name, f in KINDS.items()}
    for name, averager in averagers.items():
        averager.load_state_dict(saved[name])
    _train_ddp(rank, world, averagers, ddp, range(13, 25))
    for name, averager in averagers.items():
        assert verify_consistent(averager) == [], name
    if rank == 0:
        torch.save({name: evaluated(a).state_dict() for name, a in averagers.items()}, Path(out) / "resumed.pt")


@pytest.mark.slow
def test_a_state_saved_on_two_ranks_resumes_on_four(tmp_path):
    spawn(_ddp_worker, 2, str(tmp_path))
    spawn(_ddp_resume_worker, 4, str(tmp_path))
    resumed = torch.load(tmp_path / "resumed.pt", weights_only=True)
    saved = torch.load(tmp_path / "ddp.pt", weights_only=True)
    model = _mlp()  # the same single-process continuation, from the same saved averages
    averagers = {name: f(model) for name, f in KINDS.items()}
    for name, averager in averagers.items():
        averager.load_state_dict(saved[name])
    _train_ddp(0, 1, averagers, model, range(13, 25))
    for name, averager in averagers.items():
        for key, value in evaluated(averager).state_dict().items():
            torch.testing.assert_close(resumed[name][key], value, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- FSDP2: shards of the average


def _sharded_mlp(world: int) -> nn.Module:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 9), nn.ReLU(), nn.Linear(9, 3))  # uneven shards
    mesh = init_device_mesh("cpu", (world,))
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def _shard(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def _fsdp_worker(rank: int, world: int, out: str) -> None:
    from torch.distributed.tensor import DTensor

    from emabench.averaging.sharded import load_sharded, save_sharded

    model = _sharded_mlp(world)
    mirror = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 9), nn.ReLU(), nn.Linear(9, 3))
    sharded = {name: f(model) for name, f in KINDS.items()}
    gathered = {name: f(mirror) for name, f in KINDS.items()}  # the gather-every-step design, as the reference
    central, central_reference = CentralEMA(model, beta=0.9, sync_every=1), ConstantEMA(mirror, beta=0.9)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    generator = torch.Generator().manual_seed(rank)
    for step in range(1, 101):
        model(torch.randn(4, 5, generator=generator)).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            for mine, full in zip(mirror.parameters(), model.parameters()):
                mine.copy_(full.full_tensor())
        for name in KINDS:
            sharded[name].update(step)
            gathered[name].update(step)
        central.update(step)
        central_reference.update(step)
    held = central.broadcast()  # syncing every step, the owner's average is the per-step EMA of the full weights
    for name, value in central_reference.averaged_model.named_parameters():
        torch.testing.assert_close(held[name], value, rtol=0, atol=1e-6)
    errors = {}
    for name in KINDS:
        local = list(evaluated(sharded[name]).parameters())
        assert all(isinstance(p, DTensor) for p in local), name  # the average is kept as shards
        full = sharded[name].full_state_dict()
        reference = evaluated(gathered[name]).state_dict()
        errors[name] = max(float((full[k] - reference[k]).abs().max()) for k in reference)
        assert errors[name] <= 1e-6, (name, errors[name])

    path = Path(out) / f"fsdp{world}"
    for name in KINDS:  # a sharded state_dict round-trips through torch.distributed.checkpoint
        save_sharded(sharded[name], str(path / name))
        restored = KINDS[name](model)
        load_sharded(restored, str(path / name))
        assert restored.num_updates == 100
        for step in range(101, 106):
            sharded[name].update(step)
            restored.update(step)
        ours, theirs = evaluated(sharded[name]).state_dict(), evaluated(restored).state_dict()
        for key, value in ours.items():
            assert torch.equal(_shard(value), _shard(theirs[key])), key
    if rank == 0:
        (Path(out) / f"fsdp{world}.json").write_text(json.dumps(errors))


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 4])
def test_sharded_average_equals_the_unsharded_one_and_round_trips(tmp_path, world):
    spawn(_fsdp_worker, world, str(tmp_path))
    errors = json.loads((tmp_path / f"fsdp{world}.json").read_text())
    assert set(errors) == set(KINDS) and max(errors.values()) <= 1e-6


def _save_for_reshard_worker(rank: int, world: int, out: str) -> None:
    from emabench.averaging.sharded import save_sharded

    model = _sharded_mlp(world)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    averagers = {name: KINDS[name](model) for name in ("ema", "posthoc")}
    for step in range(1, 21):
        model(torch.randn(4, 5, generator=torch.Generator().manual_seed(step * world + rank))).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        for averager in averagers.values():
            averager.update(step)
    for name, averager in averagers.items():
        save_sharded(averager, str(Path(out) / name))
        if name == "posthoc":
            averager.synthesize(sigma_rel=0.1)
        full = averager.full_state_dict()
        if rank == 0:
            torch.save(full, Path(out) / f"{name}_on_{world}.pt")


def _reshard_worker(rank: int, world: int, out: str) -> None:
    from emabench.averaging.sharded import load_sharded

    model = _sharded_mlp(world)
    for name in ("ema", "posthoc"):
        restored = KINDS[name](model)
        load_sharded(restored, str(Path(out) / name))
        assert restored.num_updates == 20
        if name == "posthoc":
            restored.synthesize(sigma_rel=0.1)
        full = restored.full_state_dict()
        if rank == 0:
            torch.save(full, Path(out) / f"{name}_on_{world}.pt")


@pytest.mark.slow
def test_a_sharded_state_saved_on_two_ranks_loads_on_four(tmp_path):
    spawn(_save_for_reshard_worker, 2, str(tmp_path))
    spawn(_reshard_worker, 4, str(tmp_path))
    for name in ("ema", "posthoc"):
        two, four = (torch.load(tmp_path / f"{name}_on_{w}.pt", weights_only=True) for w in (2, 4))
        assert all(torch.isfinite(two[k]).all() and torch.equal(two[k], four[k]) for k in two)


# ---------------------------------------------------------------- seed 000's two other designs


def _rank_weights(step: int, rank: int, n: int) -> torch.Tensor:
    """Rank ``rank``'s weights at ``step``: a shared drifting trajectory plus the rank's own bounded wobble."""
    i = torch.arange(n, dtype=torch.float64)
    shared = torch.sin(step / 50 + i) + 0.002 * step
    return (shared + 0.05 * torch.sin(step / 3 + 7 * rank + i)).float()


def _set(model: nn.Module, flat: torch.Tensor) -> None:
    with torch.no_grad():
        nn.utils.vector_to_parameters(flat, model.parameters())


def _designs_worker(rank: int, world: int, out: str) -> None:
    beta, k, steps = 0.99, 5, 400
    model = nn.Linear(6, 4)
    n = sum(p.numel() for p in model.parameters())
    mean = [torch.stack([_rank_weights(t, r, n) for r in range(world)]).double().mean(0) for t in range(steps + 1)]
    exact = mean[1].clone()  # the per-step EMA of the ranks' mean weights (the first update copies)
    # float64 averages: the drift measured is the design's, not float32 rounding
    central = CentralEMA(model, beta=beta, sync_every=k, dtype=torch.float64)
    merged = MergedAverages(ConstantEMA(model, beta=beta, dtype=torch.float64), merge_every=k)
    central_drift = merged_drift = merged_at_merge = spread = step_change = 0.0
    for t in range(1, steps + 1):
        _set(model, _rank_weights(t, rank, n))
        central.update(t)
        merged.update(t)
        if t > 1:
            exact = beta * exact + (1 - beta) * mean[t]
            step_change = max(step_change, float((mean[t] - mean[t - 1]).abs().max()))
        spread = max(spread, float((_rank_weights(t, rank, n).double() - mean[t]).abs().max()))
        local = nn.utils.parameters_to_vector(merged.averager.averaged_model.parameters()).double()
        since_merge = (t - 1) % k  # merges at 1, k+1, 2k+1, …
        if since_merge == 0:
            merged_at_merge = max(merged_at_merge, float((local - exact).abs().max()))
        else:
            merged_drift = max(merged_drift, float((local - exact).abs().max()) / (1 - beta**since_merge))
        if (t - 1) % k == 0 and central.is_owner:
            held = torch.cat([central.average[name].reshape(-1) for name, _ in model.named_parameters()]).double()
            central_drift = max(central_drift, float((held - exact).abs().max()))
    everywhere = central.broadcast()
    if central.is_owner:
        assert all(torch.equal(everywhere[name], central.average[name]) for name in everywhere)
        resumed = CentralEMA(model, beta=beta, sync_every=k, dtype=torch.float64)
        resumed.load_state_dict(central.state_dict())  # the owner's average and its sync position
        assert int(resumed.last_sync) == int(central.last_sync) == 396 and int(resumed.step) == steps
        assert all(torch.equal(resumed.average[name], value) for name, value in central.average.items())
    merged.update(steps + 1)  # a merge step: the ranks agree again
    assert verify_consistent(merged.averager, raise_error=False) == []
    measured = torch.tensor([central_drift, merged_drift, merged_at_merge, spread, step_change], dtype=torch.float64)
    dist.all_reduce(measured, op=dist.ReduceOp.MAX)
    central_drift, merged_drift, merged_at_merge, spread, step_change = measured.tolist()
    bound = drift_bound_central(beta, k, step_change)
    assert central_drift <= bound * (1 + 1e-6), (central_drift, bound)
    assert merged_at_merge <= 1e-12, merged_at_merge  # a merge restores the exact average (linearity)
    assert merged_drift <= spread * (1 + 1e-6), (merged_drift, spread)  # drift/(1 − β^j) ≤ max |θ_r − θ̄|
    if rank == 0:
        figures = {
            "central_drift": central_drift,
            "central_bound": bound,
            "max_step_change": step_change,
            "merged_drift_over_1_minus_beta_j": merged_drift,
            "merged_error_at_merge": merged_at_merge,
            "rank_spread": spread,
        }
        (Path(out) / f"designs{world}.json").write_text(json.dumps(figures))


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 4])
def test_central_and_merged_designs_drift_within_their_bounds(tmp_path, world):
    spawn(_designs_worker, world, str(tmp_path))
    figures = json.loads((tmp_path / f"designs{world}.json").read_text())
    assert 0 < figures["central_drift"] <= figures["central_bound"] * (1 + 1e-6)
    assert math.isfinite(figures["merged_drift_over_1_minus_beta_j"])
