"""What every averager shares: an averaged copy of a live model that only *observes* it.

An averager holds a reference to the online model (outside its module tree, so its ``state_dict`` holds the average
and its counters, not the online weights), a frozen deep copy (``averaged_model``), and the lists of tensors it
averages. ``update()`` is called after each optimizer step.

Counters (steps, number of averages taken) live as python ints for speed and are mirrored into buffers of the same
name when ``state_dict()`` is taken, and read back after ``load_state_dict()``, so a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn

from emabench.averaging.flat import matching_flat_pair, pack_

BufferPolicy = Literal["average", "copy"]
_PLAIN = frozenset({int, float, bool})
Decay = float | torch.Tensor  # a float, or a 1-D tensor with one value per replica (leading dim of every tensor)


def check_decay(beta: float | torch.Tensor, name: str = "beta") -> Decay:
    """Validate a decay in ``[0, 1)``, given as a float or a 1-D per-replica tensor; return it as float or tensor."""
    betas = torch.as_tensor(beta, dtype=torch.float64).reshape(-1)
    if betas.numel() == 0 or not bool(((betas >= 0) & (betas < 1)).all()):
        raise ValueError(f"{name} must be in [0, 1), got {beta}")
    return beta if isinstance(beta, torch.Tensor) else float(beta)


def check_int(name: str, value: object, minimum: int) -> int:
    """Validate an integer option ``>= minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class Averager(nn.Module):
    """Base class: keeps ``averaged_model``, the paired online/averaged tensor lists, and resumable counters.

    Args:
        model: the live model being trained; read at every ``update()``, never written.
        buffers: ``"average"`` floating-point buffers with the same rule as parameters (the seed's choice) or
            ``"copy"`` them from the online model at each update (e.g. BatchNorm running statistics; for SWA,
            re-estimate them afterwards with :func:`emabench.averaging.update_bn`).
    """

    def __init__(self, model: nn.Module, *, buffers: BufferPolicy = "average") -> None:
        super().__init__()
        if buffers not in ("average", "copy"):
            raise ValueError(f"buffers must be 'average' or 'copy', got {buffers!r}")
        self.buffer_policy: BufferPolicy = buffers
        self._online = [model]  # a list hides the online model from the module tree and from state_dict
        try:
            self.averaged_model = copy.deepcopy(model)
        except Exception as err:  # lazy or otherwise uncopyable modules
            raise ValueError(f"cannot deep-copy the model to hold its average: {err}") from err
        self.averaged_model.requires_grad_(False)
        self.averaged_model.eval()
        pack_([p for p in self.averaged_model.parameters() if p.is_floating_point()])
        self._refs: dict[int, tuple[list[torch.Tensor], list[tuple[nn.Module, str]]]] = {}
        self._flat: tuple | bool = False  # (first averaged, first online, their addresses, flat pair); False: unseen
        self._counter_names: list[str] = []
        self._register_counter("step", 0)
        self.register_load_state_dict_post_hook(_read_counters)

    def __setattr__(self, name: str, value: object) -> None:
        # Counters change at every update; nn.Module.__setattr__ costs ~1 µs of checks for parameters, buffers and
        # submodules, which a plain attribute that is already plain (in __dict__) never is.
        if type(value) in _PLAIN and name in self.__dict__:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _register_counter(self, name: str, value: int | bool) -> None:
        """Keep ``self._<name>`` (python value) and save it as buffer ``<name>`` (long or bool) in ``state_dict``."""
        dtype = torch.bool if isinstance(value, bool) else torch.long
        self.register_buffer(name, torch.tensor(value, dtype=dtype))
        setattr(self, f"_{name}", value)
        self._counter_names.append(name)

    def _save_to_state_dict(self, destination, prefix, keep_vars):  # noqa: ANN001 - torch's signature
        for name in self._counter_names:
            self._buffers[name].fill_(getattr(self, f"_{name}"))  # not getattr: a property may share the name
        super()._save_to_state_dict(destination, prefix, keep_vars)

    @property
    def num_updates(self) -> int:
        """How many times :meth:`update` has been called (the optimizer step count, if called after every step)."""
        return self._step

    @property
    def online_model(self) -> nn.Module:
        return self._online[0]

    @property
    def ema_model(self) -> nn.Module:
        """Alias of ``averaged_model`` (ema-pytorch's name)."""
        return self.averaged_model

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
        """Forget cached tensor lists: call after replacing tensors of the online or the averaged model."""
        self._refs.clear()
        self._flat = False

    def _flat_pair(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Both sides as one flat buffer each (same layout), else ``None``.

        Looked for once, then re-checked by the data address of each side's first tensor, so a model whose
        tensors were replaced (``.to()``, compaction) is looked at again instead of updating a stale buffer.
        """
        cached = self._flat
        if cached is not False:
            first_averaged, first_online, where, pair = cached  # type: ignore[misc]
            if (first_averaged.data_ptr(), first_online.data_ptr()) == where:
                return pair
        averaged, online = self.tensor_pairs()
        if not averaged:
            return None
        where = (averaged[0].data_ptr(), online[0].data_ptr())
        self._flat = (averaged[0], online[0], where, matching_flat_pair(averaged, online))
        return self._flat[3]  # type: ignore[index]

    def tensor_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(averaged, online) lists of the tensors the rule averages: float params, and buffers if averaged."""
        return self._averaged_tensors(self.averaged_model), self._averaged_tensors(self.online_model)

    def _copied_buffer_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if self.buffer_policy != "copy":
            return [], []
        return list(self.averaged_model.buffers()), list(self.online_model.buffers())

    @torch.no_grad()
    def copy_from_online(self) -> None:
        """Set the average to the online weights (and buffers)."""
        flat = self._flat_pair()
        if flat is not None:
            flat[0].copy_(flat[1])
        else:
            averaged, online = self.tensor_pairs()
            torch._foreach_copy_(averaged, online)
        self._copy_buffers()

    @torch.no_grad()
    def _copy_buffers(self) -> None:
        for averaged, online in zip(*self._copied_buffer_pairs()):
            averaged.copy_(online)

    def _lerp_to_online(self, weight: Decay) -> None:
        """``average ← average + weight·(θ − average)`` in one fused call, then copy buffers if so configured.

        ``weight`` (``1 − decay``) is a float or a 1-D tensor of length R (one value per replica stacked along dim 0).
        The flat path needs no ``no_grad`` context (its views are detached), which is half its cost at this size.
        """
        flat = self._flat_pair() if isinstance(weight, float) else None
        if flat is not None:
            flat[0].lerp_(flat[1], weight)
        else:
            with torch.no_grad():
                averaged, online = self.tensor_pairs()
                if averaged:
                    torch._foreach_lerp_(averaged, online, per_tensor(weight, averaged))
        if self.buffer_policy == "copy":
            self._copy_buffers()

    def forward(self, *args, **kwargs):
        return self.averaged_model(*args, **kwargs)

    @contextlib.contextmanager
    def swapped_into(self, model: nn.Module | None = None) -> Iterator[nn.Module]:
        """Temporarily load the averaged weights into ``model`` (default: the online model).

        Seed 003's apply/restore: inside the block ``model`` holds the average; afterwards, also on an exception,
        its own weights, buffers and ``training`` flag are restored exactly.
        """
        model = self.online_model if model is None else model
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        was_training = model.training
        try:
            with torch.no_grad():
                for target, source in zip(model.state_dict().values(), self.averaged_model.state_dict().values()):
                    target.copy_(source)
            yield model
        finally:
            with torch.no_grad():
                for key, value in model.state_dict().items():
                    value.copy_(saved[key])
            model.train(was_training)


def per_tensor(value: float | torch.Tensor, tensors: list[torch.Tensor]) -> float | list[torch.Tensor]:
    """A ``torch._foreach_*`` scalar: a float as is, a per-replica 1-D tensor as a broadcastable view per tensor."""
    if not isinstance(value, torch.Tensor):
        return float(value)
    value = value.to(device=tensors[0].device, dtype=tensors[0].dtype)
    return [value.view(-1, *[1] * (t.dim() - 1)) for t in tensors]


def _read_counters(module: Averager, incompatible_keys) -> None:  # noqa: ANN001 - torch's hook signature
    for name in module._counter_names:
        value = module._buffers[name]
        setattr(module, f"_{name}", bool(value) if value.dtype == torch.bool else int(value))
