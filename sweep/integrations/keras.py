"""A Keras 3 callback that writes lrsweep's collapse signals into the epoch's logs, so the
script's own `keras.callbacks.CSVLogger` writes them as columns (issue 26). Any backend.

Usage, one line in a Keras script::

    from sweep.integrations.keras import CollapseSignals

    model.fit(x, y, validation_data=(x_val, y_val), callbacks=[
        CollapseSignals(probe=(x_val, y_val)),        # before CSVLogger: it writes what is logged
        keras.callbacks.CSVLogger(args.log),
    ])

Columns, every epoch (the same set each epoch, since CSVLogger fixes its header at the first):

- `update_ratio`, `update_ratio/<layer>`: the mean over the epoch's steps of ||w_after -
  w_before|| / ||w_before||, all trainable weights, and per top-level layer (every step is seen:
  the weights are read at each batch's begin and end; with `steps_per_execution` > 1 a "step"
  is one execution).
- `grad_norm_mean`, `grad_norm_max`, `grad_norm_p90`, `clip_fraction`,
  `grad_norm_mean/<layer>`, `grad_norm_max/<layer>`: the gradient norms before clipping, on the
  torch backend only (Keras leaves `.grad` on each variable after the step; JAX and TensorFlow
  keep gradients inside the compiled step, where a callback cannot reach: one line says so).
  `clip_fraction` is NaN with per-variable `clipnorm` / `clipvalue`.
- `sat_frac`, `sat_frac/<layer>`: saturation of the LSTM / GRU / SimpleRNN layers on the probe
  batch (sweep.integrations.keras_gates); a recurrent layer it cannot recompute gets one line
  and is left out.
- `crit_lr`: the critical step size of the epoch's last update, on that update's own batch, as
  lrsweep's own loop measures it (sweep.core.signal_rules: from the weights before the update,
  along it, lr/8 .. 8 lr by bisection in 4 forward passes, 16 lr when the loss rises nowhere;
  the weights restored exactly after). Torch backend only: the batch is kept from the eager
  training step (`model.train_step` is wrapped for the fit).
- `logit_lse`, `pred_top_frac`: the mean log-sum-exp of the logits and the most-predicted
  class's share on the probe batch, for a (sparse) categorical cross-entropy loss (left out
  otherwise); logits are the outputs with `from_logits=True`, else recomputed from a final
  `Dense(activation="softmax")` (NaN for any other output of probabilities).
- `nonfinite_origin/<layer>` (one per top-level layer): 1.0 in the epoch where a NaN/inf first
  appeared, in that layer (weights already non-finite before a step; else the first layer whose
  output was not finite, on eager backends; else the layer nearest the output whose weights the
  step made non-finite), 0.0 elsewhere.

The probe batch: 64 items of `probe` (`probe_size`), drawn once with a fixed seed. Without a probe
the probe columns are left out (one line says so). Order: CSVLogger writes the logs as it gets
them, so this callback must come before it; one line warns when it does not.
"""

from __future__ import annotations

import inspect
import math
import sys

import keras
import numpy as np
from keras import ops

from sweep.core.signal_rules import (
    CRIT_LR,
    LOGIT_LSE,
    PRED_TOP_FRAC,
    PROBE_SIZE,
    SAT_FRAC,
    ladder_bisection,
    origin_column,
)
from sweep.integrations.keras_gates import recurrent_layers, saturation
from sweep.integrations.keras_steps import KerasSteps, to_numpy


def _say(message: str) -> None:
    print(f"lrsweep CollapseSignals: {message}", file=sys.stderr, flush=True)


def _first(value):
    """The first tensor (or array) of a structure: a model's or layer's main output."""
    flat = keras.tree.flatten(value)
    return flat[0] if flat else None


def _sequences(args: tuple, kwargs: dict):
    """The input sequences a recurrent layer's call got (positional or by name)."""
    return args[0] if args else kwargs.get("sequences", kwargs.get("inputs"))


class CollapseSignals(keras.callbacks.Callback):
    """lrsweep's per-epoch collapse signals, written into the logs at each epoch's end."""

    def __init__(self, probe=None, probe_size: int = PROBE_SIZE, seed: int = 0) -> None:
        super().__init__()
        self.probe = probe
        self.probe_size = probe_size
        self.seed = seed
        self.nonfinite_origin: str | None = None

    # ------------------------------------------------------------------------------ setting up

    def on_train_begin(self, logs=None) -> None:
        model = self.model
        self._check_order()
        self._eager = keras.backend.backend() == "torch" and not getattr(
            model, "jit_compile", False
        )
        if not self._eager:
            _say(
                f"the gradient norms and crit_lr are left out: on the {keras.backend.backend()} "
                "backend (or with jit_compile) the gradients and the batch stay inside the "
                "compiled training step"
            )
        self.steps = KerasSteps(model, gradients=self._eager, check_before=not self._eager)
        self.recurrent, unsupported = recurrent_layers(model)
        for line in unsupported:
            _say(f"layer {line}; its saturation is left out and training goes on")
        self._probe = self._choose_probe()
        if self._probe is None:
            _say(
                "no probe batch: sat_frac, logit_lse and pred_top_frac are left out; "
                "pass probe=(x_val, y_val)"
            )
        self._classification, self._from_logits = self._loss_kind()
        self._mode = "off"
        self._captured: dict[int, tuple] = {}
        self._taps: list = []
        for index, layer in enumerate(model.layers):
            self._tap(layer, index)
        for _, layer in self.recurrent:
            if layer not in model.layers:
                self._tap(layer, None)
        self._zeros = {origin_column(name): 0.0 for name in self.steps.names}
        self._last_batch = None
        self._own_step = model.__dict__.get("train_step")
        if self._eager:  # the eager step's batch, kept by reference for crit_lr
            step = model.train_step

            def train_step(data):
                self._last_batch = data
                return step(data)

            model.train_step = train_step

    def _check_order(self) -> None:
        """Warn when a CSVLogger comes first: it would write the row before the signals exist.
        (Keras gives a callback no list of the others; the caller's frame holds it.)"""
        frame = inspect.currentframe()
        caller = frame.f_back.f_back if frame and frame.f_back else None
        others = getattr(caller.f_locals.get("self"), "callbacks", None) if caller else None
        if not isinstance(others, list) or self not in others:
            return
        mine = others.index(self)
        if any(isinstance(c, keras.callbacks.CSVLogger) for c in others[:mine]):
            _say(
                "a CSVLogger comes before CollapseSignals in callbacks: it writes each row before "
                "the signals are added; put CollapseSignals first"
            )

    def _choose_probe(self):
        if self.probe is None:
            return None
        x, y = self.probe
        n = len(_first(keras.tree.flatten(x)))
        pick = np.arange(n)
        if n > self.probe_size:
            pick = np.sort(
                np.random.default_rng(self.seed).choice(n, self.probe_size, replace=False)
            )
        take = lambda a: to_numpy(a)[pick]  # noqa: E731
        return keras.tree.map_structure(take, x), keras.tree.map_structure(take, y)

    def _loss_kind(self) -> tuple[bool, bool]:
        """(classification, outputs are logits) from the compiled loss."""
        loss = getattr(self.model, "loss", None)
        name = (
            loss
            if isinstance(loss, str)
            else getattr(loss, "name", None) or getattr(loss, "__name__", "")
        )
        classification = "categorical_crossentropy" in str(name)
        return classification, bool(getattr(loss, "from_logits", False))

    def _tap(self, layer, index: int | None) -> None:
        """Wrap the layer's `call`: its output in a training step, its inputs on the probe."""
        own = layer.__dict__.get("call")
        original = layer.call

        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            if self._mode == "train" and index is not None:
                main = _first(out)
                if main is not None:
                    self.steps.output(index, main)
            elif self._mode == "capture":
                self._captured.setdefault(id(layer), (args, kwargs))
            return out

        layer.call = call
        self._taps.append((layer, own))

    def on_train_end(self, logs=None) -> None:
        if self._eager:
            if self._own_step is None:
                del self.model.train_step
            else:
                self.model.train_step = self._own_step
        self._last_batch = None
        for layer, own in self._taps:
            if own is None:
                del layer.call
            else:
                layer.call = own
        self._taps = []

    # ------------------------------------------------------------------------------- each step

    def on_train_batch_begin(self, batch, logs=None) -> None:
        self.steps.begin()
        if self._eager:
            self._mode = "train"

    def on_train_batch_end(self, batch, logs=None) -> None:
        self._mode = "off"
        self.steps.end()

    # ------------------------------------------------------------------------------ each epoch

    def on_epoch_end(self, epoch, logs=None) -> None:
        self._mode = "off"
        optimizer = self.model.optimizer
        clip = getattr(optimizer, "global_clipnorm", None)
        per_variable = getattr(optimizer, "clipnorm", None) or getattr(optimizer, "clipvalue", None)
        row, origin = self.steps.epoch(clip, clip_known=not per_variable)
        if self._eager:
            row[CRIT_LR] = self._critical_lr()
        if self._probe is not None:
            row.update(self._probe_row())
        row.update(self._zeros)
        if origin is not None and self.nonfinite_origin is None:
            self.nonfinite_origin = origin
            row[origin_column(origin)] = 1.0
        if logs is not None:
            logs.update(row)

    def _probe_row(self) -> dict[str, float]:
        x, y = self._probe
        self._captured = {}
        self._mode = "capture"
        try:
            y_pred = self.model(x, training=False)
        finally:
            self._mode = "off"
        row = {}
        if self.recurrent:
            sat = total = 0.0
            for name, layer in self.recurrent:
                args, kwargs = self._captured.get(id(layer), ((), {}))
                seq = _sequences(args, kwargs)
                if seq is None:
                    continue
                s, t = saturation(layer, seq, kwargs.get("mask"), kwargs.get("initial_state"))
                s, t = float(to_numpy(s)), float(to_numpy(t))
                row[f"{SAT_FRAC}/{name}"] = s / t if t else math.nan
                sat, total = sat + s, total + t
            row[SAT_FRAC] = sat / total if total else math.nan
        if self._classification:
            row[LOGIT_LSE], row[PRED_TOP_FRAC] = self._outputs(y_pred)
        return row

    def _outputs(self, y_pred) -> tuple[float, float]:
        pred = to_numpy(_first(y_pred))
        counts = np.bincount(pred.argmax(-1).ravel(), minlength=pred.shape[-1])
        top = float(counts.max() / counts.sum())
        logits = _first(y_pred) if self._from_logits else self._softmax_logits()
        if logits is None:
            return math.nan, top
        lse = to_numpy(ops.mean(ops.logsumexp(logits, axis=-1)))
        return float(lse), top

    def _softmax_logits(self):
        """A final Dense(activation="softmax")'s logits, from the input it got on the probe."""
        last = self.model.layers[-1]
        if not isinstance(last, keras.layers.Dense) or last.activation.__name__ != "softmax":
            return None
        args, kwargs = self._captured.get(id(last), ((), {}))
        inputs = args[0] if args else kwargs.get("inputs")
        if inputs is None:
            return None
        logits = ops.matmul(inputs, last.kernel)
        return logits + last.bias if last.use_bias else logits

    def _critical_lr(self) -> float:
        """The last update's critical step size on its own batch (lrsweep's definition,
        sweep.core.signal_rules): from the weights before it, along it, by bisection."""
        steps = self.steps
        if self._last_batch is None or steps.last_update is None:
            return math.nan
        x, y, weights = keras.utils.unpack_x_y_sample_weight(self._last_batch)
        lr = float(to_numpy(self.model.optimizer.learning_rate))
        if not lr > 0:
            return math.nan
        variables = steps.variables
        now = [ops.copy(v.value) for v in variables]
        start, update = steps.last_before, steps.last_update

        def loss_at(multiple: float) -> float:
            for v, w, u in zip(variables, start, update):
                v.assign(w + multiple * u)
            return self._loss(x, y, self.model(x, training=False), weights)

        try:
            base = loss_at(0.0)
            if not math.isfinite(base):
                return math.nan
            return lr * ladder_bisection(lambda m: not loss_at(m) <= base)
        finally:
            for v, w in zip(variables, now):
                v.assign(w)

    def _loss(self, x, y, y_pred, sample_weight=None) -> float:
        loss = self.model.compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False
        )
        return float(to_numpy(loss))
