"""A saved state written into a network and its optimizer, and one seed's slot of a packed model
(`PackedRecurrentNet`) read back as its own network's state.

Usage::

    set_optimizer_state(opt, params, entries)    # per-parameter state only, hyper-parameters kept
    apply_packed(trainer, weights, entries)      # the same state in every seed's slot
    weights, optimizer = seed_state(trainer, seed)   # one seed's state, as its own network's

The pack stores each of `RecurrentNet`'s weights with a leading seed dimension: the recurrent and
read-out matrices transposed (`w_ih_l0` is `rnn.weight_ih_l0.t()`), the biases with a leading
row (`b_ih_l0` is `rnn.bias_ih_l0[None]`), the embedding as it is. The optimizer's per-parameter
state (momentum, Adam's moments) has each parameter's shape, so it is stacked the same way.
"""

from __future__ import annotations

import re
from typing import Any

import torch

_RNN = re.compile(r"^rnn\.(weight|bias)_(ih|hh)(_l\d+(?:_reverse)?)$")


def without_prefix(
    weights: dict[str, torch.Tensor], own: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """`weights` with a prefix all keys share (model., module., net.) dropped where `own` lacks it."""
    if not weights or set(weights) & set(own):
        return weights
    first = next(iter(weights))
    for cut in [i + 1 for i, ch in enumerate(first) if ch == "."]:
        prefix = first[:cut]
        if all(k.startswith(prefix) for k in weights):
            stripped = {k[len(prefix) :]: v for k, v in weights.items()}
            if set(stripped) & set(own):
                return stripped
    return weights


def set_optimizer_state(
    opt: torch.optim.Optimizer,
    params: list[torch.Tensor],
    entries: list[dict[str, Any]],
    slot: Any = None,
) -> None:
    """Write per-parameter `entries` into `opt` (hyper-parameters untouched); `slot(i, value)`
    turns a value of parameter i into its packed form (None: as it is)."""
    for i, (p, entry) in enumerate(zip(params, entries)):
        state = {}
        for k, v in entry.items():
            if not torch.is_tensor(v):
                state[k] = v
            elif k == "step" or v.dim() == 0:  # a step count stays where torch keeps it
                state[k] = v.clone()
            else:
                v = slot(i, v) if slot is not None else v
                state[k] = v.to(device=p.device, dtype=p.dtype).clone()
        if state:
            opt.state[p] = state


def pack_name(name: str) -> tuple[str, str]:
    """(the pack's parameter name, how a seed's value is laid out there: "same", "t" or "row")
    of `RecurrentNet` parameter `name`."""
    if name == "embed.weight":
        return "embed", "same"
    if name == "head.weight":
        return "head_w", "t"
    if name == "head.bias":
        return "head_b", "row"
    m = _RNN.match(name)
    if m is None:
        raise KeyError(f"{name} is not a weight of lrsweep's recurrent network")
    kind, which, suffix = m.groups()
    return f"{'w' if kind == 'weight' else 'b'}_{which}{suffix}", (
        "t" if kind == "weight" else "row"
    )


def to_slot(value: torch.Tensor, layout: str) -> torch.Tensor:
    return value.t() if layout == "t" else value[None] if layout == "row" else value


def from_slot(value: torch.Tensor, layout: str) -> torch.Tensor:
    return value.t() if layout == "t" else value[0] if layout == "row" else value


def _seed_names(trainer: Any) -> list[str]:
    """The seed network's parameter names, in the pack's parameter order."""
    by_pack = {pack_name(n)[0]: n for n in _net_names(trainer)}
    return [by_pack[name] for name, _ in trainer.model.named_parameters()]


def _net_names(trainer: Any) -> list[str]:
    from sweep.training.models import build_model

    net = build_model(trainer.spec.model, trainer.task, 0)
    return [n for n, _ in net.named_parameters()]


def apply_packed(
    trainer: Any, model: dict[str, torch.Tensor], optimizer: list[dict[str, Any]] | None
) -> None:
    """Write one network's weights `model` into every seed's slot of `trainer` (a PackedTrainer),
    and its optimizer state per parameter (None: the optimizer starts afresh)."""
    names = _seed_names(trainer)
    own = dict.fromkeys(names)
    weights = without_prefix(model, own)
    seeds = trainer.model.seeds
    params = dict(trainer.model.named_parameters())
    with torch.no_grad():
        for name in names:
            target, layout = pack_name(name)
            slot = to_slot(weights[name], layout).to(params[target].dtype)
            params[target].copy_(slot.unsqueeze(0).expand(seeds, *slot.shape))
    if optimizer is not None:
        layouts = [pack_name(n)[1] for n in names]

        def stacked(i: int, value: torch.Tensor) -> torch.Tensor:
            slot = to_slot(value, layouts[i])
            return slot.unsqueeze(0).expand(seeds, *slot.shape)

        set_optimizer_state(trainer.optimizer, list(trainer.model.parameters()), optimizer, stacked)


def seed_state(trainer: Any, seed: int) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Seed `seed`'s weights (its own network's state_dict) and optimizer state per parameter
    (in its network's order), out of a PackedTrainer."""
    k = trainer.alive.index(seed)
    names = _seed_names(trainer)
    packed = list(trainer.model.named_parameters())
    weights, optimizer = {}, []
    for name, (_, p) in zip(names, packed):
        layout = pack_name(name)[1]
        weights[name] = from_slot(p.detach()[k], layout).clone().cpu()
        entry = {}
        for key, value in trainer.optimizer.state.get(p, {}).items():
            if torch.is_tensor(value) and value.dim() >= 1 and value.shape[0] == len(trainer.alive):
                entry[key] = from_slot(value[k], layout).clone().cpu()
            elif torch.is_tensor(value):
                entry[key] = value.clone().cpu()
        optimizer.append(entry)
    order = _net_names(trainer)
    by_name = dict(zip(names, optimizer))
    return {n: weights[n] for n in order}, [by_name[n] for n in order]
