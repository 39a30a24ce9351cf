"""Task losses and metrics against torch's and scikit-learn's own implementations, per replica."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error, r2_score

from emabench.tasks.registry import get_task

R, N, K = 4, 60, 5


def _logits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(R, N, K, generator=g) * 2
    target = torch.randint(0, K - 1, (N,), generator=g)  # class K-1 never occurs: f1 over present classes only
    return out, target


def test_classification_metrics_equal_sklearn() -> None:
    out, target = _logits()
    result = get_task("classification").evaluate(out, target)
    for r in range(R):
        pred = out[r].argmax(-1).numpy()
        assert result["accuracy"][r].item() == pytest.approx(accuracy_score(target.numpy(), pred), abs=1e-12)
        assert result["f1_macro"][r].item() == pytest.approx(
            f1_score(target.numpy(), pred, average="macro", zero_division=0), abs=1e-12
        )
        assert result["val_loss"][r].item() == pytest.approx(F.cross_entropy(out[r].double(), target).item(), 1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_torch_smoothing_equals_cross_entropy_label_smoothing(eps: float) -> None:
    out, target = _logits(1)
    task = get_task("classification", smoothing_kind="torch")
    batch_target = target.expand(R, N)
    loss = task.loss(out, batch_target, torch.full((R,), eps))
    for r in range(R):
        expected = F.cross_entropy(out[r], target, label_smoothing=eps)
        torch.testing.assert_close(loss[r], expected, rtol=1e-6, atol=1e-7)


def test_seed_smoothing_is_seed_004s_soft_target_per_replica() -> None:
    """q_y = 1 − ε, ε/(K−1) elsewhere; a different ε per replica."""
    out, target = _logits(2)
    eps = torch.tensor([0.0, 0.05, 0.1, 0.4])
    loss = get_task("classification", smoothing_kind="seed").loss(out, target.expand(R, N), eps)
    for r in range(R):
        q = torch.full((N, K), float(eps[r]) / (K - 1))
        q[torch.arange(N), target] = 1 - float(eps[r])
        expected = -(q * torch.log_softmax(out[r], -1)).sum(-1).mean()
        torch.testing.assert_close(loss[r], expected, rtol=1e-6, atol=1e-7)


def test_regression_metrics_equal_sklearn() -> None:
    g = torch.Generator().manual_seed(3)
    out, y = torch.randn(R, N, 1, generator=g), torch.randn(N, 1, generator=g)
    result = get_task("regression").evaluate(out, y)
    for r in range(R):
        pred, truth = out[r].double().numpy(), y.double().numpy()
        assert result["mse"][r].item() == pytest.approx(mean_squared_error(truth, pred), abs=1e-12)
        assert result["mae"][r].item() == pytest.approx(mean_absolute_error(truth, pred), abs=1e-12)
        assert result["r2"][r].item() == pytest.approx(r2_score(truth, pred), abs=1e-12)


def test_directions_come_from_the_task() -> None:
    regression, classification = get_task("regression"), get_task("classification")
    assert not regression.metric("mse").higher_is_better and regression.metric("r2").higher_is_better
    assert classification.metric("accuracy").higher_is_better and not classification.metric("val_loss").higher_is_better
    assert classification.final_metrics == ("accuracy", "f1_macro", "ece")
    assert not classification.metric("ece").higher_is_better


def test_expected_calibration_error_by_hand() -> None:
    """Five samples, 15 bins ((b−1)/15, b/15]: confidences 0.9 (bin 14), 0.95 (bin 15), 0.61 and 0.64 (both bin 10),
    0.4 (bin 6); correct, correct, wrong, correct, wrong. ECE = (0.1 + 0.05 + |−0.61 + 0.36| + 0.4)/5 = 0.16."""
    from emabench.tasks.classification import expected_calibration_error

    top = torch.tensor([0.9, 0.95, 0.61, 0.64, 0.0], dtype=torch.float64)
    probabilities = torch.stack([top, 1 - top, torch.zeros(5, dtype=torch.float64)], dim=-1)  # top class 0
    probabilities[4] = torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64)  # top class 2 at 0.4
    target = torch.tensor([[0, 0, 1, 0, 0]])
    ece = expected_calibration_error(probabilities.unsqueeze(0), target)
    assert ece.item() == pytest.approx(0.16, abs=1e-12)
    # and against a plain loop over the bins, on random predictions
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(3, 200, 4, generator=g, dtype=torch.float64), -1)
    t = torch.randint(0, 4, (3, 200), generator=g)
    conf, pred = p.max(-1)
    for r in range(3):
        total = 0.0
        for b in range(1, 16):
            inside = (conf[r] > (b - 1) / 15) & (conf[r] <= b / 15)
            if inside.any():
                acc, mean_conf = (pred[r][inside] == t[r][inside]).double().mean(), conf[r][inside].mean()
                total += inside.sum().item() / 200 * abs(acc - mean_conf).item()
        assert expected_calibration_error(p, t)[r].item() == pytest.approx(total, abs=1e-12)
