"""A training script of one's own, shaped like pytorch/examples' ``mnist/main.py`` (a two-conv CNN with dropout, a
``Dataset`` and ``DataLoader``, Adadelta with StepLR, ``nll_loss``, a separate test set), on scikit-learn's 8x8
digits instead of MNIST so it runs anywhere, with an EMA of the weights from ``emabench.averaging``.

This is the script before tracking: it prints its results and keeps nothing. ``own_loop.py`` is the same script
tracked by ``emabench.track`` (``diff examples/own_loop_untracked.py examples/own_loop.py``), so that
``emabench report`` compares raw and EMA across seeds.

    python examples/own_loop_untracked.py --epochs 14 --seed 1
"""

import argparse

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn, optim
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader, Dataset

from emabench.averaging import EMA


class Digits(Dataset):
    """scikit-learn's digits as (1, 8, 8) images standardized by the training pixels' mean and std; a fixed 80/20
    stratified split into a training and a test set."""

    def __init__(self, train):
        x, y = load_digits(return_X_y=True)
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
        mean, std = x_train.mean(), x_train.std()
        x, y = (x_train, y_train) if train else (x_test, y_test)
        self.images = torch.tensor((x - mean) / std, dtype=torch.float32).view(-1, 1, 8, 8)
        self.labels = torch.tensor(y, dtype=torch.int64)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]


class Net(nn.Module):
    """mnist/main.py's network for 8x8 inputs: 8x8 → conv 6x6 → conv 4x4 → max-pool 2x2 → 64·2·2 = 256 features."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(256, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


def train(args, model, ema, train_loader, optimizer, epoch):
    """One epoch; the EMA observes the weights after every optimizer step. Returns the mean training loss."""
    model.train()
    total = 0.0
    for batch_idx, (data, target) in enumerate(train_loader):
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
        ema.update()
        total += loss.item() * len(data)
        if args.log_interval and batch_idx % args.log_interval == 0:
            print(f"Train epoch {epoch} [{batch_idx * len(data)}/{len(train_loader.dataset)}] loss {loss.item():.6f}")
    return total / len(train_loader.dataset)


def test(model, test_loader):
    """The mean loss and the accuracy of ``model`` on the test set."""
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for data, target in test_loader:
            output = model(data)
            loss += F.nll_loss(output, target, reduction="sum").item()
            correct += (output.argmax(dim=1) == target).sum().item()
    n = len(test_loader.dataset)
    return {"val_loss": loss / n, "accuracy": correct / n}


def main(argv=None):
    parser = argparse.ArgumentParser(description="A CNN on scikit-learn's digits, raw and EMA weights")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size (default: 64)")
    parser.add_argument("--test-batch-size", type=int, default=1000, help="test batch size (default: 1000)")
    parser.add_argument("--epochs", type=int, default=14, help="epochs to train (default: 14)")
    parser.add_argument("--lr", type=float, default=1.0, help="Adadelta's learning rate (default: 1.0)")
    parser.add_argument("--gamma", type=float, default=0.7, help="StepLR's decay of the lr per epoch (default: 0.7)")
    parser.add_argument("--ema-beta", type=float, default=0.99, help="the EMA's highest decay (default: 0.99)")
    parser.add_argument("--ema-after", type=int, default=10, help="steps the EMA copies before averaging (10)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    parser.add_argument("--log-interval", type=int, default=0, help="batches between loss prints (0: none)")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)

    train_loader = DataLoader(Digits(train=True), batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(Digits(train=False), batch_size=args.test_batch_size)
    model = Net()
    ema = EMA(model, beta=args.ema_beta, update_after_step=args.ema_after)
    optimizer = optim.Adadelta(model.parameters(), lr=args.lr)
    scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)

    for epoch in range(1, args.epochs + 1):
        lr = scheduler.get_last_lr()[0]
        train_loss = train(args, model, ema, train_loader, optimizer, epoch)
        raw, averaged = test(model, test_loader), test(ema.averaged_model, test_loader)
        print(f"Epoch {epoch}: train loss {train_loss:.4f}, lr {lr:.4g}, raw {raw}, ema {averaged}")
        scheduler.step()


if __name__ == "__main__":
    main()
