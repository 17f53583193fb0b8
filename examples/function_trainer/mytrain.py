"""A plain PyTorch training loop, swept by lrsweep as a function trainer.

    sweep run trainer=function trainer._target_=mytrain.fit trainer.n_val=log trainer.chance=log \
        grid.lr='[0.1,1,3]' grid.clip='[null,1.0]' seeds=3 epochs=10

This is the loop a user already has: it loads its data, builds its model, trains, and evaluates
once per epoch. What lrsweep asks of it is small: take the setting (lr, clip, batch size) and the
seed, call `report(epoch, ...)` once per epoch with its validation accuracy and losses, and (for
the gradient figures and the collapse signals) let `GradientMonitor` clip and record. `n_val` and
`chance` are reported too (`trainer.n_val=log trainer.chance=log`): the loop knows its validation
set. The data and the model are those of lrsweep's default task (digits, a 2-layer LSTM), so the
sweep's collapse calls can be set beside the built-in trainer's (tests/test_examples.py).
`GradientMonitor` also records the signals of why a run collapsed (update ratios, saturation,
crit_lr, the logits' log-sum-exp, where a NaN began), as lrsweep's own loop does.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from sweep import GradientMonitor


def digits(val_fraction: float = 0.25, seed: int = 0):
    """The digits read row by row (8 steps x 8 pixels in [0, 1]), split by class."""
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(val_fraction * len(idx)))
        val.append(idx[:k])
        train.append(idx[k:])
    tr, va = rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(val))
    return (torch.from_numpy(x[tr]), torch.from_numpy(y[tr])), (
        torch.from_numpy(x[va]),
        torch.from_numpy(y[va]),
    )


class Net(nn.Module):
    def __init__(self, hidden: int, layers: int) -> None:
        super().__init__()
        self.rnn = nn.LSTM(8, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def fit(setting, seed, epochs, report, hidden: int = 64, layers: int = 2, momentum: float = 0.9):
    (x, y), (xv, yv) = digits()
    torch.manual_seed(seed)
    model = Net(hidden, layers)
    opt = torch.optim.SGD(model.parameters(), lr=setting["lr"], momentum=momentum)
    loss_fn = nn.CrossEntropyLoss()
    monitor = GradientMonitor(model, opt, loss_fn)  # gradients, updates, NaN origin, crit_lr
    monitor.probe(xv[:64], yv[:64])  # the probe batch: saturation, logit_lse
    order = torch.Generator().manual_seed(seed)
    chance = float(torch.bincount(yv).max()) / len(yv)
    for epoch in range(1, epochs + 1):
        model.train()
        losses = []
        for idx in torch.randperm(len(x), generator=order).split(setting["batch_size"]):
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            # records the norm before clipping, then clips (None: not); the batch is for crit_lr
            monitor.clip(setting["clip"], batch=(x[idx], y[idx]))
            opt.step()
            losses.append(loss.detach())
        model.eval()
        with torch.no_grad():
            out = model(xv)
            val_loss = float(loss_fn(out, yv))
            pred = out.argmax(-1)
            val_acc = float((pred == yv).float().mean())
            top = float(torch.bincount(pred, minlength=10).max()) / len(yv)
        report(
            epoch,
            val_acc=val_acc,
            val_loss=val_loss,
            train_loss=float(torch.stack(losses).mean()),
            pred_top_frac=top,
            n_val=len(yv),
            chance=chance,
            **monitor.epoch_metrics(),
        )
