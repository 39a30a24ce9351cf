"""One contiguous buffer for many tensors: the averages are updated with one ``lerp_`` over it.

For a small model the cost of an EMA update is the per-tensor overhead, not the arithmetic: one ``lerp_`` over a
flat buffer is ~2 µs where a ``torch._foreach_lerp_`` over 6 tensors is ~4 µs and a Python loop ~40 µs. An averager
packs its averaged copy's parameters into one buffer (:func:`pack_`); when the online model's parameters also lie
in one buffer in the same order (see :func:`flat_view`; emabench's stacked model does this, as do flattened-
parameter wrappers), the whole update is a single kernel.

A cached flat view must never outlive the layout it was taken from: if any tensor's storage is replaced
(``p.data = …``, ``module.to()``, ``load_state_dict(assign=True)``, ``torch.utils.swap_tensors``), the view would
keep reading (or writing) the old buffer. :data:`use_count` is the cheap guard: the number of tensors that reference a
buffer, read in one C call. Every replacement of a tensor that tiles the buffer lowers it; any change sends the
caller back to a full check of every tensor's address (:func:`addresses`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_data_ptr = torch.Tensor.data_ptr
# How many tensors (and storage objects) reference a storage, from storage_key(tensor), in one C call. Private but
# long-standing in torch; where it is missing (None) averagers check every address at every update instead.
use_count = getattr(torch._C, "_storage_Use_Count", None)


def flat_view(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[int]] | None:
    """A 1-D view over the storage range that ``tensors`` tile exactly, and each tensor's offset in it.

    ``None`` unless all tensors are plain (not subclass) contiguous tensors of one dtype and device, in one storage,
    covering a contiguous range without gaps or overlaps.
    """
    if not tensors:
        return None
    first = tensors[0]
    pointer = first.untyped_storage().data_ptr()
    for t in tensors:
        if type(t.data) is not torch.Tensor or t.dtype != first.dtype or t.device != first.device:
            return None
        if not t.is_contiguous() or t.untyped_storage().data_ptr() != pointer:
            return None
    spans = sorted((t.storage_offset(), t.numel()) for t in tensors)
    start = end = spans[0][0]
    for offset, numel in spans:
        if offset != end:
            return None
        end += numel
    flat = first.detach().as_strided((end - start,), (1,), start)
    return flat, [t.storage_offset() - start for t in tensors]


@torch.no_grad()
def pack_(tensors: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """Move ``tensors`` (parameters, changed in place through ``.data``) into one new contiguous buffer, in order.

    Returns the buffer, or ``None`` (nothing changed) when they differ in dtype or device or are tensor subclasses
    (e.g. DTensor shards, which keep their own layout).
    """
    if not tensors or len({(t.dtype, t.device) for t in tensors}) != 1:
        return None
    if any(type(t.data) is not torch.Tensor for t in tensors):
        return None
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    offset = 0
    for t in tensors:
        t.data = flat[offset : offset + t.numel()].view_as(t)
        offset += t.numel()
    return flat


def matching_flat_pair(
    averaged: Sequence[torch.Tensor], online: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Flat views of both sides when they tile their buffers with the same layout (element i ↔ element i) on one
    device; their dtypes may differ."""
    a, b = flat_view(averaged), flat_view(online)
    if a is None or b is None or a[1] != b[1] or a[0].numel() != b[0].numel() or a[0].device != b[0].device:
        return None
    return a[0], b[0]


def addresses(tensors: Sequence[torch.Tensor]) -> tuple[int, ...]:
    """Every tensor's data address: equal tuples mean no tensor's storage was replaced (while the old storages are
    kept alive by a view, a new one cannot reuse their addresses)."""
    return tuple(map(_data_ptr, tensors))


def storage_key(tensor: torch.Tensor) -> int | None:
    """The argument :data:`use_count` takes for ``tensor``'s storage (``None`` where torch offers no use count)."""
    return tensor.untyped_storage()._cdata if use_count is not None else None
