"""What every averager shares: an averaged copy of a live model that only *observes* it.

An averager holds a reference to the online model (outside its module tree, so its ``state_dict`` holds the average
and its counters, not the online weights), a frozen deep copy (``averaged_model``), and the lists of tensors it
averages. ``update(step)`` is called after each optimizer step.

Cadence: ``step`` is the number of optimizer steps taken so far, the one just made included (1-based); ``None``
counts calls instead, so a loop calling ``update()`` once per optimizer step needs no argument. A rule acts at fixed
points of that step count (each rule's docstring says which); a call acts when one of its points lies in
``(previous step, step]``, so calling at every step acts exactly at the points, and a caller that calls less often
(or resumes) acts at the first call at or past each point. A step that repeats or goes backwards is a ``ValueError``.

Precision: the average is kept, and computed, in ``dtype`` (default: the model's dtype, raised to float32 for
float16/bfloat16 models: in bf16 ``0.999·a + 0.001·θ`` rounds back to ``a`` and the average never moves). Online
weights are cast on the way in; :meth:`Averager.swapped_into` casts the average back into the model's dtype.

Counters (steps, number of averages taken, the last decay) live as plain python values for speed and are mirrored into
buffers of the same name when ``state_dict()`` is taken, and read back after ``load_state_dict()``, so a resumed
averager continues exactly.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn

from emabench.averaging.checks import Decay, check_dtype, checked_step
from emabench.averaging.flat import addresses, flat_view, matching_flat_pair, pack_, storage_key, use_count

BufferPolicy = Literal["average", "copy"]
_COUNTER_DTYPES = {bool: torch.bool, int: torch.long, float: torch.float64}
OPTIONAL_COUNTERS = frozenset({"decay", "synthesized"})  # added after checkpoints were first written


class _Counters:
    """Plain attributes: an update sets them at the cost of a dict store, not of ``nn.Module.__setattr__``."""


def averaging_dtype(dtype: torch.dtype, requested: torch.dtype | None) -> torch.dtype:
    """The dtype a tensor of ``dtype`` is averaged in: ``requested``, else at least float32."""
    if requested is not None:
        return requested
    return torch.float32 if torch.finfo(dtype).bits < 32 else dtype


@torch.no_grad()
def _cast_floating_(module: nn.Module, requested: torch.dtype | None) -> None:
    """Every floating parameter and buffer of ``module`` into its averaging dtype (in place, through ``.data``)."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if tensor.is_floating_point():
            target = averaging_dtype(tensor.dtype, requested)
            if tensor.dtype != target:
                tensor.data = tensor.data.to(target)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (same parameters), else ``model``."""
    parallel = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return model.module if isinstance(model, parallel) else model


class Averager(nn.Module):
    """Base class: keeps ``averaged_model``, the paired online/averaged tensor lists, and resumable counters.

    Args:
        model: the live model being trained; read at every ``update()``, never written. A
            ``DistributedDataParallel`` wrapper is unwrapped (its module holds the same parameters).
        buffers: ``"average"`` floating-point buffers with the same rule as parameters (the seed's choice) or
            ``"copy"`` them from the online model at each update (e.g. BatchNorm running statistics; for SWA,
            re-estimate them afterwards with :func:`emabench.averaging.update_bn`).
        dtype: the floating dtype the average is kept and computed in; ``None``: each tensor's own dtype, raised to
            float32 for float16/bfloat16. ``averaged_model`` holds every floating tensor in it, so evaluate it on
            inputs of that dtype, or use :meth:`swapped_into` to evaluate in the model's own dtype.

    Raises ``ValueError`` at construction when ``model`` has nothing floating to average.
    """

    def __init__(self, model: nn.Module, *, buffers: BufferPolicy = "average", dtype: torch.dtype | None = None):
        super().__init__()
        if buffers not in ("average", "copy"):
            raise ValueError(f"buffers must be 'average' or 'copy', got {buffers!r}")
        self.buffer_policy: BufferPolicy = buffers
        self.dtype = check_dtype(dtype)
        model = unwrap(model)
        self._online = [model]  # a list hides the online model from the module tree and from state_dict
        self._refs: dict[int, tuple[list[torch.Tensor], list[tuple[nn.Module, str]]]] = {}
        online = self._averaged_tensors(model)
        if not online:
            what = "parameters or buffers" if buffers == "average" else "parameters (buffers='copy')"
            raise ValueError(f"{type(model).__name__} has nothing to average: no floating-point {what}")
        self._local = None  # for sharded models: maps DTensors to their local shards (see sharded.py)
        if any(type(t.data) is not torch.Tensor for t in online):  # tensor subclasses, e.g. DTensor shards
            from emabench.averaging import sharded  # imports torch.distributed.tensor: only where needed

            if sharded.has_dtensors(online):
                self._local = sharded.local_tensors
        averaged = self._copy_model(model)
        for param in averaged.parameters():
            param.grad = None  # the copy never trains: do not keep a copy of the gradients
        averaged.requires_grad_(False)
        averaged.eval()
        _cast_floating_(averaged, self.dtype)
        self.averaged_model = averaged
        pack_([p for p in averaged.parameters() if p.is_floating_point()])
        self._copies_buffers = buffers == "copy"
        self._pair: tuple | None = None  # the flat fast path, armed by _check_pair
        self._flat: tuple[torch.Tensor, torch.Tensor] | None = None
        self._where: tuple[int, ...] | None = None
        self._counts = _Counters()
        self._counter_names: list[str] = []
        self._register_counter("step", 0)
        self.register_load_state_dict_pre_hook(_fill_missing_counters)
        self.register_load_state_dict_post_hook(_read_counters)

    def _copy_model(self, model: nn.Module) -> nn.Module:
        try:
            return copy.deepcopy(model)
        except Exception as err:  # FSDP modules, lazy or otherwise uncopyable modules
            if self._local is not None:
                from emabench.averaging.sharded import shadow_copy

                return shadow_copy(model)
            raise ValueError(f"cannot deep-copy the model to hold its average: {err}") from err

    # --- counters ---------------------------------------------------------------------------------------------------
    def _register_counter(self, name: str, value: int | bool | float) -> None:
        """Keep ``self._counts.<name>`` (a python value) and save it as buffer ``<name>`` in ``state_dict``."""
        self.register_buffer(name, torch.tensor(value, dtype=_COUNTER_DTYPES[type(value)]))
        setattr(self._counts, name, value)
        self._counter_names.append(name)

    def _save_to_state_dict(self, destination, prefix, keep_vars):  # noqa: ANN001 - torch's signature
        for name in self._counter_names:
            self._buffers[name].fill_(getattr(self._counts, name))
        super()._save_to_state_dict(destination, prefix, keep_vars)

    @property
    def num_updates(self) -> int:
        """The last step passed to :meth:`update` (the number of calls when no step is passed)."""
        return self._counts.step

    @property
    def online_model(self) -> nn.Module:
        return self._online[0]

    @property
    def ema_model(self) -> nn.Module:
        """Alias of ``averaged_model`` (ema-pytorch's name)."""
        return self.averaged_model

    # --- the update -------------------------------------------------------------------------------------------------
    def update(self, step: int | None = None) -> None:
        """Observe the online model after an optimizer step.

        ``step``: optimizer steps taken so far, this one included (1-based); ``None``: one more than the last step
        (i.e. count calls). Must increase from call to call. The rule (:meth:`_weight`) says what the call does.

        Written as one function on purpose: inside a training loop each extra Python call costs about as much as the
        ``lerp_`` itself (the target: an update within 1.5× a bare ``lerp_``).
        """
        counts = self._counts
        last = counts.step
        if step is None:
            step = last + 1
        elif type(step) is not int or step <= last:
            step = checked_step(step, last)
        counts.step = step
        weight = self._weight(last, step)
        if weight is None:
            return
        pair = self._pair
        if pair is not None and type(weight) is float:
            averaged, online, same_dtype, avg_key, onl_key, avg_uses, onl_uses = pair
            if use_count(avg_key) == avg_uses and use_count(onl_key) == onl_uses:  # no tensor left either buffer
                # detached flat views: no no_grad context needed, which is half the cost at this size
                if weight == 1.0:
                    averaged.copy_(online)
                elif same_dtype:
                    averaged.lerp_(online, weight)
                else:  # add_ casts in the kernel: no cast copy of the online weights
                    averaged.mul_(1.0 - weight).add_(online, alpha=weight)
                if self._copies_buffers:
                    self._copy_buffers()
                return
        if type(weight) is float and weight == 1.0:
            self.copy_from_online()
        else:
            self._lerp_to_online(weight)

    def _weight(self, last: int, step: int) -> Decay | None:
        """The rule, for the steps in ``(last, step]``: the lerp weight ``1 − decay`` of this call's update
        (``1.0`` copies; a 1-D tensor for per-replica decays), or ``None`` when there is nothing (more) to do."""
        raise NotImplementedError

    # --- tensors ----------------------------------------------------------------------------------------------------
    def _averaged_tensors(self, module: nn.Module) -> list[torch.Tensor]:
        """The tensors of ``module`` the rule averages: float params, and float buffers if averaged.

        Parameter objects survive ``module.to()`` (their ``.data`` is swapped in place), so they are looked up
        once; buffers are replaced by ``.to()``, so they are re-read from their owning module at every call.
        """
        key = id(module)
        if key not in self._refs:
            params = [p for p in module.parameters() if p.is_floating_point()]
            owners = []
            if self.buffer_policy == "average":
                for name, buffer in module.named_buffers():
                    if buffer.is_floating_point():
                        owner_name, _, leaf = name.rpartition(".")
                        owners.append((module.get_submodule(owner_name), leaf))
            self._refs[key] = (params, owners)
        params, owners = self._refs[key]
        return params + [owner._buffers[leaf] for owner, leaf in owners]  # a new list: callers may extend it

    def refresh(self) -> None:
        """Forget cached tensor lists: call after replacing whole parameters or buffers of either model."""
        self._refs.clear()
        self._pair = self._flat = self._where = None

    def tensor_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(averaged, online) lists of the tensors the rule averages: float params, and buffers if averaged; for a
        sharded model, their local shards (updated in place: the update never communicates)."""
        return self._local_tensors(self.averaged_model), self._local_tensors(self.online_model)

    def _local_tensors(self, module: nn.Module) -> list[torch.Tensor]:
        tensors = self._averaged_tensors(module)
        return tensors if self._local is None else self._local(tensors)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The average as full plain tensors under the model's ``state_dict`` keys: to save it or load it into an
        unsharded model. For a sharded model every shard is gathered, a collective: call it on every rank."""
        state = self.averaged_model.state_dict()
        if self._local is None:
            return {k: v.detach().clone() for k, v in state.items()}
        from emabench.averaging.sharded import gathered

        return gathered(state)

    def _check_pair(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Both sides as one flat buffer each (same layout), after a full check of every tensor's address; else
        ``None``. Also re-arms the fast path of :meth:`update`.

        The fast path (in :meth:`update`) only compares each buffer's use count with the one recorded here: a
        replaced tensor storage changes it and leads back here. The one case a count cannot see is a replacement
        offset by a new lasting reference to the same buffer taken between the same two updates
        (``saved = p.data; p.data = other``); call :meth:`refresh` after such surgery.
        """
        averaged, online = self.tensor_pairs()
        where = addresses(averaged) + addresses(online)
        if where != self._where:
            if self._repack_average(averaged, online):
                where = addresses(averaged) + addresses(online)
            self._where = where
            self._flat = matching_flat_pair(averaged, online)
        flat = self._flat
        self._pair = None
        if flat is not None:
            avg, onl = flat
            keys = storage_key(avg), storage_key(onl)
            if keys[0] is not None:
                self._pair = (avg, onl, avg.dtype == onl.dtype, *keys, use_count(keys[0]), use_count(keys[1]))
        return flat

    def _repack_average(self, averaged: list[torch.Tensor], online: list[torch.Tensor]) -> bool:
        """Pack the average's parameters into one buffer again when the online side is flat and they no longer
        are (e.g. after ``averaged_model.float()``). The average is ours to lay out."""
        if flat_view(online) is None or flat_view(averaged) is not None:
            return False
        if not all(isinstance(t, nn.Parameter) for t in averaged):
            return False
        return pack_(averaged) is not None

    @torch.no_grad()
    def copy_from_online(self) -> None:
        """Set the average to the online weights (and buffers), cast to the average's dtype."""
        flat = self._check_pair()
        if flat is not None:
            flat[0].copy_(flat[1])
        else:
            averaged, online = self.tensor_pairs()
            torch._foreach_copy_(averaged, _like(online, averaged))
        self._copy_buffers()

    @torch.no_grad()
    def _copy_buffers(self) -> None:
        if self._copies_buffers:
            for averaged, online in zip(self.averaged_model.buffers(), self.online_model.buffers()):
                averaged.copy_(online)

    @torch.no_grad()
    def _lerp_to_online(self, weight: Decay) -> None:
        """``average ← average + weight·(θ − average)`` in one fused call, then copy buffers if so configured.

        ``weight`` (``1 − decay``) is a float or a 1-D tensor of length R (one value per replica stacked along dim 0).
        """
        flat = self._check_pair() if type(weight) is float else None
        if flat is not None:
            averaged, online = flat
            if averaged.dtype == online.dtype:
                averaged.lerp_(online, weight)
            else:
                averaged.mul_(1.0 - weight).add_(online, alpha=weight)
        else:
            averaged, online = self.tensor_pairs()
            torch._foreach_lerp_(averaged, _like(online, averaged), per_tensor(weight, averaged))
        self._copy_buffers()

    def forward(self, *args, **kwargs):
        return self.averaged_model(*args, **kwargs)

    @contextlib.contextmanager
    def swapped_into(self, model: nn.Module | None = None) -> Iterator[nn.Module]:
        """Temporarily load the averaged weights into ``model`` (default: the online model).

        Seed 003's apply/restore: inside the block ``model`` holds the average, cast to its own dtypes; afterwards,
        also on an exception, its own weights, buffers and ``training`` flag are restored exactly.
        """
        model = self.online_model if model is None else unwrap(model)
        source = self.averaged_model.state_dict()
        targets = model.state_dict()
        if list(source) != list(targets):
            raise ValueError("swapped_into needs a model with the averaged model's state_dict keys")
        saved = {k: v.detach().clone() for k, v in targets.items()}
        was_training = model.training
        try:
            with torch.no_grad():
                for key, target in targets.items():
                    target.copy_(source[key])
            yield model
        finally:
            with torch.no_grad():
                for key, value in model.state_dict().items():
                    value.copy_(saved[key])
            model.train(was_training)


class CappedDecay:
    """``decay`` of the EMA rules whose schedule is capped by ``beta``: ``min(beta, schedule)``.

    The counter ``decay`` holds the decay of the last update for a float ``beta``, and the shared schedule value for
    a per-replica ``beta`` (each replica's decay is then ``min(beta[r], schedule)``), so it survives ``state_dict``.
    """

    beta: Decay
    _counts: _Counters

    @property
    def decay(self) -> Decay:
        """The decay used by the last update (0 before any, and while copying); a tensor for a per-replica beta."""
        value = self._counts.decay
        return self.beta.clamp(max=value) if isinstance(self.beta, torch.Tensor) else value


def per_tensor(value: float | torch.Tensor, tensors: list[torch.Tensor]) -> float | list[torch.Tensor]:
    """A ``torch._foreach_*`` scalar: a float as is, a per-replica 1-D tensor as a broadcastable view per tensor."""
    if not isinstance(value, torch.Tensor):
        return float(value)
    value = value.to(device=tensors[0].device, dtype=tensors[0].dtype)
    return [value.view(-1, *[1] * (t.dim() - 1)) for t in tensors]


def _like(sources: list[torch.Tensor], targets: list[torch.Tensor]) -> list[torch.Tensor]:
    """``sources`` cast to each target's dtype and device where they differ (ema-pytorch's ``coerce_dtype``)."""
    return [
        s if s.dtype == t.dtype and s.device == t.device else s.detach().to(device=t.device, dtype=t.dtype)
        for s, t in zip(sources, targets)
    ]


def _fill_missing_counters(module: Averager, state_dict, prefix, *args) -> None:  # noqa: ANN001 - torch's hook
    # state_dicts saved before these counters existed load with the fresh averager's value for them
    for name in OPTIONAL_COUNTERS.intersection(module._counter_names):
        state_dict.setdefault(prefix + name, module._buffers[name].clone())


def _read_counters(module: Averager, incompatible_keys) -> None:  # noqa: ANN001 - torch's hook signature
    for name in module._counter_names:
        value = module._buffers[name]
        kind = type(getattr(module._counts, name))
        setattr(module._counts, name, kind(value.item()))
