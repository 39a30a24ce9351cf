"""``own_loop.py``'s pieces, for the runner: its ``Digits`` Dataset and its ``Net``, imported from the script (not
copied), plus the one thing the script does not have, a validation set apart from its test set. The config
``own_loop_runner.yaml`` trains them with the script's Adadelta, StepLR and ``nll_loss``, and tests on the script's
own test set, never re-split. Run from the repository root:

    emabench run examples/own_loop_runner.yaml
    emabench sweep examples/own_loop_runner.yaml --seeds 0-9 --beta 0.9,0.99 && emabench report
"""

from __future__ import annotations

import sys
from pathlib import Path

from sklearn.model_selection import train_test_split
from torch.utils.data import Subset

sys.path.append(str(Path(__file__).resolve().parent))  # the script beside this file
from own_loop import Digits, Net  # noqa: E402 - after its folder is on the path

__all__ = ["Net", "digits"]


def digits(val_size: float = 0.2, random_state: int = 0) -> dict[str, object]:
    """The script's training set cut into training and validation sets (a fixed stratified split: the validation
    set picks among epochs and models), and the script's test set as the test set."""
    train = Digits(train=True)
    fit, val = train_test_split(
        list(range(len(train))), test_size=val_size, random_state=random_state, stratify=train.labels.numpy()
    )
    return {"train": Subset(train, fit), "val": Subset(train, val), "test": Digits(train=False)}
