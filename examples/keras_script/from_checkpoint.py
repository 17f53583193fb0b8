"""The Keras example from a checkpoint: every run of a sweep continues one saved model.

The network and data are train.py's (an LSTM reading scikit-learn's digits row by row, SGD +
momentum 0.9). `--save` trains it from scratch and saves it with `model.save` (what
`keras.callbacks.ModelCheckpoint` writes too); `--init` continues a saved model with
`keras.saving.load_model` (weights and the optimizer's momentum) and `fit(initial_epoch=N)`, at
this run's learning rate, clipping and seed (the seed orders the batches).
`keras.callbacks.CSVLogger` numbers the epochs N, N+1, ... (from 0, as Keras does); lrsweep reads
them as N+1, N+2, ... With `--ckpt-dir DIR` the run saves itself there every epoch and, started
again after a kill, continues from its last epoch.

    python from_checkpoint.py --save original.keras --lr 0.3 --epochs 8 --log original.csv
    python from_checkpoint.py --init original.keras --initial-epoch 8 --epochs 4 --lr 2 \\
        --clipnorm none --seed 0 --log metrics.csv
"""

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported; no TensorFlow needed
os.environ.setdefault("OMP_NUM_THREADS", "1")  # a model this small is fastest on one thread


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--init", help="the saved model (.keras) every run continues")
    start.add_argument("--save", help="train from scratch and save the model here (.keras)")
    parser.add_argument("--initial-epoch", type=int, default=0, help="epochs the model had")
    parser.add_argument("--epochs", type=int, default=8, help="epochs to train (more)")
    parser.add_argument("--lr", type=float, required=True, help="SGD learning rate")
    parser.add_argument("--clipnorm", default="none", help="global norm to clip; 'none': no clip")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="batch order (and new weights)")
    parser.add_argument("--log", required=True, help="CSV file for keras.callbacks.CSVLogger")
    parser.add_argument("--ckpt-dir", default=None, help="save/resume this run in DIR")
    parser.add_argument("--units", type=int, default=32, help="LSTM units (with --save)")
    parser.add_argument("--layers", type=int, default=2, help="LSTM layers (with --save)")
    args = parser.parse_args(argv)
    text = args.clipnorm.strip().lower()
    args.clipnorm = None if text in ("none", "null", "") else float(text)
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import keras
    from train import load_digits_split  # the same data as train.py (this folder)

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_val, y_val) = load_digits_split()
    os.makedirs(os.path.dirname(os.path.abspath(args.log)), exist_ok=True)
    callbacks = [keras.callbacks.CSVLogger(args.log), keras.callbacks.TerminateOnNaN()]
    if args.save:
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
            optimizer=keras.optimizers.SGD(args.lr, momentum=0.9, global_clipnorm=args.clipnorm),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=args.epochs,
                  batch_size=args.batch_size, verbose=2, callbacks=callbacks)  # fmt: skip
        model.save(args.save)
        return 0

    # Continue the saved model; after a kill, this run's own last save (--ckpt-dir).
    done, source = 0, args.init
    if args.ckpt_dir:
        os.makedirs(args.ckpt_dir, exist_ok=True)
        last, count = (os.path.join(args.ckpt_dir, n) for n in ("last.keras", "epochs.txt"))
        if os.path.exists(last) and os.path.exists(count):
            done, source = int(open(count).read()), last
        callbacks[0] = keras.callbacks.CSVLogger(args.log, append=done > 0)
        callbacks += [
            keras.callbacks.ModelCheckpoint(last),  # after the CSV row: a kill between the
            keras.callbacks.LambdaCallback(  # two logs that epoch again, and the row is replaced
                on_epoch_end=lambda epoch, logs: _write(count, epoch + 1 - args.initial_epoch)
            ),
        ]
    model = keras.saving.load_model(source)  # weights, and the optimizer with its momentum
    model.optimizer.learning_rate = args.lr  # this run's learning rate and clipping
    model.optimizer.global_clipnorm = args.clipnorm
    model.fit(x_train, y_train, validation_data=(x_val, y_val),
              initial_epoch=args.initial_epoch + done, epochs=args.initial_epoch + args.epochs,
              batch_size=args.batch_size, verbose=2, callbacks=callbacks)  # fmt: skip
    return 0


def _write(path, value):
    with open(path + ".tmp", "w") as f:
        f.write(str(value))
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    sys.exit(main())
