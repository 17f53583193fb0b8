"""Gate saturation of Keras LSTM / GRU / SimpleRNN layers, recomputed from their weights with
keras.ops (any backend), for sweep.integrations.keras.

Usage::

    layers, unsupported = recurrent_layers(model)     # [(name, layer)], ["name (why)"]
    sat, total = saturation(layer, inputs, mask=None, initial_state=None)   # backend scalars

Keras's own gate order and formulas (keras/src/layers/rnn): an LSTM's kernel holds i, f, c, o;
h = o * tanh(c). A GRU's holds z (update), r (reset), h (candidate); with `reset_after` (Keras 3's
default) its bias is two rows, the input's and the recurrent one, and the reset gate multiplies
the recurrent projection (h U_h + b_h); without, it multiplies h before U_h. h = z h_prev +
(1 - z) candidate. Counted as saturated: recurrent (sigmoid) gates within 0.03 of 0 or 1, the
candidate and the hidden state beyond 0.97 in absolute value (a SimpleRNN: its state only),
over units, time steps and sequences; a masked step counts for nothing and carries the state,
as Keras does. Supported: those three layers (or keras.layers.RNN of their cells) with tanh activations,
sigmoid or hard-sigmoid gates, not stateful, also inside Bidirectional (each direction is its
own layer). Any other recurrent layer (a custom cell, stacked cells, ConvLSTM) is reported as
unsupported.
"""

from __future__ import annotations

import keras
from keras import ops

from sweep.core.signal_rules import sigmoid_saturated, tanh_saturated

_CELLS = (keras.layers.LSTMCell, keras.layers.GRUCell, keras.layers.SimpleRNNCell)


def _walk(layer):
    """Every layer inside `layer` (models, and each direction of a Bidirectional)."""
    for sub in getattr(layer, "layers", None) or []:
        yield sub
        yield from _walk(sub)
    if isinstance(layer, keras.layers.Bidirectional):
        for sub in (layer.forward_layer, layer.backward_layer):
            yield sub
            yield from _walk(sub)


def _why_not(layer) -> str | None:
    """Why the gates of this recurrent layer cannot be recomputed (None: they can)."""
    cell = getattr(layer, "cell", None)
    if type(cell) not in _CELLS:
        what = type(cell).__name__ if cell is not None else "none"
        return (
            f"{type(layer).__name__} with cell {what}: only LSTM, GRU and SimpleRNN cells "
            f"(keras.layers.LSTM, GRU, SimpleRNN, or RNN of their cells)"
        )
    if layer.stateful:
        return "stateful: its state is carried between batches"
    if getattr(cell.activation, "__name__", "") != "tanh":
        return f"activation {getattr(cell.activation, '__name__', cell.activation)}: tanh only"
    gates = getattr(cell, "recurrent_activation", None)
    if gates is not None and getattr(gates, "__name__", "") not in ("sigmoid", "hard_sigmoid"):
        return f"recurrent_activation {getattr(gates, '__name__', gates)}: sigmoid gates only"
    return None


def recurrent_layers(model) -> tuple[list[tuple[str, object]], list[str]]:
    """The recurrent layers whose gates can be recomputed, and the others with the reason."""
    found, unsupported, seen = [], [], set()
    for layer in _walk(model):
        if not isinstance(layer, keras.layers.RNN) or id(layer) in seen:
            continue
        seen.add(id(layer))
        why = _why_not(layer)
        if why is None:
            found.append((layer.name, layer))
        else:
            unsupported.append(f"{layer.name} ({why})")
    return found, unsupported


def _count(acts, saturated, keep):
    """Saturated and total activations of one step (keep: [B, 1] bool, or None)."""
    hits = ops.cast(saturated(acts), "float32")
    rows = float(acts.shape[0])
    if keep is not None:
        weight = ops.cast(keep, "float32")
        hits = hits * weight
        rows = ops.sum(weight)
    # a NaN activation is neither saturated nor not: the layer's share becomes NaN
    finite = ops.all(ops.isfinite(acts))
    return ops.where(finite, ops.sum(hits), float("nan")), rows * acts.shape[-1]


def _cell_step(layer, xp_t, h, c):
    """One step of the layer's cell from the input's projection: (h, c, sigmoid gates, tanh
    activations)."""
    cell = layer.cell
    act, units = cell.activation, cell.units
    if isinstance(cell, keras.layers.LSTMCell):
        z = xp_t + ops.matmul(h, cell.recurrent_kernel)
        zi, zf, zc, zo = ops.split(z, 4, axis=-1)
        gate = cell.recurrent_activation
        i, f, o = gate(zi), gate(zf), gate(zo)
        g = act(zc)
        c = f * c + i * g
        h = o * act(c)
        return h, c, ops.concatenate([i, f, o], -1), ops.concatenate([g, h], -1)
    if isinstance(cell, keras.layers.GRUCell):
        x_z, x_r, x_h = ops.split(xp_t, 3, axis=-1)
        gate, rk = cell.recurrent_activation, cell.recurrent_kernel
        if cell.reset_after:
            inner = ops.matmul(h, rk)
            if cell.use_bias:
                inner = inner + cell.bias[1]
            r_z, r_r, r_h = ops.split(inner, 3, axis=-1)
            z, r = gate(x_z + r_z), gate(x_r + r_r)
            hh = act(x_h + r * r_h)
        else:
            inner = ops.matmul(h, rk[:, : 2 * units])
            r_z, r_r = ops.split(inner, 2, axis=-1)
            z, r = gate(x_z + r_z), gate(x_r + r_r)
            hh = act(x_h + ops.matmul(r * h, rk[:, 2 * units :]))
        h = z * h + (1 - z) * hh
        return h, c, ops.concatenate([z, r], -1), ops.concatenate([hh, h], -1)
    h = act(xp_t + ops.matmul(h, cell.recurrent_kernel))
    return h, c, None, h


def rerun(layer, inputs, mask=None, initial_state=None):
    """The layer run again step by step: (saturated, total) and its outputs [B, T, units] in
    its own time order (for the tests: the layer's own output with return_sequences)."""
    cell = layer.cell
    x = ops.convert_to_tensor(inputs)
    if layer.go_backwards:
        x = ops.flip(x, axis=1)
        mask = ops.flip(mask, axis=1) if mask is not None else None
    bias = cell.bias if cell.use_bias else None
    if bias is not None and isinstance(cell, keras.layers.GRUCell) and cell.reset_after:
        bias = bias[0]  # the input's row; the recurrent row is added in the step
    xp = ops.matmul(x, cell.kernel)
    if bias is not None:
        xp = xp + bias
    batch, steps = ops.shape(x)[0], x.shape[1]
    h = ops.zeros((batch, cell.units), dtype=xp.dtype)
    c = h
    if initial_state is not None:
        states = (
            list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        )
        h = ops.convert_to_tensor(states[0])
        c = ops.convert_to_tensor(states[1]) if len(states) > 1 else h
    sat = total = ops.zeros((), dtype="float32")
    outputs = []
    for t in range(steps):
        h_new, c_new, sig, tanh = _cell_step(layer, xp[:, t], h, c)
        keep = None if mask is None else ops.expand_dims(ops.cast(mask[:, t], "bool"), -1)
        for acts, saturated in ((sig, sigmoid_saturated), (tanh, tanh_saturated)):
            if acts is not None:
                s, n = _count(acts, saturated, keep)
                sat, total = sat + s, total + n
        if keep is None:
            h, c = h_new, c_new
        else:  # a masked step carries the state (and the output) on, as Keras does
            h = ops.where(keep, h_new, h)
            c = ops.where(keep, c_new, c)
        outputs.append(h)
    return (sat, total), ops.stack(outputs, axis=1)


def saturation(layer, inputs, mask=None, initial_state=None):
    """(saturated, total) activations of one recurrent layer on its input (backend scalars)."""
    return rerun(layer, inputs, mask, initial_state)[0]
