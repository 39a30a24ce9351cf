"""The own-loop example's CNN on digits under Lightning: the same ``Digits`` and ``Net`` (``own_loop_untracked.py``),
Adadelta with StepLR, ``nll_loss``, the test set as validation, in a ``LightningModule``; ``EMAComparison`` keeps
emabench's EMA beside it, evaluates raw and EMA on every validation batch and writes the run folder under ``runs/``
that ``emabench report`` reads (``pip install 'emabench[lightning]'``).

    for seed in 0 1 2 3 4 5 6 7 8 9; do for beta in 0.9 0.99; do
        python examples/own_loop_lightning.py --seed $seed --ema-beta $beta
    done; done
    emabench report
"""

import argparse
from functools import partial

import lightning as L
import torch.nn.functional as F
from own_loop_untracked import Digits, Net
from torch import optim
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader

from emabench.averaging import EMA
from emabench.integrations.lightning import EMAComparison


class DigitsCNN(L.LightningModule):
    def __init__(self, lr, gamma, **hparams):
        super().__init__()
        self.save_hyperparameters()  # what the run folder's config records
        self.net = Net()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        data, target = batch
        return F.nll_loss(self(data), target)

    def validation_step(self, batch, batch_idx):
        data, target = batch
        output = self(data)
        self.log("val_loss", F.nll_loss(output, target))
        self.log("val_accuracy", (output.argmax(dim=1) == target).float().mean())

    def configure_optimizers(self):
        optimizer = optim.Adadelta(self.parameters(), lr=self.hparams.lr)
        return [optimizer], [StepLR(optimizer, step_size=1, gamma=self.hparams.gamma)]


def main(argv=None):
    parser = argparse.ArgumentParser(description="A CNN on scikit-learn's digits under Lightning, raw and EMA weights")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size (default: 64)")
    parser.add_argument("--test-batch-size", type=int, default=1000, help="test batch size (default: 1000)")
    parser.add_argument("--epochs", type=int, default=14, help="epochs to train (default: 14)")
    parser.add_argument("--lr", type=float, default=1.0, help="Adadelta's learning rate (default: 1.0)")
    parser.add_argument("--gamma", type=float, default=0.7, help="StepLR's decay of the lr per epoch (default: 0.7)")
    parser.add_argument("--ema-beta", type=float, default=0.99, help="the EMA's highest decay (default: 0.99)")
    parser.add_argument("--ema-after", type=int, default=10, help="steps the EMA copies before averaging (10)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    args = parser.parse_args(argv)
    L.seed_everything(args.seed, verbose=False)

    train_loader = DataLoader(Digits(train=True), batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(Digits(train=False), batch_size=args.test_batch_size)
    model = DigitsCNN(**vars(args))
    ema = partial(EMA, beta=args.ema_beta, update_after_step=args.ema_after)
    comparison = EMAComparison(averagers={"ema": ema}, runs_dir="runs", task="classification")
    trainer = L.Trainer(
        max_epochs=args.epochs,
        callbacks=[comparison],
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, train_loader, test_loader)


if __name__ == "__main__":
    main()
