"""One contiguous buffer for many tensors: the averages are updated with one ``lerp_`` over it.

For a small model the cost of an EMA update is the per-tensor overhead, not the arithmetic: one ``lerp_`` over a
flat buffer is ~2 µs where a ``torch._foreach_lerp_`` over 6 tensors is ~4 µs and a Python loop ~40 µs. An averager
packs its averaged copy's parameters into one buffer (:func:`pack_`); when the online model's parameters also lie
in one buffer in the same order (see :func:`flat_view`; emabench's stacked model does this, as do flattened-
parameter wrappers), the whole update is a single kernel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def flat_view(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[int]] | None:
    """A 1-D view over the storage range that ``tensors`` tile exactly, and each tensor's offset in it.

    ``None`` unless all tensors are contiguous, of one dtype and device, in one storage, and cover a contiguous
    range without gaps or overlaps.
    """
    if not tensors:
        return None
    first = tensors[0]
    pointer = first.untyped_storage().data_ptr()
    for t in tensors:
        if t.dtype != first.dtype or t.device != first.device or not t.is_contiguous():
            return None
        if t.untyped_storage().data_ptr() != pointer:
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

    Returns the buffer, or ``None`` (nothing changed) when they differ in dtype or device.
    """
    if not tensors or len({(t.dtype, t.device) for t in tensors}) != 1:
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
    """Flat views of both sides when they tile their buffers with the same layout (element i ↔ element i)."""
    a, b = flat_view(averaged), flat_view(online)
    if a is None or b is None or a[1] != b[1] or a[0].numel() != b[0].numel():
        return None
    return a[0], b[0]
