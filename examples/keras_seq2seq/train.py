"""A Keras 3 sequence-to-sequence autoencoder with no metric and no validation set, swept as it is.

Shaped like a report lrsweep answers ("weights turned NaN in my seq2seq"): words as one-hot
letters, a Bidirectional LSTM encoder (``merge_mode="sum"``), ``RepeatVector``, an LSTM decoder
that spells the word back, categorical cross-entropy, SGD with momentum 0.9 and Nesterov, and no
metric. ``keras.callbacks.CSVLogger`` writes ``epoch,chance_loss,loss`` (``val_loss`` too with
``--val-split``) and, before it, lrsweep's ``CollapseSignals`` adds the signals of why a run
collapsed (probed on the training words: there is no validation set);
``keras.callbacks.TerminateOnNaN`` stops a run whose loss turns NaN.

    python train.py --lr 4 --clipnorm none --warmup-epochs 12 --seed 0 --epochs 16 --log metrics.csv

``--warmup-epochs N`` raises the learning rate linearly from lr/steps to lr over the first N
epochs (0: none), as seq2seq recipes often do. The words are made up from syllables with a fixed
data seed, not by ``--seed`` (nothing is downloaded). ``chance_loss`` is logged with every epoch:
the cross-entropy of knowing nothing about the word, the entropy of the letter frequencies
('.' padding included), which lrsweep's calls from the loss measure learning against.
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
    parser.add_argument("--lr", type=float, required=True, help="SGD learning rate")
    parser.add_argument("--clipnorm", default="none", help="gradient norm clip; 'none': off")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="weights and batch order")
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--log", required=True, help="CSV file for keras.callbacks.CSVLogger")
    parser.add_argument(
        "--warmup-epochs", type=float, default=0.0, help="linear lr warmup; 0: none"
    )
    parser.add_argument("--units", type=int, default=32, help="LSTM units (encoder and decoder)")
    parser.add_argument("--words", type=int, default=1500, help="made-up words to autoencode")
    parser.add_argument("--max-syllables", type=int, default=3, help="longest word, in syllables")
    parser.add_argument("--val-split", type=float, default=0.0, help="share held out (0: none)")
    args = parser.parse_args(argv)
    text = args.clipnorm.strip().lower()
    if text in ("none", "null", ""):
        args.clipnorm = None
    else:
        try:
            args.clipnorm = float(args.clipnorm)
        except ValueError:
            parser.error(f"--clipnorm must be a number or 'none', not {args.clipnorm!r}")
    return args


def make_words(n, max_syllables=3, data_seed=0):
    """n distinct made-up words of 1..max_syllables syllables (fixed by the data seed)."""
    rng = np.random.default_rng(data_seed)
    words = set()
    while len(words) < n:
        syllables = rng.integers(1, max_syllables + 1)
        words.add(
            "".join(
                ONSETS[rng.integers(len(ONSETS))]
                + VOWELS[rng.integers(len(VOWELS))]
                + CODAS[rng.integers(len(CODAS))]
                for _ in range(syllables)
            )
        )
    return sorted(words)


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


def letter_entropy(x):
    """Cross-entropy of predicting every letter from the letter frequencies alone (nats)."""
    freq = x.reshape(-1, x.shape[-1]).mean(0)
    freq = freq[freq > 0]
    return float(-(freq * np.log(freq)).sum())


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import keras

    from sweep.integrations.keras import CollapseSignals

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

    keras.utils.set_random_seed(args.seed)
    x = one_hot_words(make_words(args.words, args.max_syllables))
    steps, vocab = x.shape[1:]
    model = keras.Sequential(
        [
            keras.Input(shape=(steps, vocab)),
            keras.layers.Bidirectional(keras.layers.LSTM(args.units), merge_mode="sum"),
            keras.layers.RepeatVector(steps),
            keras.layers.LSTM(args.units, return_sequences=True),
            keras.layers.TimeDistributed(keras.layers.Dense(vocab, activation="softmax")),
        ]
    )
    steps_per_epoch = -(-round(len(x) * (1 - args.val_split)) // args.batch_size)
    lr = Warmup(args.lr, args.warmup_epochs * steps_per_epoch) if args.warmup_epochs else args.lr
    model.compile(
        optimizer=keras.optimizers.SGD(
            learning_rate=lr, momentum=0.9, nesterov=True, global_clipnorm=args.clipnorm
        ),
        loss="categorical_crossentropy",  # no metric, as in the report
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.log)), exist_ok=True)
    model.fit(
        x,
        x,
        validation_split=args.val_split,
        epochs=args.epochs,
        batch_size=args.batch_size,
        shuffle=True,
        verbose=2,
        callbacks=[
            LogChanceLoss(letter_entropy(x)),
            CollapseSignals(probe=(x, x)),  # lrsweep's signals, before the CSVLogger
            keras.callbacks.CSVLogger(args.log),
            keras.callbacks.TerminateOnNaN(),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
