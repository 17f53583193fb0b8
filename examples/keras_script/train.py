"""A plain Keras 3 training script (torch backend), with one line of lrsweep: its callback.

A small LSTM reads scikit-learn's handwritten digits row by row (8 steps x 8 pixels, 10 classes)
and is trained with SGD + momentum 0.9. Every epoch, ``keras.callbacks.CSVLogger`` appends one
row (``epoch,accuracy,loss,val_accuracy,val_loss`` and the collapse signals that lrsweep's
``CollapseSignals`` callback adds to the logs before it) to the file given by ``--log``;
``keras.callbacks.TerminateOnNaN`` stops training when the loss turns NaN/inf.

    python train.py --lr 0.1 --clipnorm none --batch-size 32 --seed 0 --epochs 8 --log metrics.csv
"""

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported; no TensorFlow needed
# A model this small runs several times faster on one thread, and lrsweep runs several scripts
# at once; set OMP_NUM_THREADS yourself to use more.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, required=True, help="SGD learning rate")
    parser.add_argument(
        "--clipnorm", default="none", help="clip each gradient to this norm; 'none': no clipping"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="weights and batch order")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--log", required=True, help="CSV file for keras.callbacks.CSVLogger")
    parser.add_argument("--units", type=int, default=32, help="LSTM units")
    parser.add_argument("--layers", type=int, default=2, help="LSTM layers")
    args = parser.parse_args(argv)
    if args.clipnorm.strip().lower() in ("none", "null", ""):
        args.clipnorm = None
    else:
        try:
            args.clipnorm = float(args.clipnorm)
        except ValueError:
            parser.error(f"--clipnorm must be a number or 'none', not {args.clipnorm!r}")
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
    import keras

    from sweep.integrations.keras import CollapseSignals

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_val, y_val) = load_digits_split()
    model = keras.Sequential(
        [
            keras.Input(shape=(8, 8)),
            *[
                keras.layers.LSTM(args.units, return_sequences=i < args.layers - 1)
                for i in range(args.layers)
            ],
            keras.layers.Dense(10),  # logits
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(
            learning_rate=args.lr, momentum=0.9, global_clipnorm=args.clipnorm
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    log_dir = os.path.dirname(os.path.abspath(args.log))
    os.makedirs(log_dir, exist_ok=True)
    model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=args.epochs,
        batch_size=args.batch_size,
        shuffle=True,
        verbose=2,
        callbacks=[
            CollapseSignals(probe=(x_val, y_val)),  # lrsweep's signals, before the CSVLogger
            keras.callbacks.CSVLogger(args.log),
            keras.callbacks.TerminateOnNaN(),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
