"""A Keras 3 regression from a word's letters to its vector, with Keras's "accuracy", swept as it is.

Shaped like a report lrsweep answers ("my word-to-vector model's accuracy stays at 0"): each
made-up word has a fixed vector, as a word2vec lookup gives one, and an LSTM reads the word's
one-hot letters and predicts it. Mean squared error, Adam, and ``metrics=["accuracy"]``, as in the
report. On a vector target Keras's "accuracy" is ``CategoricalAccuracy``: a hit when the largest
coordinate of the prediction is the largest of the target. It measures nothing here: which
coordinate is largest is the word's own (its letters cannot tell it), so it stays near 1/dims
while the loss falls. ``keras.callbacks.CSVLogger`` writes
``epoch,accuracy,chance_loss,loss,val_accuracy,val_loss``; ``keras.callbacks.TerminateOnNaN``
stops a run whose loss turns NaN.

    python train.py --lr 0.01 --warmup-epochs 3 --seed 0 --epochs 12 --log metrics.csv

``--warmup-epochs N`` raises the learning rate linearly from lr/steps to lr over the first N
epochs (0: none), as Adam recipes often do. The data are fixed by a data seed, not by ``--seed``
(nothing is downloaded): made-up words of 1-3 syllables, ``--val-words`` of them held out for
validation. A word's vector is a part of its own (random: like the vector of a word whose
spelling says nothing of its meaning) plus a part its letters tell: a sum of fixed weights of its
letters, added to every coordinate alike (as word vectors share a common direction). The
coordinates are standardised, so predicting the mean vector scores an MSE of about 1, and the
letters can bring it down to about ``1 - letter_share``. ``chance_loss`` is logged with every
epoch: the validation MSE of predicting the training words' mean vector, the loss of knowing
nothing that lrsweep's calls from the loss measure learning against.
"""

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported; no TensorFlow needed
os.environ.setdefault("OMP_NUM_THREADS", "1")  # small model, several scripts at once

import numpy as np

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "st", "tr", "pl"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
CODAS = ["", "", "n", "r", "s", "t", "l"]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, required=True, help="Adam learning rate")
    parser.add_argument("--clipnorm", default="none", help="gradient norm clip; 'none': off")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="weights and batch order")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--log", required=True, help="CSV file for keras.callbacks.CSVLogger")
    parser.add_argument(
        "--warmup-epochs", type=float, default=0.0, help="linear lr warmup; 0: none"
    )
    parser.add_argument("--units", type=int, default=32, help="LSTM units")
    parser.add_argument(
        "--words", type=int, default=2000, help="made-up words, validation's included"
    )
    parser.add_argument("--val-words", type=int, default=500, help="words held out for validation")
    parser.add_argument("--dims", type=int, default=300, help="length of a word's vector")
    parser.add_argument(
        "--letter-share",
        type=float,
        default=0.5,
        help="share of the vectors' variance the letters tell",
    )
    args = parser.parse_args(argv)
    text = args.clipnorm.strip().lower()
    if text in ("none", "null", ""):
        args.clipnorm = None
    else:
        try:
            args.clipnorm = float(args.clipnorm)
        except ValueError:
            parser.error(f"--clipnorm must be a number or 'none', not {args.clipnorm!r}")
    if not 0 < args.val_words < args.words:
        parser.error(
            f"--val-words must lie between 0 and --words ({args.words}), got {args.val_words}"
        )
    return args


def make_words(n, data_seed=0):
    """n distinct made-up words of 1-3 syllables, in a random order (fixed by the data seed)."""
    rng = np.random.default_rng(data_seed)
    words = set()
    while len(words) < n:
        words.add(
            "".join(
                ONSETS[rng.integers(len(ONSETS))]
                + VOWELS[rng.integers(len(VOWELS))]
                + CODAS[rng.integers(len(CODAS))]
                for _ in range(rng.integers(1, 4))
            )
        )
    return list(rng.permutation(sorted(words)))


def one_hot_words(words):
    """(N, T, V) one-hot letters, '.' padding the words to the longest one."""
    alphabet = ["."] + sorted({c for w in words for c in w})
    index = {c: i for i, c in enumerate(alphabet)}
    steps = max(map(len, words))
    x = np.zeros((len(words), steps, len(alphabet)), dtype="float32")
    for i, word in enumerate(words):
        for t, c in enumerate(word.ljust(steps, ".")):
            x[i, t, index[c]] = 1.0
    return x


def word_vectors(words, dims, letter_share, data_seed=0):
    """(N, dims) standardised vectors: a random part of each word's own, plus a sum of fixed
    letter weights added to every coordinate (the part the letters tell)."""
    rng = np.random.default_rng(data_seed + 1)
    letters = sorted({c for w in words for c in w})
    weight = dict(zip(letters, rng.normal(size=len(letters))))
    told = np.array([sum(weight[c] for c in w) for w in words])
    told = (told - told.mean()) / told.std()
    own = rng.normal(size=(len(words), dims))
    y = np.sqrt(1 - letter_share) * own + np.sqrt(letter_share) * told[:, None]
    return ((y - y.mean(0)) / y.std(0)).astype("float32")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import keras

    words = make_words(args.words)
    x, y = one_hot_words(words), word_vectors(words, args.dims, args.letter_share)
    n_val = args.val_words
    keras.utils.set_random_seed(args.seed)
    model = keras.Sequential(
        [
            keras.Input(shape=x.shape[1:]),
            keras.layers.LSTM(args.units),
            keras.layers.Dense(args.dims),
        ]
    )

    class Warmup(keras.optimizers.schedules.LearningRateSchedule):
        """lr x (step + 1) / steps for the first `steps` steps, then lr."""

        def __init__(self, lr, steps):
            self.lr, self.steps = lr, max(1, int(steps))

        def __call__(self, step):
            ramp = keras.ops.minimum(1.0, (keras.ops.cast(step, "float32") + 1.0) / self.steps)
            return self.lr * ramp

    class LogChanceLoss(keras.callbacks.Callback):
        """Adds `chance_loss` to each epoch's logs (listed before CSVLogger, which writes it)."""

        def __init__(self, value):
            super().__init__()
            self.value = value

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["chance_loss"] = self.value

    # the loss of knowing nothing: the validation MSE of predicting the training words' mean vector
    chance_loss = float(((y[:n_val] - y[n_val:].mean(0)) ** 2).mean())
    steps_per_epoch = -(-(len(x) - n_val) // args.batch_size)
    lr = Warmup(args.lr, args.warmup_epochs * steps_per_epoch) if args.warmup_epochs else args.lr
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr, global_clipnorm=args.clipnorm),
        loss="mse",
        metrics=["accuracy"],  # as in the report: on a regression it measures nothing
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.log)), exist_ok=True)
    model.fit(
        x[n_val:],
        y[n_val:],
        validation_data=(x[:n_val], y[:n_val]),
        epochs=args.epochs,
        batch_size=args.batch_size,
        shuffle=True,
        verbose=2,
        callbacks=[
            LogChanceLoss(chance_loss),
            keras.callbacks.CSVLogger(args.log),
            keras.callbacks.TerminateOnNaN(),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
