"""All seeds of one setting as one network with stacked weights (the model of `packing=on`).

Every weight gets a leading seed dimension S; the recurrence runs as batched matrix products
(`torch.baddbmm`), so one kernel does the work of S small ones.

Usage: ``pack = PackedRecurrentNet([build_model(cfg, task, s) for s in seeds])``, then
``pack(x [S, B, T, F], mask [S, B, T])``; each seed's output equals its own network's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sweep.training.models import RecurrentNet
from sweep.training.saturation import Direction


class PackedRecurrentNet(nn.Module):
    """S copies of `RecurrentNet` with stacked weights: inputs [S, B, T, ...] -> [S, B, (T,) out]."""

    def __init__(self, nets: list[RecurrentNet]) -> None:
        super().__init__()
        ref = nets[0]
        self.cell = ref.cell
        self.gates = 4 if ref.cell == "lstm" else 3
        self.layers = ref.rnn.num_layers
        self.directions = ref.directions
        self.hidden = ref.rnn.hidden_size
        self.per_step = ref.per_step
        self.dropout = ref.rnn.dropout

        def stack(name, fn=lambda t: t):
            return nn.Parameter(torch.stack([fn(_get(n, name)).detach().clone() for n in nets]))

        self.embed = stack("embed.weight") if ref.embed is not None else None
        self.names: list[tuple[str, str, str, str]] = []
        for layer in range(self.layers):
            for d in range(self.directions):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                names = tuple(
                    f"{k}{sfx}".replace(".", "_") for k in ("w_ih", "w_hh", "b_ih", "b_hh")
                )
                self.register_parameter(
                    names[0], stack(f"rnn.weight_ih{sfx}", lambda t: t.t())
                )  # [S, in, G*H]
                self.register_parameter(
                    names[1], stack(f"rnn.weight_hh{sfx}", lambda t: t.t())
                )  # [S, H, G*H]
                self.register_parameter(
                    names[2], stack(f"rnn.bias_ih{sfx}", lambda t: t[None])
                )  # [S, 1, G*H]
                self.register_parameter(names[3], stack(f"rnn.bias_hh{sfx}", lambda t: t[None]))
                self.names.append(names)  # type: ignore[arg-type]
        self.head_w = stack("head.weight", lambda t: t.t())  # [S, H*dirs, out]
        self.head_b = stack("head.bias", lambda t: t[None])  # [S, 1, out]

    @property
    def seeds(self) -> int:
        return int(self.head_w.shape[0])

    def weight_matrices(self) -> list[nn.Parameter]:
        """What the `l2` penalty covers, as in `RecurrentNet`: weights and embeddings, no biases."""
        return [
            p
            for name, p in self.named_parameters()
            if not (name.startswith("b_") or name == "head_b")
        ]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [S, B, T, F] floats or [S, B, T] token ids; mask: [S, B, T] bool valid steps."""
        x = self.embed_input(x)
        finals = []
        for layer in range(self.layers):
            outs, finals = [], []
            for d in range(self.directions):
                w_ih, w_hh, b_ih, b_hh = (
                    getattr(self, n) for n in self.names[layer * self.directions + d]
                )
                out, last = self._direction(x, mask, w_ih, w_hh, b_ih, b_hh, reverse=bool(d))
                outs.append(out)
                finals.append(last)
            x = torch.cat(outs, dim=-1) if self.directions == 2 else outs[0]
            if self.dropout and self.training and layer < self.layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        if self.per_step:
            s, b, t, h = x.shape
            return torch.baddbmm(self.head_b, x.reshape(s, b * t, h), self.head_w).view(s, b, t, -1)
        last = torch.cat(finals, dim=-1)  # forward end, backward end (step 0), as nn.LSTM's h_n
        return torch.baddbmm(self.head_b, last, self.head_w)

    def embed_input(self, x: torch.Tensor) -> torch.Tensor:
        """The first recurrent layer's input: token ids through each seed's embedding."""
        if self.embed is None:
            return x
        # One lookup in the stacked table [S * V, E], each seed's ids offset into its own
        # block. Embedding's backward is deterministic on CUDA; a gather's is an atomic
        # scatter-add, whose float sums change order from run to run.
        s, v, e = self.embed.shape
        offsets = torch.arange(s, device=x.device).view(s, *[1] * (x.dim() - 1)) * v
        return F.embedding(x + offsets, self.embed.reshape(s * v, e))

    def layer_directions(self) -> list[list[Direction]]:
        """The stacked weights of each layer and direction, for the saturation rerun."""
        layers = []
        for layer in range(self.layers):
            row = []
            for d in range(self.directions):
                w_ih, w_hh, b_ih, b_hh = (
                    getattr(self, n) for n in self.names[layer * self.directions + d]
                )
                row.append(Direction(w_ih, w_hh, b_ih, b_hh, reverse=bool(d)))
            layers.append(row)
        return layers

    @torch.no_grad()
    def copy_seed_into(self, k: int, net: RecurrentNet) -> RecurrentNet:
        """Seed slot k's weights written into `net` (its own RecurrentNet, as built): the pack's
        stacking undone, for a replay of one seed's step."""
        if self.embed is not None:
            net.embed.weight.copy_(self.embed[k])
        for layer in range(self.layers):
            for d in range(self.directions):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                w_ih, w_hh, b_ih, b_hh = (
                    getattr(self, n) for n in self.names[layer * self.directions + d]
                )
                getattr(net.rnn, f"weight_ih{sfx}").copy_(w_ih[k].t())
                getattr(net.rnn, f"weight_hh{sfx}").copy_(w_hh[k].t())
                getattr(net.rnn, f"bias_ih{sfx}").copy_(b_ih[k, 0])
                getattr(net.rnn, f"bias_hh{sfx}").copy_(b_hh[k, 0])
        net.head.weight.copy_(self.head_w[k].t())
        net.head.bias.copy_(self.head_b[k, 0])
        return net

    def _direction(self, x, mask, w_ih, w_hh, b_ih, b_hh, reverse: bool):
        s, b, t, f = x.shape
        h_size = self.hidden
        xg = torch.baddbmm(b_ih, x.reshape(s, b * t, f), w_ih).view(s, b, t, -1)
        h = x.new_zeros(s, b, h_size)
        c = x.new_zeros(s, b, h_size) if self.cell == "lstm" else None
        outs: list[torch.Tensor] = [None] * t  # type: ignore[list-item]
        for step in range(t - 1, -1, -1) if reverse else range(t):
            hg = torch.baddbmm(b_hh, h, w_hh)
            if self.cell == "lstm":
                g = xg[:, :, step] + hg
                i, f_, gg, o = g.chunk(4, dim=-1)
                c_new = torch.sigmoid(f_) * c + torch.sigmoid(i) * torch.tanh(gg)
                h_new = torch.sigmoid(o) * torch.tanh(c_new)
            else:
                xr, xz, xn = xg[:, :, step].chunk(3, dim=-1)
                hr, hz, hn = hg.chunk(3, dim=-1)
                r = torch.sigmoid(xr + hr)
                z = torch.sigmoid(xz + hz)
                n = torch.tanh(xn + r * hn)
                h_new = (1 - z) * n + z * h
                c_new = None
            if mask is not None:
                m = mask[:, :, step, None]
                h = torch.where(m, h_new, h)
                if c is not None:
                    c = torch.where(m, c_new, c)
            else:
                h, c = h_new, c_new
            outs[step] = h
        return torch.stack(outs, dim=2), h


def _get(net: nn.Module, dotted: str) -> torch.Tensor:
    obj: Any = net
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def per_param_squares(grads: list[torch.Tensor]) -> torch.Tensor:
    """[P, S]: each stacked gradient's squared L2 norm per seed."""
    s = grads[0].shape[0]
    return torch.stack([g.reshape(s, -1).float().pow(2).sum(1) for g in grads])


def per_seed_norm(grads: list[torch.Tensor], squares: torch.Tensor | None = None) -> torch.Tensor:
    """[S]: each seed's global L2 gradient norm (its slice of every stacked gradient); `squares`
    are `per_param_squares(grads)` when already computed."""
    return (squares if squares is not None else per_param_squares(grads)).sum(0).sqrt()
