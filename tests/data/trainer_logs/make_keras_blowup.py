"""How keras_terminate_on_nan*.csv were made (Keras 3.15, torch backend; not run by the tests).

A deep *linear* net (no activation, so nothing saturates) on the digits, SGD + momentum 0.9 at a
learning rate far too high: the loss grows exponentially until it overflows, and
``keras.callbacks.TerminateOnNaN`` stops the fit.

    python make_keras_blowup.py 0.5 keras_terminate_on_nan.csv 14
    python make_keras_blowup.py 2 keras_terminate_on_nan_first_epoch.csv 8

What TerminateOnNaN leaves (worth knowing for the parser): it stops after the batch whose loss
is NaN/inf, but Keras still runs validation and ``CSVLogger`` still writes that epoch's row, so the
last row is complete, its ``loss`` the running mean so far (``inf`` or ``nan``) and ``val_loss``
``inf``/``nan``. Keras prints "Batch N: Invalid loss, terminating training". CSVLogger writes
``\\r\\n`` line ends (the csv module's default).

The other files: lightning_metrics*.csv come from examples/lightning_script/train.py (Lightning
2.6.6): ``--lr 0.1 --seed 0 --epochs 3`` (lightning_metrics.csv, and two snapshots of that file
copied while the run was going: before the first validation, when Lightning had not yet grown the
header, and in the middle of epoch 2), ``--lr 1e36 --layers 1 --epochs 4`` (inf_stop: the script
stops itself after the epoch whose loss is inf), and ``--lr 0.3 --epochs 2 --ckpt-dir CK`` then
``--epochs 4`` with the same folders (resumed: epochs 0-1 from the first process, 2-3 from the
second). keras_csvlogger.csv comes from examples/keras_script/train.py ``--lr 0.1 --clipnorm none
--seed 0 --epochs 4``.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import keras
from sklearn.datasets import load_digits

digits = load_digits()
x, y = (digits.images / 16.0).astype("float32"), digits.target
keras.utils.set_random_seed(0)
model = keras.Sequential(
    [keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(32), keras.layers.Dense(10)]
)
model.compile(
    optimizer=keras.optimizers.SGD(float(sys.argv[1]), momentum=0.9),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
model.fit(
    x[360:],
    y[360:],
    validation_data=(x[:360], y[:360]),
    epochs=int(sys.argv[3]),
    batch_size=32,
    verbose=2,
    callbacks=[keras.callbacks.CSVLogger(sys.argv[2]), keras.callbacks.TerminateOnNaN()],
)
