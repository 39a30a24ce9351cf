"""Classification (seed 003): cross-entropy with optional label smoothing; accuracy and macro-F1.

Label smoothing replaces the one-hot target by a soft one, two definitions by name:

- ``seed`` (seed 004's): ``q_y = 1 − ε`` on the true class and ``ε/(K − 1)`` on each other class;
- ``torch`` (``CrossEntropyLoss(label_smoothing=ε)``): ``q = (1 − ε)·onehot + ε/K``, i.e. ``1 − ε + ε/K`` on the
  true class.

Either way ``loss = −Σ_k q_k log p_k = −a·log p_y − b·Σ_k log p_k`` with ``(a, b) = (1 − ε − ε/(K−1), ε/(K−1))``
(seed) or ``(1 − ε, ε/K)`` (torch); ``ε`` may differ per replica. The validation loss is plain cross-entropy.
"""

from __future__ import annotations

import torch

from emabench.tasks.base import Task
from emabench.tasks.metric_specs import BUILTIN_MARGINS, CLASSIFICATION_METRICS

SMOOTHING_KINDS = ("seed", "torch")


class Classification(Task):
    name = "classification"
    metrics = CLASSIFICATION_METRICS
    plot_metric = "accuracy"
    primary_metric = "accuracy"
    equivalence_margin = BUILTIN_MARGINS["classification"]

    def __init__(self, smoothing_kind: str = "seed") -> None:
        if smoothing_kind not in SMOOTHING_KINDS:
            raise ValueError(
                f"label smoothing kind must be one of {', '.join(SMOOTHING_KINDS)}, got {smoothing_kind!r}"
            )
        self.smoothing_kind = smoothing_kind

    def outputs(self, n_classes: int | None) -> int:
        if n_classes is None or n_classes < 2:
            raise ValueError(f"classification needs at least 2 classes, got {n_classes}")
        return n_classes

    def loss(self, out: torch.Tensor, target: torch.Tensor, smoothing: torch.Tensor | None = None) -> torch.Tensor:
        """Per-replica mean smoothed cross-entropy; ``target`` ``(R, B)`` class indices, ``smoothing`` ``(R,)``."""
        log_p = torch.log_softmax(out.float(), dim=-1)
        true = log_p.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (R, B)
        if smoothing is None:
            return -true.mean(1)
        k = out.shape[-1]
        eps = smoothing.to(log_p.dtype).view(-1, 1)
        if self.smoothing_kind == "seed":
            a, b = 1.0 - eps - eps / (k - 1), eps / (k - 1)
        else:
            a, b = 1.0 - eps, eps / k
        return -(a * true + b * log_p.sum(-1)).mean(1)

    def evaluate(self, out: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy (the NLL), accuracy, macro-F1 as ``sklearn.metrics.f1_score(average="macro")`` (the mean
        over the classes present in the labels or the predictions of ``2·TP / (2·TP + FP + FN)``) and the expected
        calibration error (:func:`expected_calibration_error`). ``target``: ``(n,)`` for every replica, or
        ``(R, n)`` one set per replica."""
        replicas, k = out.shape[0], out.shape[-1]
        target = target.view(1, -1).expand(replicas, -1) if target.dim() == 1 else target
        log_p = torch.log_softmax(out.double(), dim=-1)
        loss = -log_p.gather(-1, target.unsqueeze(-1)).squeeze(-1).mean(1)
        pred = out.argmax(-1)  # (R, n)
        correct = pred == target
        predicted = torch.nn.functional.one_hot(pred, k).sum(1).double()  # (R, K)
        actual = torch.nn.functional.one_hot(target, k).sum(1).double()  # (R, K)
        true_positive = torch.nn.functional.one_hot(torch.where(correct, pred, k), k + 1)[..., :k].sum(1).double()
        denominator = predicted + actual  # 2·TP + FP + FN
        present = denominator > 0
        f1 = torch.where(present, 2 * true_positive / denominator.clamp(min=1), torch.zeros_like(denominator))
        f1_macro = f1.sum(1) / present.sum(1)
        ece = expected_calibration_error(log_p.exp(), target)
        return {"val_loss": loss, "accuracy": correct.double().mean(1), "f1_macro": f1_macro, "ece": ece}


ECE_BINS = 15


def expected_calibration_error(probabilities: torch.Tensor, target: torch.Tensor, bins: int = ECE_BINS) -> torch.Tensor:
    """Expected calibration error per replica (Guo et al., 2017): the samples binned by their confidence (the top
    class's probability) into ``bins`` equal-width bins ``((b−1)/M, b/M]``, then
    ``ECE = Σ_b (n_b/n)·|accuracy_b − confidence_b| = (1/n)·Σ_b |Σ_{i∈b} (correct_i − confidence_i)|``.
    ``probabilities``: ``(R, n, K)``; ``target``: ``(R, n)``."""
    confidence, pred = probabilities.max(-1)
    index = (confidence * bins).ceil().long().clamp(1, bins) - 1  # bin b holds ((b−1)/M, b/M]
    gaps = (pred == target).double() - confidence.double()
    per_bin = torch.zeros(confidence.shape[0], bins, dtype=torch.float64, device=confidence.device)
    per_bin.scatter_add_(1, index, gaps)
    return per_bin.abs().sum(1) / confidence.shape[1]
