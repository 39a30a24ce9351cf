"""One replica's rows of a stacked trainer's state, and the way back: what a per-run checkpoint holds.

Every per-replica tensor (leading dimension = the stack size) is cut to its row; values shared by the stack
(counters, the step, snapshot steps) are kept whole and checked equal when several replicas are stacked again.
Only tensors, numbers, strings, lists and dicts: the result loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def row(tensor: torch.Tensor, position: int) -> torch.Tensor:
    # a copy, not a view: torch.save writes a view's whole storage, i.e. every replica
    return tensor.detach()[position : position + 1].to("cpu", copy=True)


def rows(state: dict[str, Any], position: int, size: int) -> dict[str, Any]:
    """``{"values": state with per-replica tensors cut to their row, "rows": [keys cut]}``."""
    values, rows = {}, []
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == size:
            values[key] = row(value, position)
            rows.append(key)
        else:
            values[key] = value.detach().to("cpu", copy=True) if isinstance(value, torch.Tensor) else value
    return {"values": values, "rows": rows}


def stack_rows(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Inverse of :func:`rows` over several replicas: rows concatenated, shared values checked equal."""
    rows = set(parts[0]["rows"])
    if any(set(p["rows"]) != rows or p["values"].keys() != parts[0]["values"].keys() for p in parts):
        raise ValueError("the saved replicas do not have the same layout")
    return {
        key: torch.cat([p["values"][key] for p in parts])
        if key in rows
        else shared([p["values"][key] for p in parts], key)
        for key in parts[0]["values"]
    }


def shared(values: Sequence[Any], what: str) -> Any:
    first = values[0]
    same = all(torch.equal(v, first) if isinstance(v, torch.Tensor) else v == first for v in values)
    if not same:
        raise ValueError(f"{what} differs between replicas saved for one stack")
    return first


def averager_rows(averager: Any, position: int, size: int) -> dict[str, Any]:
    """An averager's ``state_dict`` (average, counters), post-hoc snapshots and last decays, cut to one replica."""
    state = dict(averager.state_dict())
    extras = {key: state.pop(key) for key in [k for k in state if k.endswith("_extra_state")]}
    snapshots = {
        key: [
            {"step": s["step"], "gamma": s["gamma"], "state": rows(s["state"], position, size)}
            for s in extra["snapshots"]
        ]
        for key, extra in extras.items()
    }
    decays = {}
    for name, module in averager.named_modules():
        decay = getattr(module, "_decay", None)
        if isinstance(decay, torch.Tensor):
            decay = float(decay[position]) if decay.dim() == 1 and decay.shape[0] == size else float(decay)
        if decay is not None:
            decays[name] = float(decay)
    return {"state": rows(state, position, size), "snapshots": snapshots, "decays": decays}


def load_averager_rows(averager: Any, parts: Sequence[dict[str, Any]]) -> None:
    state = stack_rows([p["state"] for p in parts])
    for key in parts[0]["snapshots"]:
        lists = [p["snapshots"][key] for p in parts]
        if len({len(snaps) for snaps in lists}) != 1:
            raise ValueError("post-hoc snapshots differ between replicas saved for one stack")
        state[key] = {
            "snapshots": [
                {
                    "step": shared([s["step"] for s in snaps], "snapshot step"),
                    "gamma": shared([s["gamma"] for s in snaps], "snapshot gamma"),
                    "state": stack_rows([s["state"] for s in snaps]),
                }
                for snaps in zip(*lists)
            ]
        }
    averager.load_state_dict(state)
    modules = dict(averager.named_modules())
    for name in parts[0]["decays"]:
        module = modules[name]
        beta = getattr(module, "beta", None)
        values = [p["decays"][name] for p in parts]
        # a per-replica beta keeps a per-replica decay (its dtype); a shared one a float, as the averager itself does
        module._decay = torch.tensor(values, dtype=beta.dtype) if isinstance(beta, torch.Tensor) else values[0]
