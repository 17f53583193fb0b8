"""The Keras and Lightning callbacks (sweep.integrations, issue 26 item 5) on tiny models: every
column with sane values, training itself untouched, gradient norms before clipping, an injected
NaN named with its layer, and an unsupported layer that costs one line and nothing else."""

from __future__ import annotations

import importlib
import math
import os

import numpy as np
import pandas as pd
import pytest
import torch

from sweep.core.signal_rules import CRIT_LADDER, CRIT_NO_RISE

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported


class _Lazy:
    """A module imported at its first use. Every xdist worker collects this file, but only the one
    that runs its group needs Keras and Lightning (about 7 s of CPU each to import)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._name), attr)


keras = _Lazy("keras")
pl = _Lazy("lightning.pytorch")
keras_signals = _Lazy("sweep.integrations.keras")
lightning_signals = _Lazy("sweep.integrations.lightning")
keras_gates = _Lazy("sweep.integrations.keras_gates")


pytestmark = [
    pytest.mark.integration("keras", "lightning"),
    pytest.mark.xdist_group("integrations"),  # one worker imports Keras and Lightning
    # Keras's own fit loop converts torch tensors with np.array (keras/src/backend/torch/core.py),
    # which numpy 2 flags for torch's __array__; a plain fit warns as often as one with the
    # callbacks, whose own conversions go through tolist() instead.
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    ),
]


def _data(n=64, steps=5, features=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, steps, features)).astype("float32")
    y = ((x[:, :, 0].sum(1) > 0).astype("int64") + (x[:, :, 1].sum(1) > 1)).astype("int64")
    return x, y


# ------------------------------------------------------------------------------------------ Keras


def _numpy(variable) -> np.ndarray:
    return variable.value.detach().numpy().copy()  # the torch backend's tensor


def _keras_model(seed=0, last=None, rnn=None):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((5, 3)),
            rnn or keras.layers.LSTM(8, return_sequences=True),
            keras.layers.GRU(8),
            last or keras.layers.Dense(3),
        ]
    )
    return model


def _fit(model, tmp_path, callbacks, epochs=2, clipnorm=None, lr=0.1, loss=None, name="log.csv"):
    x, y = _data()
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=0.9, global_clipnorm=clipnorm),
        loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    log = tmp_path / name
    model.fit(
        x,
        y,
        validation_data=_data(32, seed=1),
        epochs=epochs,
        batch_size=16,
        shuffle=False,
        verbose=0,
        callbacks=[*callbacks, keras.callbacks.CSVLogger(str(log))],
    )
    return pd.read_csv(log)


def test_keras_callback_writes_every_column_and_leaves_training_as_it_was(tmp_path):
    plain = _fit(_keras_model(), tmp_path, [], name="plain.csv")
    signals = keras_signals.CollapseSignals(probe=_data(40, seed=2))
    log = _fit(_keras_model(), tmp_path, [signals])
    pd.testing.assert_frame_equal(log[plain.columns], plain)  # the same losses, bit for bit
    layers = [layer.name for layer in signals.model.layers]
    expected = {
        "update_ratio",
        "grad_norm_mean",
        "grad_norm_max",
        "grad_norm_p90",
        "clip_fraction",
        "sat_frac",
        "crit_lr",
        "logit_lse",
        "pred_top_frac",
        *(f"{k}/{n}" for k in ("update_ratio", "grad_norm_mean", "grad_norm_max") for n in layers),
        *(f"sat_frac/{n}" for n in layers[:2]),
        *(f"nonfinite_origin/{n}" for n in layers),
    }
    assert set(log.columns) - set(plain.columns) == expected
    assert ((log["update_ratio"] > 0) & (log["update_ratio"] < 0.5)).all()
    assert log["sat_frac"].between(0, 1).all() and log[f"sat_frac/{layers[1]}"].between(0, 1).all()
    rungs = [0.1 * m for m in (*CRIT_LADDER, CRIT_NO_RISE)]
    assert all(any(math.isclose(c, r, rel_tol=1e-5) for r in rungs) for c in log["crit_lr"])
    assert (log["logit_lse"] >= math.log(3) - 1e-4).all() and log["pred_top_frac"].between(
        1 / 3, 1
    ).all()
    assert (log[[f"nonfinite_origin/{n}" for n in layers]] == 0).all().all()
    assert (log["clip_fraction"] == 0).all() and (
        log["grad_norm_p90"] <= log["grad_norm_max"]
    ).all()


def test_keras_gradient_norms_are_read_before_clipping(tmp_path):
    log = _fit(_keras_model(), tmp_path, [keras_signals.CollapseSignals()], clipnorm=1e-3, epochs=1)
    assert (log["grad_norm_mean"] > 1e-2).all() and (log["clip_fraction"] == 1.0).all()
    assert "sat_frac" not in log.columns  # no probe: the probe columns are left out


def test_keras_logits_of_a_softmax_output_are_recomputed(tmp_path):
    """A Dense(activation="softmax") output with a probabilities loss: logit_lse comes from the
    layer's own pre-activation, as with from_logits=True on the same weights."""
    probe = _data(40, seed=2)
    signals = keras_signals.CollapseSignals(probe=probe)
    model = _keras_model(last=keras.layers.Dense(3, activation="softmax"))
    log = _fit(model, tmp_path, [signals], epochs=1, loss="sparse_categorical_crossentropy")
    head = keras.Model(model.inputs[0], model.layers[-1].input)
    dense = model.layers[-1]
    z = head(probe[0]).detach().numpy() @ _numpy(dense.kernel) + _numpy(dense.bias)
    m = z.max(-1, keepdims=True)
    lse = float(np.mean(m[:, 0] + np.log(np.exp(z - m).sum(-1))))
    assert log["logit_lse"].iloc[-1] == pytest.approx(lse, rel=1e-4)


@pytest.mark.parametrize("lr", [0.05, 0.2, 0.6])
def test_keras_crit_lr_is_the_first_ladder_step_past_the_parabolas_rise(tmp_path, lr):
    """Least squares, one full-batch SGD step: from the weights before it, along it, the loss is
    a parabola that rises past eta* = 2 |g|^2 / g'Hg; crit_lr is the smallest ladder step above
    eta* (16 lr when 8 lr does not reach it), and the weights are those the step left."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = x @ rng.normal(size=(5, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")
    w0 = _numpy(model.layers[0].kernel).astype("float64")
    g = 2 * x.T @ (x @ w0 - y) / len(x)
    eta_star = 2 * (g * g).sum() / (g.T @ (2 * x.T @ x / len(x)) @ g).item()
    rungs = [lr * m for m in CRIT_LADDER]
    assert min(abs(r / eta_star - 1) for r in rungs) > 0.01  # no rung on the edge
    log = tmp_path / "log.csv"
    callbacks = [keras_signals.CollapseSignals(), keras.callbacks.CSVLogger(str(log))]
    model.fit(x, y, epochs=1, batch_size=64, shuffle=False, verbose=0, callbacks=callbacks)
    expected = min((r for r in rungs if r > eta_star), default=CRIT_NO_RISE * lr)
    assert pd.read_csv(log)["crit_lr"].iloc[0] == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(_numpy(model.layers[0].kernel), w0 - lr * g, rtol=1e-4)


def _poison(layer: str, epoch: int):
    class _Poison(keras.callbacks.Callback):
        """Writes a NaN into one layer's first weight when an epoch begins."""

        def on_epoch_begin(self, index, logs=None):
            if index == epoch:
                v = self.model.get_layer(layer).trainable_variables[0]
                w = _numpy(v)
                w.flat[0] = np.nan
                v.assign(w)

    return _Poison()


@pytest.mark.parametrize("index", [0, 2])
def test_keras_a_nan_written_into_one_layer_is_named_as_the_origin(tmp_path, index):
    model = _keras_model()
    layer = model.layers[index].name
    signals = keras_signals.CollapseSignals(probe=_data(40, seed=2))
    log = _fit(model, tmp_path, [_poison(layer, 1), signals], epochs=3)
    assert log[f"nonfinite_origin/{layer}"].tolist() == [0.0, 1.0, 0.0]
    others = [c for c in log.columns if c.startswith("nonfinite_origin/") and not c.endswith(layer)]
    assert (log[others] == 0).all().all() and signals.nonfinite_origin == layer


def _own_cell(units: int):
    class _OwnCell(keras.layers.Layer):
        """A user's own recurrent cell: the callback cannot recompute its gates."""

        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units, self.state_size = units, units

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1] + self.units, self.units))

        def call(self, inputs, states):
            h = keras.ops.tanh(
                keras.ops.matmul(keras.ops.concatenate([inputs, states[0]], -1), self.w)
            )
            return h, [h]

    return _OwnCell(units)


def test_keras_an_unsupported_recurrent_layer_costs_one_line_and_training_goes_on(tmp_path, capfd):
    rnn = keras.layers.RNN(_own_cell(8), return_sequences=True, name="own")
    log = _fit(
        _keras_model(rnn=rnn), tmp_path, [keras_signals.CollapseSignals(probe=_data(40))], epochs=3
    )
    lines = [line for line in capfd.readouterr().err.splitlines() if "lrsweep" in line]
    assert len(lines) == 1 and "layer own (RNN with cell _OwnCell" in lines[0], lines
    assert "saturation is left out and training goes on" in lines[0]
    assert len(log) == 3 and "sat_frac/own" not in log.columns and log["sat_frac"].notna().all()


def test_keras_a_csvlogger_before_the_callback_is_pointed_out(tmp_path, capfd):
    x, y = _data()
    model = _keras_model()
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(
        x,
        y,
        epochs=1,
        verbose=0,
        callbacks=[
            keras.callbacks.CSVLogger(str(tmp_path / "x.csv")),
            keras_signals.CollapseSignals(),
        ],
    )
    assert "put CollapseSignals first" in capfd.readouterr().err


LAYERS = {  # built when the test runs: collecting this file must not import Keras
    "lstm": lambda: keras.layers.LSTM(7, return_sequences=True),
    "gru": lambda: keras.layers.GRU(7, return_sequences=True),
    "gru-reset-before": lambda: keras.layers.GRU(7, return_sequences=True, reset_after=False),
    "simple": lambda: keras.layers.SimpleRNN(7, return_sequences=True),
    "lstm-backwards": lambda: keras.layers.LSTM(7, return_sequences=True, go_backwards=True),
    "rnn-of-gru-cell": lambda: keras.layers.RNN(
        keras.layers.GRUCell(7, use_bias=False), return_sequences=True
    ),
}


@pytest.mark.parametrize("kind", list(LAYERS))
def test_keras_gates_are_recomputed_in_kerass_own_order(kind):
    """Keras's gate order (LSTM i, f, c, o; GRU z, r, h), GRU's reset_after, go_backwards, a
    mask (masked steps carry the state) and an initial state: the step-by-step rerun equals the
    layer's own output."""
    layer = LAYERS[kind]()
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(4, 6, 5)) * 2).astype("float32")
    mask = np.ones((4, 6), bool)
    mask[1, 3:] = mask[3, 1:] = False
    states = 2 if isinstance(layer.cell, keras.layers.LSTMCell) else 1
    init = [rng.normal(size=(4, 7)).astype("float32") for _ in range(states)]
    for kwargs in ({}, {"mask": mask}, {"initial_state": init}):
        out = layer(x, **kwargs).detach().numpy()
        _, again = keras_gates.rerun(layer, x, kwargs.get("mask"), kwargs.get("initial_state"))
        np.testing.assert_allclose(out, again.detach().numpy(), atol=1e-5)
    assert keras_gates.recurrent_layers(keras.Sequential([keras.Input((6, 5)), layer]))[0] == [
        (layer.name, layer)
    ]


# -------------------------------------------------------------------------------------- Lightning


def _net(cell: str = "lstm"):
    class _Net(pl.LightningModule):
        def __init__(self, cell="lstm", lr=0.1):
            super().__init__()
            self.lr = lr
            self.lstm = torch.nn.LSTM(3, 8, num_layers=2, batch_first=True)
            self.head = torch.nn.Linear(8, 3)
            self.extra = (
                torch.nn.RNN(3, 4, nonlinearity="relu", batch_first=True)
                if cell == "relu"
                else None
            )

        def forward(self, x):
            if self.extra is not None:
                self.extra(x)
            return self.head(self.lstm(x)[0][:, -1])

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            logits = self(x)
            self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
            self.log("val_acc", (logits.argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)

    return _Net(cell)


def _poison_lightning():
    class _PoisonLightning(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                with torch.no_grad():
                    pl_module.head.weight[0, 0] = math.nan

    return _PoisonLightning()


def _lightning_fit(tmp_path, callbacks, epochs=2, clip=None, cell="lstm"):
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    pl.seed_everything(0, verbose=False)
    tmp_path.mkdir(parents=True, exist_ok=True)
    loaders = [
        DataLoader(TensorDataset(*map(torch.from_numpy, _data(n, seed=s))), batch_size=16)
        for n, s in ((64, 0), (300, 1))
    ]
    trainer = pl.Trainer(
        max_epochs=epochs,
        gradient_clip_val=clip,
        accelerator="cpu",
        logger=CSVLogger(tmp_path, name="", version=""),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    trainer.fit(_net(cell), *loaders)
    return pd.read_csv(tmp_path / "metrics.csv")


def test_lightning_callback_logs_the_columns_on_each_epochs_row_and_leaves_training_as_it_was(
    tmp_path,
):
    plain = _lightning_fit(tmp_path / "plain", [], clip=1e-3)
    signals = lightning_signals.CollapseSignals()
    log = _lightning_fit(tmp_path / "signals", [signals], clip=1e-3)
    pd.testing.assert_frame_equal(log[plain.columns], plain)  # the same losses, bit for bit
    rows = log.dropna(subset=["update_ratio"])
    assert rows["epoch"].tolist() == [0, 1] and rows["train_loss"].notna().all()
    expected = {"sat_frac", "sat_frac/lstm.l0", "sat_frac/lstm.l1", "crit_lr", "logit_lse"}
    expected |= {f"{k}/{g}" for k in ("update_ratio", "grad_norm_mean") for g in ("lstm", "head")}
    assert expected <= set(log.columns)
    assert ((rows["update_ratio"] > 0) & (rows["update_ratio"] < 0.5)).all()
    assert rows["sat_frac"].between(0, 1).all() and (rows["clip_fraction"] == 1.0).all()
    assert (rows["grad_norm_mean"] > 1e-2).all()  # before Lightning clipped them to 1e-3
    assert len(signals.monitor.probe_inputs) == 64  # drawn from the 300 validation items
    assert not any(c.startswith("nonfinite_origin") for c in log.columns)


def test_lightning_a_nan_in_one_module_is_named_and_unsupported_modules_cost_one_line(
    tmp_path, capfd
):
    signals = lightning_signals.CollapseSignals()
    _lightning_fit(tmp_path, [_poison_lightning(), signals], epochs=3, cell="relu")
    # the epoch-end rows (NaN is written "nan"; a cell the row does not hold stays empty)
    log = pd.read_csv(tmp_path / "metrics.csv", dtype=str, keep_default_na=False)
    rows = log[log["update_ratio"] != ""]
    assert rows["epoch"].tolist() == ["0", "1", "2"]  # training went on
    assert rows["nonfinite_origin/head"].tolist() == ["", "1.0", ""]
    assert (
        rows["update_ratio"].tolist()[1:] == ["nan", "nan"] and signals.nonfinite_origin == "head"
    )
    lines = [line for line in capfd.readouterr().err.splitlines() if "lrsweep" in line]
    assert lines == [
        "lrsweep CollapseSignals: module extra (RNN with relu: nothing saturates); its saturation "
        "is left out and training goes on"
    ]
