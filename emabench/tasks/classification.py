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

from emabench.tasks.base import VAL_LOSS, MetricSpec, Task

SMOOTHING_KINDS = ("seed", "torch")


class Classification(Task):
    name = "classification"
    metrics = (
        VAL_LOSS,
        MetricSpec("accuracy", higher_is_better=True, label="accuracy"),
        MetricSpec("f1_macro", higher_is_better=True, label="macro-F1"),
    )
    plot_metric = "accuracy"
    primary_metric = "accuracy"
    equivalence_margin = 0.005  # half a percentage point of accuracy

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
        """Cross-entropy, accuracy, and macro-F1 as ``sklearn.metrics.f1_score(average="macro")``: the mean over the
        classes present in the labels or the predictions of ``2·TP / (2·TP + FP + FN)``."""
        log_p = torch.log_softmax(out.double(), dim=-1)
        loss = -log_p.gather(-1, target.view(1, -1, 1).expand(out.shape[0], -1, 1)).squeeze(-1).mean(1)
        pred = out.argmax(-1)  # (R, n)
        correct = pred == target
        k = out.shape[-1]
        predicted = torch.nn.functional.one_hot(pred, k).sum(1).double()  # (R, K)
        actual = torch.nn.functional.one_hot(target, k).sum(0).double()  # (K,)
        true_positive = torch.nn.functional.one_hot(torch.where(correct, pred, k), k + 1)[..., :k].sum(1).double()
        denominator = predicted + actual  # 2·TP + FP + FN
        present = denominator > 0
        f1 = torch.where(present, 2 * true_positive / denominator.clamp(min=1), torch.zeros_like(denominator))
        f1_macro = f1.sum(1) / present.sum(1)
        return {"val_loss": loss, "accuracy": correct.double().mean(1), "f1_macro": f1_macro}
