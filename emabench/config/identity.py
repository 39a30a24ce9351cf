"""What identifies a run: its resolved config, less what cannot change its result.

A run's id (``<name>-seed<seed>-<hash>``, :func:`emabench.runs.layout.run_id`) hashes :func:`identity` of its
``config.to_dict()``. Left out: sections that say how to report on a run or where to copy it, never what trains
(:data:`NOT_PART_OF_THE_RUN`), settings of how fast a run goes that never change its bytes (:data:`SPEED_ONLY`),
and keys that came after runs were first recorded, when they hold the value that
changes nothing (:data:`NEUTRAL`): a run recorded before such a key existed keeps its id, and its folder is found
again. ``config.yaml`` still records every value.
"""

from __future__ import annotations

import copy
from typing import Any

NOT_PART_OF_THE_RUN = ("report", "track")
# a Dataset's batches are seeded per batch, so the processes that read them change nothing (tests/test_datasets.py)
SPEED_ONLY = (("data", "num_workers"),)
_ANY = object()  # a SPEED_ONLY key goes whatever its value
NEUTRAL: dict[tuple[str, ...], Any] = {
    ("loss",): None,
    ("metrics",): {},
    ("data", "holdout"): 0.0,
    ("data", "split"): "fixed",
    ("data", "label_noise"): None,
    ("data", "test_every"): None,
    ("data", "test_path"): None,
    ("data", "test_images"): None,
    ("data", "test_labels"): None,
    ("model", "stack"): "none",
    ("train", "optimizer", "kwargs"): {},
    ("train", "lr_schedule", "kwargs"): {},
}


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (a resolved config as a dict) without what cannot change the run (see the module)."""
    out = {key: value for key, value in config.items() if key not in NOT_PART_OF_THE_RUN}
    out = copy.deepcopy(out)
    for path, neutral in [*NEUTRAL.items(), *((path, _ANY) for path in SPEED_ONLY)]:
        *parents, last = path
        node = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node and (neutral is _ANY or node[last] == neutral):
            del node[last]
    return out
