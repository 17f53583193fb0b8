"""Saturation of a PyTorch model's recurrent layers on a probe batch, recomputed from their weights.

Usage (GradientMonitor does this once per epoch)::

    tap = RecurrentTap(model)                    # finds nn.LSTM / nn.GRU / nn.RNN(tanh) and the cells
    with torch.no_grad(), tap:                   # pre-hooks keep each recurrent module's inputs
        model(probe_inputs)
    counts = tap.saturation()                    # {"rnn.l0": (saturated, total), ...} device tensors

The fused (cuDNN / oneDNN) kernels do not expose their gates, so each layer is run again step by
step from its own weights and the input it received: sigmoid gates (i, f, o; GRU r, z) count as
saturated within 0.03 of 0 or 1, tanh activations (candidate g / n, hidden state h) beyond 0.97
in absolute value, pooled over gates, units, time steps and sequences (padding excluded); NaN
when an activation is not finite. Layers
are named `<module>.l<k>` (lrsweep's own `rnn.l0`, `rnn.l1`); a cell (nn.LSTMCell, ...) by its
module name, every call one time step. A recurrent module it cannot recompute (nn.RNN with relu:
nothing saturates) is listed in `unsupported`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from sweep.core.signal_rules import sigmoid_saturated, tanh_saturated

SEQUENCE_MODULES = (nn.LSTM, nn.GRU, nn.RNN)
CELL_MODULES = (nn.LSTMCell, nn.GRUCell, nn.RNNCell)
Counts = tuple[torch.Tensor, torch.Tensor]  # (saturated, total), 0-d device tensors


def _mode(module: nn.Module) -> str:
    """LSTM, GRU, RNN_TANH or RNN_RELU (nn.RNNBase's own `mode` names, for the cells too)."""
    if isinstance(module, nn.RNNBase):
        return module.mode
    if isinstance(module, nn.LSTMCell):
        return "LSTM"
    if isinstance(module, nn.GRUCell):
        return "GRU"
    return "RNN_TANH" if module.nonlinearity == "tanh" else "RNN_RELU"


class RecurrentTap:
    """The recurrent modules of a model, and the inputs they receive during one forward."""

    def __init__(self, model: nn.Module) -> None:
        found = [
            (name, m)
            for name, m in model.named_modules()
            if isinstance(m, SEQUENCE_MODULES + CELL_MODULES)
        ]
        self.modules = [(n or "(model)", m) for n, m in found if _mode(m) != "RNN_RELU"]
        self.unsupported = [
            f"{n or '(model)'} ({type(m).__name__} with relu: nothing saturates)"
            for n, m in found
            if _mode(m) == "RNN_RELU"
        ]
        self.calls: dict[str, list[tuple[tuple, dict]]] = {}
        self._handles: list = []

    def __enter__(self) -> RecurrentTap:
        self.calls = {name: [] for name, _ in self.modules}
        for name, module in self.modules:

            def keep(mod, args, kwargs, name=name):
                self.calls[name].append((args, kwargs))

            self._handles.append(module.register_forward_pre_hook(keep, with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def saturation(self) -> dict[str, Counts]:
        """Saturated and total activations per recurrent layer, for the calls just seen."""
        out: dict[str, Counts] = {}
        for name, module in self.modules:
            for args, kwargs in self.calls.get(name, []):
                x = args[0] if args else kwargs.get("input")
                hx = args[1] if len(args) > 1 else kwargs.get("hx")
                if isinstance(module, nn.RNNBase):
                    layers = sequence_saturation(module, x, hx)
                    parts = {f"{name}.l{k}": c for k, c in enumerate(layers)}
                else:
                    parts = {name: cell_saturation(module, x, hx)}
                for key, (s, t) in parts.items():
                    if key in out:
                        s, t = out[key][0] + s, out[key][1] + t
                    out[key] = (s, t)
        return out


# ----------------------------------------------------------------------------------- one step


def _step(mode: str, xp: torch.Tensor, h: torch.Tensor, c, w_hh, b_hh, w_hr=None):
    """One time step from the input's projection `xp` (x W_ih^T + b_ih): the new (h, c) and the
    activations to count, as (sigmoid gates, tanh activations)."""
    hp = h @ w_hh.T
    if b_hh is not None:
        hp = hp + b_hh
    if mode == "LSTM":
        i, f, g, o = (xp + hp).chunk(4, -1)
        i, f, o, g = i.sigmoid(), f.sigmoid(), o.sigmoid(), g.tanh()
        c = f * c + i * g
        pre = o * c.tanh()
        h_new = pre @ w_hr.T if w_hr is not None else pre
        return h_new, c, torch.cat([i, f, o], -1), torch.cat([g, pre], -1)
    if mode == "GRU":  # PyTorch's order r, z, n; the reset gate applies to W_hn h + b_hn
        xr, xz, xn = xp.chunk(3, -1)
        hr, hz, hn = hp.chunk(3, -1)
        r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
        n = (xn + r * hn).tanh()
        h_new = (1 - z) * n + z * h
        return h_new, c, torch.cat([r, z], -1), torch.cat([n, h_new], -1)
    h_new = (xp + hp).tanh()
    return h_new, c, None, h_new


class _Tally:
    """Saturated and total activations of a layer, counted a chunk of steps at a time (one
    stacked count per chunk instead of a dozen small operations per step)."""

    CHUNK = 1 << 22  # activations held before they are counted (16 MB of float32)

    def __init__(self, device: torch.device) -> None:
        self.sat = torch.zeros((), device=device)
        self.total = torch.zeros((), device=device)
        self._steps: list[tuple] = []
        self._held = 0

    def add(self, sig, tanh, keep: torch.Tensor | None) -> None:
        """One step's activations; `keep` ([B, 1] bool) marks the sequences not yet ended."""
        self._steps.append((sig, tanh, keep))
        self._held += sum(a.numel() for a in (sig, tanh) if a is not None)
        if self._held >= self.CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self._steps:
            return
        sigs, tanhs, keeps = zip(*self._steps)
        keep = torch.stack(keeps) if keeps[0] is not None else None  # [t, B, 1]
        for acts, saturated in ((sigs, sigmoid_saturated), (tanhs, tanh_saturated)):
            if acts[0] is None:
                continue
            a = torch.stack(acts)  # [t, B, k]
            hits = saturated(a)
            rows = a.shape[0] * a.shape[1] if keep is None else keep.sum()
            if keep is not None:
                hits = hits & keep
            # a NaN activation is neither saturated nor not: the layer's share becomes NaN
            finite = torch.isfinite(a).all()
            self.sat = self.sat + torch.where(finite, hits.sum().float(), torch.nan)
            self.total = self.total + rows * a.shape[-1]
        self._steps, self._held = [], 0

    def counts(self) -> Counts:
        self.flush()
        return self.sat, self.total


# ----------------------------------------------------------------------------- whole sequences


def _reverse_within(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each sequence of [B, T, F] reversed within its own length (padding stays at the end)."""
    if lengths is None:
        return x.flip(1)
    steps = torch.arange(x.shape[1], device=x.device)
    n = lengths.to(x.device)[:, None]
    index = torch.where(steps < n, n - 1 - steps, steps)  # [B, T]
    return x.gather(1, index[..., None].expand_as(x))


def sequence_saturation(module: nn.RNNBase, x, hx) -> list[Counts]:
    """Per layer of an nn.LSTM / nn.GRU / nn.RNN(tanh): (saturated, total) on input `x` (a
    tensor or a PackedSequence) from initial state `hx` (None: zeros)."""
    return rerun(module, x, hx)[0]


def rerun(module: nn.RNNBase, x, hx) -> tuple[list[Counts], torch.Tensor]:
    """The module run again step by step: the counts per layer, and the last layer's outputs
    (batch first, zero at padding: the module's own output, which the tests compare)."""
    lengths = None
    if isinstance(x, PackedSequence):
        x, lengths = pad_packed_sequence(x, batch_first=True)
    elif not module.batch_first and x.dim() == 3:
        x = x.transpose(0, 1)
    unbatched = x.dim() == 2
    if unbatched:
        x = x.unsqueeze(0)
    batch, steps = x.shape[0], x.shape[1]
    mask = None  # every step of every sequence counts
    if lengths is not None:
        mask = (torch.arange(steps)[None, :] < lengths[:, None]).to(x.device)
    mode, dirs = module.mode, 2 if module.bidirectional else 1
    h0 = c0 = None
    if hx is not None:
        h0, c0 = hx if mode == "LSTM" else (hx, None)
        if unbatched:
            h0 = h0.unsqueeze(1)
            c0 = c0.unsqueeze(1) if c0 is not None else None
    h_size = module.proj_size if getattr(module, "proj_size", 0) else module.hidden_size
    counts: list[Counts] = []
    layer_in = x
    for layer in range(module.num_layers):
        outs = []
        tally = _Tally(x.device)
        for d in range(dirs):
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            w = {k: getattr(module, k + suffix, None) for k in ("weight_ih", "weight_hh")}
            b_ih = getattr(module, "bias_ih" + suffix, None)
            b_hh = getattr(module, "bias_hh" + suffix, None)
            w_hr = getattr(module, "weight_hr" + suffix, None)
            seq = layer_in if d == 0 else _reverse_within(layer_in, lengths)
            xp = seq @ w["weight_ih"].T
            if b_ih is not None:
                xp = xp + b_ih
            k = layer * dirs + d
            h = h0[k] if h0 is not None else xp.new_zeros(batch, h_size)
            c = c0[k] if c0 is not None else xp.new_zeros(batch, module.hidden_size)
            ys = []
            for t in range(steps):
                h_new, c_new, sig, tanh = _step(mode, xp[:, t], h, c, w["weight_hh"], b_hh, w_hr)
                if mask is None:
                    tally.add(sig, tanh, None)
                    h, c = h_new, c_new
                    ys.append(h)
                    continue
                keep = mask[:, t, None]
                tally.add(sig, tanh, keep)
                ys.append(torch.where(keep, h_new, torch.zeros_like(h_new)))
                h = torch.where(keep, h_new, h)
                c = torch.where(keep, c_new, c) if mode == "LSTM" else c
            y = torch.stack(ys, 1)
            outs.append(y if d == 0 else _reverse_within(y, lengths))
        layer_in = torch.cat(outs, -1)
        counts.append(tally.counts())
    return counts, layer_in


def cell_saturation(module: nn.Module, x: torch.Tensor, hx) -> Counts:
    """(saturated, total) of one call of nn.LSTMCell / nn.GRUCell / nn.RNNCell(tanh)."""
    unbatched = x.dim() == 1
    if unbatched:
        x = x.unsqueeze(0)
    mode = _mode(module)
    if hx is None:
        h = x.new_zeros(x.shape[0], module.hidden_size)
        c = h
    elif mode == "LSTM":
        h, c = hx
    else:
        h, c = hx, None
    if unbatched:
        h = h.unsqueeze(0)
        c = c.unsqueeze(0) if c is not None else None
    xp = x @ module.weight_ih.T
    if module.bias_ih is not None:
        xp = xp + module.bias_ih
    _, _, sig, tanh = _step(mode, xp, h, c, module.weight_hh, module.bias_hh)
    tally = _Tally(x.device)
    tally.add(sig, tanh, None)
    return tally.counts()
