"""How a run folder's files are encoded, apart from their names (:mod:`emabench.runs.layout`): CSV rows, a
checkpoint's bytes (``torch.save`` of plain types only, read back with ``weights_only=True``) and the test-set
predictions (numpy's ``.npz`` of float32 arrays, read back without pickle)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emabench.errors import RunError

CHECKPOINT_FORMAT = 2  # bump when the layout of Trainer.replica_state changes; older checkpoints are refused


def rows_to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    columns = list(columns or (rows[0].keys() if rows else []))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def csv_value(text: str) -> float | str:
    try:
        return float(text) if text != "" else float("nan")
    except ValueError:
        return text


def encode_checkpoint(state: dict[str, Any], config_hash: str) -> bytes:
    """A run's state (tensors, numbers, strings, lists and dicts only) as ``checkpoint.pt`` 's bytes, tagged with the
    hash of the run's resolved config (what :meth:`~emabench.runs.folder.RunFolder.checkpoint_for` checks)."""
    import torch

    state = state | {"config_hash": config_hash}
    _check_plain(state, "checkpoint")
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    return buffer.getvalue()


def decode_checkpoint(data: bytes, where: str | Path) -> dict[str, Any]:
    """:func:`encode_checkpoint` 's bytes back, loaded with ``weights_only=True`` (no code runs) onto the CPU;
    a :class:`RunError` naming ``where`` if they are not a checkpoint of this version."""
    import torch

    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: torch raises several kinds
        raise RunError(f"{where}: unreadable checkpoint ({type(err).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{where}: not a checkpoint of this emabench version (format {CHECKPOINT_FORMAT})")
    return state


def _check_plain(value: Any, where: str) -> None:
    """Refuse anything ``torch.load(weights_only=True)`` would not read back (custom classes, str subclasses)."""
    import torch

    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, where)
            _check_plain(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not (type(value) in (str, int, float, bool, type(None)) or type(value) is torch.Tensor):
        raise TypeError(f"{where}: {type(value).__name__} cannot be saved in a weights-only checkpoint")


def encode_predictions(predictions: dict[str, Any]) -> bytes:
    """``{model: array}`` as the bytes of a compressed ``.npz`` of float32 arrays."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(
        buffer, **{model: np.asarray(values, dtype=np.float32) for model, values in predictions.items()}
    )
    return buffer.getvalue()


def decode_predictions(path: Path) -> dict[str, Any]:
    """:func:`encode_predictions` 's file back as ``{model: array}``, loaded without pickle; a :class:`RunError`
    naming ``path`` if it is not such a file."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as err:
        raise RunError(f"{path}: unreadable predictions ({err})") from None
