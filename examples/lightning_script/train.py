"""A plain Lightning 2 training script, with one line of lrsweep: its callback.

A small LSTM reads scikit-learn's handwritten digits row by row (8 steps x 8 pixels, 10 classes)
and is trained with SGD + momentum 0.9. Lightning's ``CSVLogger`` writes the per-epoch metrics
(``train_loss_step``/``train_loss_epoch``, ``val_loss``, ``val_acc``, and the collapse signals
that lrsweep's ``CollapseSignals`` callback logs) to ``LOG_DIR/metrics.csv``.
Training stops cleanly after the first epoch whose training loss is NaN/inf (that epoch is
logged, validation included). With ``--ckpt-dir DIR`` it saves ``DIR/last.ckpt`` every epoch and
resumes from it when it exists (the metrics.csv rows of the epochs it holds are kept).

    python train.py --lr 0.1 --clip none --batch-size 32 --seed 0 --epochs 8 --log-dir logs/run0
"""

import argparse
import math
import os
import sys

# A model this small runs several times faster on one thread, and lrsweep runs several scripts
# at once; set OMP_NUM_THREADS yourself to use more.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, required=True, help="SGD learning rate")
    parser.add_argument(
        "--clip", default="none", help="gradient_clip_val (global norm); 'none': no clipping"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="weights and batch order")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--log-dir", required=True, help="CSVLogger writes LOG_DIR/metrics.csv")
    parser.add_argument("--ckpt-dir", default=None, help="save/resume DIR/last.ckpt")
    parser.add_argument("--units", type=int, default=32, help="LSTM units")
    parser.add_argument("--layers", type=int, default=2, help="LSTM layers")
    args = parser.parse_args(argv)
    if args.clip.strip().lower() in ("none", "null", ""):
        args.clip = None
    else:
        try:
            args.clip = float(args.clip)
        except ValueError:
            parser.error(f"--clip must be a number or 'none', not {args.clip!r}")
    return args


def load_digits_split(n_val=360, data_seed=0):
    """Digits as (N, 8 rows, 8 pixels) in [0, 1]; a fixed split that does not depend on --seed."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")
    y = digits.target.astype("int64")
    order = np.random.default_rng(data_seed).permutation(len(x))
    val, train = order[:n_val], order[n_val:]
    return (x[train], y[train]), (x[val], y[val])


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    from sweep.integrations.lightning import CollapseSignals

    class DigitsLSTM(pl.LightningModule):
        def __init__(self, lr, units, layers):
            super().__init__()
            self.lr = lr
            self.lstm = torch.nn.LSTM(8, units, num_layers=layers, batch_first=True)
            self.head = torch.nn.Linear(units, 10)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.head(out[:, -1])

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            logits = self(x)
            self.log("val_loss", torch.nn.functional.cross_entropy(logits, y), on_epoch=True)
            self.log("val_acc", (logits.argmax(1) == y).float().mean(), on_epoch=True)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)

    class StopOnNonFinite(Callback):
        """Stop after the epoch (its validation included) whose training loss is NaN/inf."""

        def on_train_epoch_end(self, trainer, pl_module):
            loss = trainer.callback_metrics.get("train_loss_epoch")
            if loss is not None and not math.isfinite(float(loss)):
                print(f"epoch {trainer.current_epoch}: training loss is {float(loss)}, stopping")
                trainer.should_stop = True

    pl.seed_everything(args.seed, verbose=False)
    (x_train, y_train), (x_val, y_val) = load_digits_split()
    train = DataLoader(
        TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train)),
        batch_size=args.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    val = DataLoader(
        TensorDataset(torch.from_numpy(x_val), torch.from_numpy(y_val)), batch_size=512
    )

    # CSVLogger(save_dir=D, name="", version="") writes D/metrics.csv (and D/hparams.yaml).
    log_dir = os.path.abspath(args.log_dir)
    metrics = os.path.join(log_dir, "metrics.csv")
    callbacks = [StopOnNonFinite(), CollapseSignals()]  # lrsweep's signals, logged every epoch
    ckpt_path, earlier_rows = None, []
    if args.ckpt_dir:
        callbacks.append(ModelCheckpoint(dirpath=args.ckpt_dir, save_last=True, save_top_k=0))
        last = os.path.join(args.ckpt_dir, "last.ckpt")
        if os.path.exists(last):
            ckpt_path = last
            done = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
            earlier_rows = keep_earlier_rows(metrics, done)
    logger = CSVLogger(save_dir=log_dir, name="", version="")
    if earlier_rows:
        # Lightning's CSVLogger deletes an existing metrics.csv when it starts: hand it the rows of
        # the epochs the checkpoint holds, so that its first write puts them back in front.
        logger.experiment.metrics.extend(earlier_rows)
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        gradient_clip_val=args.clip,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_checkpointing=bool(args.ckpt_dir),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        logger=logger,
        callbacks=callbacks,
        check_val_every_n_epoch=1,
        log_every_n_steps=10,
    )
    model = DigitsLSTM(args.lr, args.units, args.layers)
    trainer.fit(model, train, val, ckpt_path=ckpt_path)
    if os.path.exists(metrics + ".before-resume") and os.path.exists(metrics):
        os.remove(metrics + ".before-resume")
    return 0


def keep_earlier_rows(metrics, done_epoch):
    """The rows of epochs 0..done_epoch (those in the checkpoint) of the earlier attempt's log.

    The log is moved to metrics.csv.before-resume first (so a resume killed before Lightning's
    first write loses nothing: the next attempt reads it from there)."""
    import csv

    backup = metrics + ".before-resume"
    if os.path.exists(metrics):
        os.replace(metrics, backup)
    if not os.path.exists(backup):
        return []
    with open(backup, newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        {k: v for k, v in row.items() if v not in ("", None)}
        for row in rows
        if row.get("epoch") not in (None, "") and int(float(row["epoch"])) <= done_epoch
    ]


if __name__ == "__main__":
    sys.exit(main())
