"""Averages of sharded models (FSDP2 ``fully_shard``, or any model whose parameters are DTensors), kept as shards.

Every averager works on such a model unchanged: its average holds DTensors with the model's own placements, so each
rank keeps only its shard of the average (memory per rank: the average's shard), and an update is an elementwise
operation between local shards (no gather, no communication). A full average is gathered only when asked for:
:meth:`~emabench.averaging.Averager.full_state_dict` (an all-gather per tensor, to save or to load into an unsharded
model), or :meth:`~emabench.averaging.Averager.swapped_into` the sharded model (a local copy of the shards; the
model's own forward then gathers as in training). ``averager.state_dict()`` holds DTensors: save and load it with
``torch.distributed.checkpoint``, which also reshards to another world size.

FSDP modules refuse ``copy.deepcopy`` (pytorch/pytorch#149138 is torch's ``AveragedModel`` failing on exactly this),
so the average of one is a :class:`ShardedCopy`: the model's module tree with cloned parameter and buffer shards, and
no forward of its own. Build the averager after ``fully_shard``: sharding replaces the model's parameters.

A per-replica ``beta`` (a model stacking R replicas along dim 0) needs that dimension unsharded (FSDP2 shards dim 0
unless told otherwise by ``shard_placement_fn``).

This module imports ``torch.distributed.tensor`` (~0.5 s); the averagers import it only when a model has DTensor
parameters.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.tensor import DTensor


def local_tensors(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each DTensor's local shard (a view: writing it writes the DTensor); other tensors as they are."""
    return [t.to_local() if isinstance(t, DTensor) else t for t in tensors]


class ShardedCopy(nn.Module):
    """The module tree of a sharded model holding the average's parameter and buffer shards, without a forward.

    Evaluate the average with ``averager.swapped_into(model)`` (the sharded model's forward gathers the shards as
    in training) or load ``averager.full_state_dict()`` into an unsharded model.
    """

    def forward(self, *args, **kwargs):
        raise RuntimeError(
            "the average of a sharded model has no forward of its own: evaluate it with "
            "`with averager.swapped_into(model): model(x)` or load averager.full_state_dict() into an unsharded model"
        )


@torch.no_grad()
def shadow_copy(model: nn.Module) -> ShardedCopy:
    """A :class:`ShardedCopy` of ``model``: same module names, parameters (tied ones stay tied) and buffers cloned
    with their placements, so its ``state_dict`` keys are the model's."""
    root = ShardedCopy()
    copies: dict[str, nn.Module] = {"": root}
    clones: dict[int, nn.Parameter] = {}
    for name, module in model.named_modules():
        if name:
            parent, _, leaf = name.rpartition(".")
            copies[name] = ShardedCopy()
            copies[parent].add_module(leaf, copies[name])
        target = copies[name]
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) not in clones:
                clones[id(param)] = nn.Parameter(param.detach().clone(), requires_grad=False)
            target.register_parameter(param_name, clones[id(param)])
        for buffer_name, buffer in module.named_buffers(recurse=False):
            persistent = buffer_name not in module._non_persistent_buffers_set
            target.register_buffer(buffer_name, buffer.detach().clone(), persistent=persistent)
    return root


def gathered(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every DTensor gathered into a full plain tensor (a collective: call it on every rank)."""
    return {k: v.full_tensor() if isinstance(v, DTensor) else v.detach().clone() for k, v in state.items()}


def has_dtensors(tensors: list[torch.Tensor]) -> bool:
    return any(isinstance(t, DTensor) for t in tensors)


def save_sharded(averager: nn.Module, checkpoint_id: str) -> None:
    """Save ``averager.state_dict()`` with ``torch.distributed.checkpoint``: each rank writes its own shards
    (a collective: call it on every rank with the same ``checkpoint_id``, a directory)."""
    import torch.distributed.checkpoint as dcp

    dcp.save(averager.state_dict(), checkpoint_id=checkpoint_id)


def load_sharded(averager: nn.Module, checkpoint_id: str) -> None:
    """Load what :func:`save_sharded` wrote into ``averager`` (built like the saved one, on a model sharded the same
    way or differently: the checkpoint reshards). A collective, like the save.

    ``torch.distributed.checkpoint`` loads in place into a state_dict of the right structure; post-hoc EMA's list of
    snapshots has no structure before its snapshots exist, so placeholders shaped like its profiles' averages are
    made first, as many as the checkpoint holds.
    """
    import torch.distributed.checkpoint as dcp

    state = averager.state_dict()
    keys = list(dcp.FileSystemReader(checkpoint_id).read_metadata().state_dict_metadata)
    for prefix, module in averager.named_modules():
        profiles = getattr(module, "profiles", None)
        if not (hasattr(module, "snapshots") and profiles):
            continue
        head = f"{prefix}.{'_extra_state'}" if prefix else "_extra_state"
        marker = f"{head}.snapshots."
        count = len({key[len(marker) :].split(".")[0] for key in keys if key.startswith(marker)})
        template = profiles[0]._modules["averaged_model"].state_dict()
        state[head] = {
            "snapshots": [
                {"step": 0, "gamma": 0.0, "state": {k: torch.zeros_like(v, device="cpu") for k, v in template.items()}}
                for _ in range(count)
            ]
        }
    dcp.load(state, checkpoint_id=checkpoint_id)
    averager.load_state_dict(state)
