"""What a stack evaluates beyond its validation metrics: the test set (every ``data.test_every`` epochs, and for each
replica at its end), the post-hoc EMA syntheses, each model's best state, and the predictions a run saves.

The test set is read only here, and only after the epoch's decisions could no longer depend on it: a history's test
columns are NaN but every ``test_every`` epochs and nothing reads them; a replica's final test metrics are taken
once it has stopped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from emabench.train import averagers as averaging
from emabench.train import evaluation

Trainer = Any  # emabench.train.loop.Trainer, which imports this module


def test_columns(trainer: Trainer) -> dict[str, torch.Tensor]:
    """``<model>_test_<metric>`` columns (the loss as ``<model>_test_loss``) every ``data.test_every`` epochs and NaN
    in the others, for curves; none without a test set or ``test_every``."""
    every = trainer.configs[0].data.test_every
    if not trainer.data.has_test or every is None:
        return {}
    names = [spec.name for spec in trainer.task.metrics]
    if trainer.epoch % every == 0:
        results = trainer.evaluate("test")
    else:
        missing = torch.full((len(trainer.ids),), math.nan, dtype=torch.float64)
        results = {model: dict.fromkeys(names, missing) for model in trainer._tracked()}
    return {
        f"{model}_test_{'loss' if name == 'val_loss' else name}": value
        for model, values in results.items()
        for name, value in values.items()
    }


@torch.no_grad()
def finals(trainer: Trainer, positions: Sequence[int]) -> dict[int, dict[str, Any]]:
    """For each stack position in ``positions`` (replicas stopping after this epoch): ``posthoc``, and with a test set
    ``test``, ``best`` and ``predictions`` (see :class:`~emabench.train.loop.EpochRecord`)."""
    if not positions:
        return {}
    out: dict[int, dict[str, Any]] = {p: {"posthoc": {}} for p in positions}
    has_test = trainer.data.has_test
    for name, averager, fit_error in averaging.synthesized(trainer.configs[0], trainer.averagers, trainer.step):
        val = trainer._metrics(averager.averaged_model)
        test = trainer._metrics(averager.averaged_model, "test") if has_test else {}
        for p in positions:
            out[p]["posthoc"][name] = _row(val, p) | {"fit_error": fit_error}
            if has_test:
                out[p].setdefault("test", {})[name] = _row(test, p)
    if not has_test:
        return out
    final = trainer.evaluate("test")
    best = {name: trainer._metrics(model, "test") for name, model in trainer.best.copies.items()}
    predicted = _predictions(trainer)
    for p in positions:
        out[p]["test"] = {m: _row(v, p) for m, v in final.items()} | out[p].get("test", {})
        out[p]["best"] = {m: {"epoch": int(trainer.best.epoch[m][p])} | _row(v, p) for m, v in best.items()}
        out[p]["predictions"] = {m: values[p].numpy() for m, values in predicted.items()}
    return out


def _row(metrics: dict[str, torch.Tensor], position: int) -> dict[str, float]:
    return {k: float(v[position]) for k, v in metrics.items()}


def _predictions(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Every per-epoch model's test-set outputs ``(R, n_test, outputs)`` as float32 on the CPU: class probabilities
    for classification, the predictions themselves for regression."""
    out = {}
    for name, model in trainer._tracked().items():
        values = evaluation.outputs(model, trainer.data.x_test, trainer.data.per_replica, trainer._autocast())
        out[name] = (values.softmax(-1) if trainer.task.name == "classification" else values).float().cpu()
    trainer.model.train()
    return out
