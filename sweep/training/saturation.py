"""Saturated units and gates of LSTM/GRU layers on a probe batch (the `sat_frac` signal).

nn.LSTM and nn.GRU are fused: their gate activations never leave the kernel. They are
recomputed here from the layer's own weights by running the cell equations (PyTorch's, gate
order i, f, g, o for the LSTM and r, z, n for the GRU) on the layer's input, once per epoch and
without gradient. lrsweep's packed network keeps its weights stacked per seed ([S, in, G*H]);
a single layer's weights are the same with S = 1, so one implementation serves both.

Usage::

    layers = module_layers(lstm)                   # [[direction weights] per layer], S = 1
    sat, total, out = run_layers("lstm", layers, x, mask)   # per layer: [S] saturated, [S] values
    captured = capture_inputs(model); model(x); captured.release()    # a user's model's RNNs

Saturated (docs/why-it-collapsed.md): a sigmoid gate within SIGMOID_MARGIN of 0 or 1; a tanh
activation (the candidate, and the cell output tanh(c) of an LSTM or the hidden state of a GRU)
with |a| > TANH_LEVEL. Counted over the valid steps of every sequence (the mask), every unit and
both directions of a layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

SIGMOID_MARGIN = 0.03  # a sigmoid gate below 0.03 or above 0.97 is saturated
TANH_LEVEL = 0.97  # a tanh activation with |a| > 0.97 is saturated (Karpathy's count)
RNN_TYPES = (nn.LSTM, nn.GRU)


@dataclass
class Direction:
    """One direction of one layer, weights stacked per seed: w_ih [S, in, G*H], w_hh [S, H', G*H],
    b_ih and b_hh [S, 1, G*H]; w_hr [S, H, P] for an LSTM with projections (else None)."""

    w_ih: torch.Tensor
    w_hh: torch.Tensor
    b_ih: torch.Tensor
    b_hh: torch.Tensor
    w_hr: torch.Tensor | None = None
    reverse: bool = False


def module_layers(rnn: nn.Module) -> list[list[Direction]]:
    """The layers of an nn.LSTM / nn.GRU as Directions with S = 1 (views, no copies)."""
    layers = []
    dirs = 2 if rnn.bidirectional else 1
    gh = rnn.hidden_size * (4 if isinstance(rnn, nn.LSTM) else 3)
    for k in range(rnn.num_layers):
        row = []
        for d in range(dirs):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            w_ih = getattr(rnn, f"weight_ih{sfx}")
            zero = w_ih.new_zeros(1, 1, gh)
            b_ih = getattr(rnn, f"bias_ih{sfx}", None) if rnn.bias else None
            b_hh = getattr(rnn, f"bias_hh{sfx}", None) if rnn.bias else None
            w_hr = getattr(rnn, f"weight_hr{sfx}", None)
            row.append(
                Direction(
                    w_ih=w_ih.t()[None],
                    w_hh=getattr(rnn, f"weight_hh{sfx}").t()[None],
                    b_ih=b_ih[None, None] if b_ih is not None else zero,
                    b_hh=b_hh[None, None] if b_hh is not None else zero,
                    w_hr=w_hr.t()[None] if w_hr is not None else None,
                    reverse=bool(d),
                )
            )
        layers.append(row)
    return layers


@dataclass
class LayerRun:
    """What running the layers gave: per layer [S] saturated counts and [S] counted values, each
    layer's output [S, B, T, H*dirs] (the next layer's input), and whether each layer's output
    stayed finite ([S] bool)."""

    saturated: list[torch.Tensor] = field(default_factory=list)
    counted: list[torch.Tensor] = field(default_factory=list)
    outputs: list[torch.Tensor] = field(default_factory=list)


def run_layers(
    cell: str,
    layers: Sequence[Sequence[Direction]],
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    c0: torch.Tensor | None = None,
) -> LayerRun:
    """Run the cell equations layer by layer on x [S, B, T, F] (valid steps `mask` [S, B, T]),
    counting saturated activations. h0/c0: initial states [layers*dirs, S, B, H] (zeros if None).
    No dropout: the probe is read in evaluation mode."""
    run = LayerRun()
    dirs = len(layers[0]) if layers else 1
    for k, row in enumerate(layers):
        outs = []
        sat = x.new_zeros(x.shape[0])
        total = x.new_zeros(x.shape[0])
        for d, direction in enumerate(row):
            i = k * dirs + d
            out, s, n = _direction(
                cell,
                direction,
                x,
                mask,
                h0[i] if h0 is not None else None,
                c0[i] if c0 is not None else None,
            )
            outs.append(out)
            sat, total = sat + s, total + n
        x = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
        run.saturated.append(sat)
        run.counted.append(total)
        run.outputs.append(x)
    return run


def _saturated_sigmoid(a: torch.Tensor) -> torch.Tensor:
    return ((a < SIGMOID_MARGIN) | (a > 1.0 - SIGMOID_MARGIN)).sum(-1)


def _saturated_tanh(a: torch.Tensor) -> torch.Tensor:
    return (a.abs() > TANH_LEVEL).sum(-1)


def _direction(
    cell: str,
    w: Direction,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    h0: torch.Tensor | None,
    c0: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One direction over time: outputs [S, B, T, H_out], saturated and counted values [S].
    The activations of every step are kept and counted once at the end (a few operations per
    step: the probe is read every epoch)."""
    s, b, t, f = x.shape
    xg = torch.baddbmm(w.b_ih, x.reshape(s, b * t, f), w.w_ih).view(s, b, t, -1)
    h_size = w.w_hh.shape[-1] // (4 if cell == "lstm" else 3)
    h = h0 if h0 is not None else x.new_zeros(s, b, w.w_hh.shape[1])
    c = (c0 if c0 is not None else x.new_zeros(s, b, h_size)) if cell == "lstm" else None
    sigmoids: list[torch.Tensor] = []  # per step [S, B, G*H]: the gates through a sigmoid
    tanhs: list[torch.Tensor] = []  # per step [S, B, 2H]: the candidate and tanh(c) / h
    outs: list[torch.Tensor] = [None] * t  # type: ignore[list-item]
    steps = range(t - 1, -1, -1) if w.reverse else range(t)
    for step in steps:
        g = torch.baddbmm(w.b_hh, h, w.w_hh)
        if cell == "lstm":
            g = xg[:, :, step] + g
            sig = torch.sigmoid(g)
            cand = torch.tanh(g[..., 2 * h_size : 3 * h_size])
            c_new = sig[..., h_size : 2 * h_size] * c + sig[..., :h_size] * cand
            tanh_c = torch.tanh(c_new)
            h_new = sig[..., 3 * h_size :] * tanh_c
            if w.w_hr is not None:
                h_new = torch.bmm(h_new, w.w_hr)
            tanhs.append(torch.cat([cand, tanh_c], dim=-1))
        else:
            xr, xz, xn = xg[:, :, step].chunk(3, dim=-1)
            hr, hz, hn = g.chunk(3, dim=-1)
            sig = torch.sigmoid(torch.cat([xr + hr, xz + hz], dim=-1))
            r, z = sig[..., :h_size], sig[..., h_size:]
            n = torch.tanh(xn + r * hn)
            h_new = (1 - z) * n + z * h
            c_new = None
            tanhs.append(torch.cat([n, h_new], dim=-1))
        sigmoids.append(sig)
        if mask is not None:
            m = mask[:, :, step, None]
            h = torch.where(m, h_new, h)
            c = torch.where(m, c_new, c) if c is not None else None
        else:
            h, c = h_new, c_new
        outs[step] = h
    sig_all = torch.stack(sigmoids)  # [T, S, B, G*H] in the order of `steps`
    tanh_all = torch.stack(tanhs)
    if cell == "lstm":  # the g chunk went through tanh (counted in tanh_all), not a sigmoid
        count = _saturated_sigmoid(sig_all[..., : 2 * h_size]) + _saturated_sigmoid(
            sig_all[..., 3 * h_size :]
        )
    else:
        count = _saturated_sigmoid(sig_all)
    count = (count + _saturated_tanh(tanh_all)).to(x.dtype)  # [T, S, B]
    per_step = 5 * h_size if cell == "lstm" else 4 * h_size
    order = list(steps)
    valid = (
        mask[:, :, order].permute(2, 0, 1).to(x.dtype) if mask is not None else x.new_ones(t, s, b)
    )
    sat = (count * valid).sum((0, 2))
    total = valid.sum((0, 2)) * float(per_step)
    return torch.stack(outs, dim=2), sat, total


# --------------------------------------------------------------------------- a model's own RNNs


@dataclass
class Captured:
    """The inputs each nn.LSTM / nn.GRU of a model received in one forward pass."""

    names: list[str]
    calls: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    handles: list[Any] = field(default_factory=list)

    def release(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


def recurrent_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's nn.LSTM / nn.GRU modules by qualified name (a subclass counts)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, RNN_TYPES)]


def capture_inputs(model: nn.Module) -> Captured:
    """Forward hooks that keep the first input of each recurrent module (until `release()`)."""
    captured = Captured(names=[n for n, _ in recurrent_modules(model)])
    for name, module in recurrent_modules(model):

        def hook(mod, args, output, name=name):
            captured.calls.setdefault(name, tuple(args))

        captured.handles.append(module.register_forward_hook(hook))
    return captured


def module_saturation(
    module: nn.Module, args: tuple[Any, ...], probe_mask: torch.Tensor | None
) -> LayerRun:
    """Rerun one captured nn.LSTM / nn.GRU call. A PackedSequence input brings its own lengths; a
    padded [B, T, F] input whose batch and steps match the probe's uses the probe's mask; any
    other input counts every step."""
    x, mask = args[0], None
    if isinstance(x, PackedSequence):
        x, lengths = pad_packed_sequence(x, batch_first=True)
        mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]
        mask = mask.to(x.device)
    elif not module.batch_first:
        x = x.transpose(0, 1)
    if x.dim() == 2:  # an unbatched sequence [T, F]
        x = x[None]
    if mask is None and probe_mask is not None and tuple(probe_mask.shape) == tuple(x.shape[:2]):
        mask = probe_mask
    hx = args[1] if len(args) > 1 else None
    h0 = c0 = None
    if hx is not None:
        h0, c0 = hx if isinstance(hx, tuple) else (hx, None)
        h0 = h0[:, None] if h0 is not None else None
        c0 = c0[:, None] if c0 is not None else None
    cell = "lstm" if isinstance(module, nn.LSTM) else "gru"
    return run_layers(
        cell,
        module_layers(module),
        x[None].to(module.weight_ih_l0.dtype),
        mask[None] if mask is not None else None,
        h0,
        c0,
    )
