"""A run alone against the same run in stacks of 8, 10 and 65 and after a resume: the largest absolute difference of
every history.csv column (0 everywhere when the engine keeps its contract). Prints a Markdown table; asserts nothing.

The cases: the seed study (configs/regression.yaml, early stopping on the EMA), seed 003's LeNet on digits
(configs/digits.yaml), the BatchNorm MLP of configs/tricks.yaml (with its EMA teacher), and plain SGD at lr 0.2 on
noisy labels in batches of 8 (a chaotic run that amplifies any rounding difference). In each stack the run sits in
the middle, beside runs of other seeds whose learning rate, weight decay and β differ and a third of which stop
after a few epochs; the resume stops the run's stack of 8 after a third of its epochs and continues it alone.

Run: ``.venv/bin/python benchmarks/same_result_table.py [--epochs N] [--threads T]`` (``--epochs`` caps each case's
epochs for a quick look; without it the cases run their full length, ~15 min on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from emabench.config import Config, load_config, with_overrides
from emabench.tasks.data import make_dataset
from emabench.train.loop import Trainer


def cases(epochs: int | None) -> dict[str, Config]:
    sgd = {"name": "sgd", "lr": 0.2, "weight_decay": 0.0}
    noisy = load_config("configs/tricks.yaml").to_dict() | {
        "task": "classification",
        "data": {"source": "make_classification", "n_samples": 1000, "n_features": 20, "n_informative": 10,
                 "n_classes": 2, "flip_y": 0.3, "random_state": 0, "scale_x": True, "test_size": 0.2,
                 "split_random_state": 0},
        "model": {"name": "mlp", "hidden_sizes": [64, 64], "activation": "relu", "dropout": 0.0, "norm": "none",
                  "init": "kaiming_uniform"},
    }  # fmt: skip
    noisy["train"] |= {"batch_size": 8, "max_epochs": 30, "optimizer": sgd, "teacher": None}
    noisy["train"]["early_stopping"]["patience"] = None
    noisy["averagers"] = {}
    out = {
        "seed study (regression.yaml)": load_config("configs/regression.yaml"),
        "LeNet on digits (digits.yaml)": load_config("configs/digits.yaml"),
        "BatchNorm MLP (tricks.yaml)": load_config("configs/tricks.yaml"),
        "SGD lr 0.2, batch 8, 30% noisy labels": type(load_config()).model_validate(noisy),
    }
    overrides = {"device": "cpu"} | ({"train.max_epochs": epochs} if epochs else {})
    return {name: with_overrides(config, overrides) for name, config in out.items()}


def neighbours(config: Config, count: int) -> list[Config]:
    out = []
    for i in range(count):
        lr = config.train.optimizer.resolved().lr * (0.5, 1.0, 2.0)[i % 3]
        change = {"seed": 1000 + i, "train.optimizer.lr": lr, "ema.beta": (0.99, 0.999, 0.9)[i % 3]}
        if i % 3 == 1:
            change["train.max_epochs"] = max(1, config.train.max_epochs // 4)
        out.append(with_overrides(config, change))
    return out


def histories(configs: list[Config], stop_after: int | None = None) -> tuple[list[list[dict]], Trainer]:
    trainer = Trainer(configs, make_dataset(configs[0].data, configs[0].task))
    rows: list[list[dict]] = [[] for _ in configs]
    while not trainer.done and (stop_after is None or trainer.epoch < stop_after):
        for record in trainer.run_epoch():
            rows[record.replica].append(record.row)
    return rows, trainer


def max_difference(a: list[dict], b: list[dict]) -> float:
    """The largest absolute difference over every column and epoch (inf if the lengths or columns differ)."""
    if len(a) != len(b) or any(x.keys() != y.keys() for x, y in zip(a, b)):
        return math.inf
    worst = 0.0
    for x, y in zip(a, b):
        for key in x:
            if not (math.isnan(x[key]) and math.isnan(y[key])):
                worst = max(worst, abs(x[key] - y[key]))
    return worst


def resumed(config: Config, epochs: int) -> list[dict]:
    """The run in the middle of a stack of 8, stopped after a third of its ``epochs`` (its length alone: early
    stopping may end it long before ``max_epochs``), continued alone."""
    stack = neighbours(config, 7)
    stack.insert(3, config)
    rows, trainer = histories(stack, stop_after=max(1, epochs // 3))
    state = trainer.replica_state(trainer.ids.index(3))
    alone = Trainer.resume([config], make_dataset(config.data, config.task), [state])
    rest = []
    while not alone.done:
        rest += [record.row for record in alone.run_epoch()]
    return rows[3] + rest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="cap every case at this many epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the contract holds per thread count)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); max |alone − stacked| over every column")
    print("\n| case | epochs alone | stack of 8 | stack of 10 | stack of 65 | resumed | columns | time |")
    print("|---|---|---|---|---|---|---|---|")
    for name, config in cases(args.epochs).items():
        started = time.perf_counter()
        (alone,), _ = histories([config])
        cells = []
        for size in (8, 10, 65):
            stack = neighbours(config, size - 1)
            stack.insert(size // 2, config)
            rows, _ = histories(stack)
            cells.append(max_difference(alone, rows[size // 2]))
        cells.append(max_difference(alone, resumed(config, len(alone))))
        shown = " | ".join("0" if c == 0 else f"{c:.3g}" for c in cells)
        took = time.perf_counter() - started
        print(f"| {name} | {len(alone)} | {shown} | {len(alone[0])} | {took:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
