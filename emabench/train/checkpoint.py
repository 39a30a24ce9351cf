"""A trainer's state cut to one replica, and back: what a per-run checkpoint holds.

Plain types only (tensors on the CPU, numbers, strings, lists, dicts), so ``torch.load(weights_only=True)`` reads it
back. Per-replica tensors (leading dimension = the stack size) are cut to their row (:mod:`emabench.stack.rows`);
counters shared by the stack are kept whole and checked equal when replicas are stacked again, so a replica
continues in any new stack exactly as it would have in its old one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from emabench.stack import rows

Trainer = Any  # emabench.train.loop.Trainer, which imports this module (so not imported back here)


def replica_state(trainer: Trainer, position: int) -> dict[str, Any]:
    """Everything that continues the replica at stack ``position`` on its own, after a finished epoch."""
    size = len(trainer.ids)
    state: dict[str, Any] = {
        "epoch": trainer.epoch,
        "step": trainer.step,
        "model": rows.rows(trainer.model.state_dict(), position, size),
        "optimizer": [rows.rows(view, position, size) for view in trainer.stepper.state_views()],
        "averagers": {
            name: rows.averager_rows(averager, position, size) for name, averager in trainer.averagers.items()
        },
        "plateau": trainer.plateaus[position].state_dict(),
        "early_stopping": trainer.stoppers[position].state_dict(),
        "swa_lr_start": trainer.swa_lr_start[position],
        "last_lr": trainer._last_lrs[position],
        "generator": trainer.generators[position].get_state(),
        "mask_generator": trainer.mask_generators[position].bit_generator.state,
    }
    if trainer.configs[0].model.name == "custom":  # a user's dropout draws from torch's global generator
        state["global_generator"] = torch.get_rng_state()
    if trainer.parallel is not None:  # every process's own (a collective: every rank saves, rank 0 writes)
        state["rank_generators"] = trainer.parallel.generator_states()
    if trainer.scaler is not None:
        state["grad_scaler"] = {k: v for k, v in trainer.scaler.state_dict().items() if v is not None}
    if trainer.best is not None:  # every model's weights at its best validation epoch so far (a test set's protocols)
        state["best"] = trainer.best.replica_state(position, size)
    return state


@torch.no_grad()
def load_replica_states(trainer: Trainer, states: Sequence[dict[str, Any]]) -> None:
    """Load one :func:`replica_state` per stack position into a freshly built trainer (in place: the averagers keep
    observing the same parameter tensors). Raises ``ValueError`` if the states do not fit the trainer's configs."""
    if len(states) != len(trainer.ids) or trainer.epoch != 0:
        raise ValueError(f"need one state per replica of a fresh trainer ({len(trainer.ids)}), got {len(states)}")
    epochs = {int(s["epoch"]) for s in states}
    if len(epochs) != 1:
        raise ValueError(f"replicas saved after different epochs cannot share a stack: {sorted(epochs)}")
    try:
        trainer.model.load_state_dict(rows.stack_rows([s["model"] for s in states]))
        trainer.stepper.load_state_views([rows.stack_rows(parts) for parts in zip(*(s["optimizer"] for s in states))])
        for name, averager in trainer.averagers.items():
            rows.load_averager_rows(averager, [s["averagers"][name] for s in states])
        for position, state in enumerate(states):
            trainer.plateaus[position].load_state_dict(dict(state["plateau"]))
            trainer.stoppers[position].load_state_dict(dict(state["early_stopping"]))
            trainer.swa_lr_start[position] = state["swa_lr_start"]
            trainer._last_lrs[position] = float(state["last_lr"])
            trainer.generators[position].set_state(state["generator"])
            trainer.mask_generators[position].bit_generator.state = dict(state["mask_generator"])
        if "global_generator" in states[0]:
            torch.set_rng_state(states[0]["global_generator"])
        if trainer.parallel is not None:
            seed, step = trainer.configs[0].seed, int(states[0]["step"])
            trainer.parallel.restore_generator(states[0].get("rank_generators"), seed, step)
        if trainer.scaler is not None and "grad_scaler" in states[0]:
            trainer.scaler.load_state_dict(dict(states[0]["grad_scaler"]))
        if trainer.best is not None:
            trainer.best.load([s["best"] for s in states])
        trainer.step = int(rows.shared([int(s["step"]) for s in states], "optimizer step"))
    except (KeyError, RuntimeError, TypeError) as err:  # a missing entry or a shape that does not fit this config
        raise ValueError(f"the saved state does not fit this config: {err}") from None
    trainer.epoch = epochs.pop()
