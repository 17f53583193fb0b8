"""Gradient norms of a step: the global norm before clipping, clipping itself, and the norm of
each parameter group ("which layer blows up first?").

Usage::

    groups = ParamGroups.of(model, params)          # once: embedding, each recurrent layer, head ...
    norm, per_group = groups.clip(clip)             # each step, after backward(); device tensors
    optimizer_groups(groups, [0.11, 0.33, 1.0], lr) # torch.optim param groups at lr x multiplier

Groups: for lrsweep's LSTM/GRU the embedding (`embed`), each recurrent layer (`rnn.l0`, `rnn.l1`,
both directions of a layer together) and the read-out (`head`); for a user's model its top-level
child modules by name (parameters set on the module itself form `(own)`). Clipping uses
torch.nn.utils.clip_grad_norm_'s formula (coef = min(1, clip / (norm + 1e-6))); the per-param
norms it needs give the group norms for a few extra operations, without a host read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

OWN = "(own)"  # parameters registered on the model itself, outside any child module


def group_of(name: str, builtin: bool) -> str:
    """The group of a parameter by its name in `model.named_parameters()` (lrsweep's LSTM/GRU,
    separate or packed: embed.weight / embed, rnn.weight_ih_l1 / w_ih_l1_reverse, head.bias /
    head_b; a user's model: its top-level child)."""
    if builtin:
        layer = re.search(r"_l(\d+)(_reverse)?$", name)
        if name.startswith("embed"):
            return "embed"
        if layer:
            return f"rnn.l{layer.group(1)}"
        return "head" if name.startswith("head") else name.split(".", 1)[0]
    return name.split(".", 1)[0] if "." in name else OWN


def _builtin_order(name: str) -> tuple[int, int]:
    layer = re.fullmatch(r"rnn\.l(\d+)", name)
    if name == "embed":
        return (0, 0)
    if layer:
        return (1, int(layer.group(1)))
    return (2, 0) if name == "head" else (3, 0)


def optimizer_groups(groups: ParamGroups, mults: list[float], lr: float) -> list[dict]:
    """torch.optim param groups for discriminative learning rates: group i trains at lr * mults[i]
    (`lr_mult` is kept in the group: sweep.training.optim.set_lr applies it at every step)."""
    if len(mults) != len(groups.names):
        raise ValueError(
            f"optimizer.group_lr_mult has {len(mults)} values for the {len(groups.names)} parameter "
            f"groups {', '.join(groups.names)}"
        )
    return [
        {"params": ps, "lr": lr * float(m), "lr_mult": float(m), "group": name}
        for ps, m, name in zip(groups.members(), mults, groups.names)
        if ps
    ]


@dataclass
class ParamGroups:
    """Which group each trained parameter belongs to, as a [groups x params] 0/1 matrix."""

    names: list[str]
    matrix: torch.Tensor  # float [G, P]
    params: list[torch.Tensor]

    @classmethod
    def of(
        cls, model: nn.Module, params: list[torch.Tensor], builtin: bool | None = None
    ) -> ParamGroups:
        if builtin is None:
            builtin = type(model).__name__ == "RecurrentNet"
        by_id = {id(p): n for n, p in model.named_parameters()}
        groups = [group_of(by_id[id(p)], builtin) for p in params]
        names = list(dict.fromkeys(groups))
        if (
            builtin
        ):  # one order for separate and packed networks: [embed,] rnn.l0, rnn.l1, ..., head
            names.sort(key=_builtin_order)
        matrix = torch.zeros(len(names), len(params), device=params[0].device if params else None)
        for j, g in enumerate(groups):
            matrix[names.index(g), j] = 1.0
        return cls(names=names, matrix=matrix, params=params)

    def members(self) -> list[list[torch.Tensor]]:
        """The parameters of each group, in group order."""
        index = self.matrix.argmax(dim=0).tolist() if self.params else []
        return [[p for p, g in zip(self.params, index) if g == i] for i in range(len(self.names))]

    def norms(self) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(global norm, [G] group norms, the gradients) of the current gradients; a parameter
        without a gradient (unused this step) counts 0."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        per_param = torch.stack(torch._foreach_norm(grads))  # [P]
        total = torch.linalg.vector_norm(per_param)
        per_group = (self.matrix @ per_param.float().pow(2)).sqrt()
        return total, per_group, [p.grad for p in self.params if p.grad is not None]

    def clip(self, clip: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Global and per-group norms before clipping; gradients clipped to `clip` (None: not)."""
        total, per_group, grads = self.norms()
        if clip is not None:
            coef = torch.clamp(clip / (total + 1e-6), max=1.0)
            torch._foreach_mul_(grads, coef.to(grads[0].device))
        return total, per_group


def group_row(names: list[str], per_group: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-epoch columns of [steps, G] group norms: grad_norm_mean/<group>, grad_norm_max/<group>
    (device tensors, read with the epoch's other statistics)."""
    out = {}
    for g, name in enumerate(names):
        out[f"grad_norm_mean/{name}"] = per_group[:, g].mean()
        out[f"grad_norm_max/{name}"] = per_group[:, g].max()
    return out
