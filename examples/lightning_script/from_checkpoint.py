"""The Lightning example from a checkpoint: every run of a sweep continues one saved checkpoint.

The network and data are train.py's (an LSTM reading scikit-learn's digits row by row, SGD +
momentum 0.9). `--save` trains it from scratch and writes a Lightning checkpoint with
`trainer.save_checkpoint` (what `ModelCheckpoint` writes too); `--init` continues one with
`trainer.fit(..., ckpt_path=...)`, which restores the weights, the optimizer's momentum and the
epoch count, at this run's learning rate (set as training starts: the checkpoint holds the old
one), clipping (`gradient_clip_val`) and seed (the batch order). `CSVLogger` numbers the epochs
N, N+1, ... (from 0, as Lightning does); lrsweep reads them as N+1, N+2, ...

    python from_checkpoint.py --save original.ckpt --lr 0.3 --epochs 8 --log-dir original
    python from_checkpoint.py --init original.ckpt --initial-epoch 8 --epochs 4 --lr 2 \\
        --clip none --seed 0 --log-dir run0
"""

import argparse
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")  # a model this small is fastest on one thread


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--init", help="the Lightning checkpoint every run continues")
    start.add_argument("--save", help="train from scratch and save a checkpoint here")
    parser.add_argument("--initial-epoch", type=int, default=0, help="epochs the checkpoint had")
    parser.add_argument("--epochs", type=int, default=8, help="epochs to train (more)")
    parser.add_argument("--lr", type=float, required=True, help="SGD learning rate")
    parser.add_argument("--clip", default="none", help="gradient_clip_val; 'none': no clipping")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="batch order (and new weights)")
    parser.add_argument("--log-dir", required=True, help="CSVLogger writes LOG_DIR/metrics.csv")
    parser.add_argument("--units", type=int, default=32, help="LSTM units (with --save)")
    parser.add_argument("--layers", type=int, default=2, help="LSTM layers (with --save)")
    args = parser.parse_args(argv)
    text = args.clip.strip().lower()
    args.clip = None if text in ("none", "null", "") else float(text)
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset
    from train import load_digits_split  # the same data as train.py (this folder)

    class DigitsLSTM(pl.LightningModule):
        def __init__(self, lr, units, layers):
            super().__init__()
            self.save_hyperparameters()  # a checkpoint rebuilds the same network
            self.lr = lr
            self.lstm = torch.nn.LSTM(8, units, num_layers=layers, batch_first=True)
            self.head = torch.nn.Linear(units, 10)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.head(out[:, -1])

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            logits = self(x)
            self.log("val_loss", torch.nn.functional.cross_entropy(logits, y), on_epoch=True)
            self.log("val_acc", (logits.argmax(1) == y).float().mean(), on_epoch=True)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)

        def on_train_start(self):
            # ckpt_path restored the optimizer with the checkpoint's learning rate: use this run's
            for group in self.trainer.optimizers[0].param_groups:
                group["lr"] = self.lr

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
    if args.init:  # the network the checkpoint was trained with, at this run's learning rate
        saved = torch.load(args.init, map_location="cpu", weights_only=False)["hyper_parameters"]
        model = DigitsLSTM(args.lr, saved["units"], saved["layers"])
    else:
        model = DigitsLSTM(args.lr, args.units, args.layers)
    trainer = pl.Trainer(
        max_epochs=args.initial_epoch + args.epochs if args.init else args.epochs,
        gradient_clip_val=args.clip,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        logger=CSVLogger(save_dir=os.path.abspath(args.log_dir), name="", version=""),
        check_val_every_n_epoch=1,
    )
    trainer.fit(model, train, val, ckpt_path=args.init)
    if args.save:
        trainer.save_checkpoint(args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
