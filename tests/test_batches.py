"""An epoch's randomness: shuffles and dropout masks per replica, independent of the stack around it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emabench.train.batches import EpochBuffers, draw_epoch, keep_masks, mask_generator, micro_batches


@pytest.mark.parametrize("keep", [0.8, 0.5, 0.9999])
def test_masks_keep_each_unit_with_the_asked_probability(keep: float) -> None:
    drawn = keep_masks(mask_generator(0), (2000, 500), keep)
    quantized = round(keep * 2**16) / 2**16
    assert abs(quantized - keep) <= 2**-17
    assert drawn.mean() == pytest.approx(quantized, abs=4 * np.sqrt(keep * (1 - keep) / drawn.size))


def test_a_replica_draws_the_same_in_any_stack() -> None:
    x, y = torch.arange(60.0).view(30, 2), torch.arange(30.0).view(30, 1)

    def epoch(seeds, keeps):
        return draw_epoch(
            [torch.Generator().manual_seed(s) for s in seeds], [mask_generator(s) for s in seeds], x, y, [(4,)], keeps
        )

    alone = epoch([7], [0.7])
    stacked = epoch([3, 7, 9], [1.0, 0.7, 0.5])
    assert torch.equal(stacked.x[1], alone.x[0]) and torch.equal(stacked.masks[0][1], alone.masks[0][0])
    assert torch.equal(stacked.masks[0][0], torch.ones(30, 4))  # p = 0: nothing drawn, nothing dropped


def test_epochs_drawn_into_kept_buffers_equal_fresh_ones() -> None:
    """The buffers are written over epoch after epoch, and made anew when the stack shrinks."""
    x, y = torch.arange(60.0).view(30, 2), torch.arange(30.0).view(30, 1)

    def streams(seeds):
        return [torch.Generator().manual_seed(s) for s in seeds], [mask_generator(s) for s in seeds]

    kept, fresh = streams([3, 7, 9]), streams([3, 7, 9])
    buffers = EpochBuffers()
    for seeds in ([0, 1, 2], [0, 1, 2], [0, 2]):
        keep = [0.7] * len(seeds)
        shuffles, masks = ([kept[0][s] for s in seeds], [kept[1][s] for s in seeds])
        ours = draw_epoch(shuffles, masks, x, y, [(4,)], keep, buffers)
        theirs = draw_epoch([fresh[0][s] for s in seeds], [fresh[1][s] for s in seeds], x, y, [(4,)], keep)
        for a, b in zip((ours.x, ours.y, *ours.masks), (theirs.x, theirs.y, *theirs.masks)):
            assert torch.equal(a, b)


def test_micro_batches_cover_the_batch() -> None:
    assert micro_batches(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert micro_batches(2, 4) == [(0, 1), (1, 2)]


def test_scaled_masks_are_the_kept_units_times_one_over_keep() -> None:
    out = np.empty((300, 7), dtype=np.float32)
    from emabench.train.batches import scaled_masks

    scaled_masks(mask_generator(3), (300, 7), 0.7, out=out)
    kept = keep_masks(mask_generator(3), (300, 7), 0.7)
    assert np.array_equal(out, kept.astype(np.float32) * np.float32(1 / 0.7))
