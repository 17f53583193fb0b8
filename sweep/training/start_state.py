"""The saved state every run of a sweep starts from (`start.checkpoint` / `start.from_run`).

Usage::

    check_start_state(cfg, task)       # before anything is written: file, shapes, optimizer state
    start = load_start(cfg)             # in a worker: a Start (NullStart from scratch)
    start.apply(group)                  # the same state in every seed (separate or packed)
    facts = start_facts(cfg, task)      # what the study records: where it started, the start's scores

A checkpoint is read with `torch.load(..., weights_only=True)` and may be lrsweep's own kept
state (`sweep.training.kept`), a model's `state_dict`, or a dict holding one under `model`,
`model_state_dict` or `state_dict` (Lightning), with an optimizer's `state_dict` under `optimizer`,
`optimizer_state_dict` or `optimizer_states` (Lightning). A prefix every key shares and the model
lacks (Lightning's `model.`, DataParallel's `module.`) is dropped.

Only the optimizer's per-parameter state (momentum, Adam's moments and step count) is restored,
never its hyper-parameters: the sweep's optimizer config, lr and clip apply from the first step.
In a packed model the one state is stacked into every seed's slot, and so are the moments.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sweep.config.start import check_start_file, start_file
from sweep.config.targets import TargetModel
from sweep.core.errors import UserError
from sweep.training.models import build_model
from sweep.training.optim import build_optimizer
from sweep.training.state_slots import apply_packed, set_optimizer_state, without_prefix

KEPT_FORMAT = "lrsweep-kept"  # the `format` of a state lrsweep kept (sweep.training.kept)
MODEL_KEYS = ("model", "model_state_dict", "state_dict", "net")
OPTIMIZER_KEYS = ("optimizer", "optimizer_state_dict", "optimizer_states")
SAVE_HINT = (
    "save it with torch.save(model.state_dict(), PATH), or "
    "torch.save({'model': model.state_dict(), 'optimizer': optimizer.state_dict()}, PATH)"
)


@dataclass
class Checkpoint:
    """A checkpoint's contents: one network's weights, and its optimizer's state per parameter
    (in the order of the network's trained parameters; None: it holds none)."""

    model: dict[str, torch.Tensor]
    optimizer: list[dict[str, Any]] | None = None
    epoch: int | None = None  # stated by lrsweep's own kept states only
    facts: dict[str, Any] = field(default_factory=dict)  # a kept state's setting, seed, curves


def read_checkpoint(path: Any) -> Checkpoint:
    """The checkpoint at `path`, or a one-line UserError saying why it cannot be used."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        why = " ".join(str(e).split())[:160]
        raise UserError(
            f"start.checkpoint: {path} cannot be read as a PyTorch checkpoint of plain tensors "
            f"({type(e).__name__}: {why}); {SAVE_HINT}"
        ) from None
    if not isinstance(data, dict):
        raise UserError(
            f"start.checkpoint: {path} holds a {type(data).__name__}, not a state_dict; {SAVE_HINT}"
        )
    if data.get("format") == KEPT_FORMAT:
        facts = {k: v for k, v in data.items() if k not in ("model", "optimizer")}
        return Checkpoint(
            data["model"], _per_parameter(data.get("optimizer")), int(data["epoch"]), facts
        )
    if data and all(torch.is_tensor(v) for v in data.values()):
        return Checkpoint(dict(data))
    model = next((data[k] for k in MODEL_KEYS if _is_state_dict(data.get(k))), None)
    if model is None:
        keys = ", ".join(map(str, list(data)[:6]))
        raise UserError(
            f"start.checkpoint: {path} holds no model state_dict (its keys: {keys}); {SAVE_HINT}"
        )
    optimizer = next((data[k] for k in OPTIMIZER_KEYS if data.get(k) is not None), None)
    if isinstance(optimizer, list):  # Lightning: one state per optimizer
        optimizer = optimizer[0] if len(optimizer) == 1 else None
    return Checkpoint(dict(model), _per_parameter(optimizer))


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, dict) and bool(value) and all(torch.is_tensor(v) for v in value.values())
    )


def _per_parameter(state: Any) -> list[dict[str, Any]] | None:
    """An optimizer's state_dict as one state per parameter, in its parameter groups' order;
    None when it holds no state (an optimizer that never stepped)."""
    if not isinstance(state, dict) or "state" not in state or "param_groups" not in state:
        return None
    order = [i for group in state["param_groups"] for i in group["params"]]
    entries = [dict(state["state"].get(i, {})) for i in order]
    return entries if any(entries) else None


# --------------------------------------------------------------------------- fitting the model


def fitted_weights(
    ckpt: Checkpoint, net: nn.Module, path: Any, model_cfg: Any
) -> dict[str, torch.Tensor]:
    """The checkpoint's weights under `net`'s names; a one-line UserError when they do not fit."""
    own = net.state_dict()
    weights = without_prefix(ckpt.model, own)
    wrong = [k for k in own if k in weights and tuple(weights[k].shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise UserError(
            f"start.checkpoint: {path} does not fit the model: {k} is {list(weights[k].shape)} in the "
            f"checkpoint but {list(own[k].shape)} in this sweep's model ({_described(model_cfg)}); "
            f"use the model config the checkpoint was trained with{_hint(weights, model_cfg)}"
        )
    missing = [k for k in own if k not in weights]
    extra = [k for k in weights if k not in own]
    if missing or extra:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} of the model's weights are not in it ({', '.join(missing[:3])})"
            )
        if extra:
            parts.append(f"it holds {len(extra)} the model does not have ({', '.join(extra[:3])})")
        raise UserError(
            f"start.checkpoint: {path} does not fit the model ({_described(model_cfg)}): {'; '.join(parts)}; "
            f"use the model config the checkpoint was trained with{_hint(weights, model_cfg)}"
        )
    bad = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise UserError(
            f"start.checkpoint: {path} holds NaN/inf weights ({bad[0]}): that run had blown up already; "
            f"start from a state saved before it"
        )
    return weights


def _described(model_cfg: Any) -> str:
    if isinstance(model_cfg, TargetModel):
        return f"model._target_={model_cfg.target}"
    return (
        f"model={model_cfg.name}, hidden_size={model_cfg.hidden_size}, layers={model_cfg.layers}"
        + (", bidirectional" if model_cfg.bidirectional else "")
    )


def _hint(weights: dict[str, torch.Tensor], model_cfg: Any) -> str:
    """What the checkpoint's recurrent weights say of lrsweep's model config: cell, size, layers."""
    hh = weights.get("rnn.weight_hh_l0")
    if isinstance(model_cfg, TargetModel) or hh is None or hh.dim() != 2 or hh.shape[1] == 0:
        return ""
    hidden = int(hh.shape[1])
    gates = int(hh.shape[0]) // hidden
    cell = {4: "lstm", 3: "gru"}.get(gates)
    layers = len(
        [k for k in weights if k.startswith("rnn.weight_hh_l") and not k.endswith("_reverse")]
    )
    words = ([f"model={cell}"] if cell else []) + [
        f"model.hidden_size={hidden}",
        f"model.layers={layers}",
    ]
    return f" (the checkpoint's: {' '.join(words)})"


# --------------------------------------------------------------------------- the optimizer state


def expected_state(net: nn.Module, optimizer_cfg: Any) -> list[dict[str, torch.Size]]:
    """The state the sweep's optimizer keeps per trained parameter (its keys and their shapes),
    from one step on zero gradients of copies of the parameters."""
    params = [torch.zeros_like(p, requires_grad=True) for p in net.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.zeros_like(p)
    cfg = copy.copy(optimizer_cfg)
    if getattr(cfg, "group_lr_mult", None):
        cfg.group_lr_mult = []  # the groups change learning rates, not what the state holds
    opt = build_optimizer(params, cfg, 1e-3, torch.device("cpu"))
    opt.step()
    return [{k: v.shape for k, v in opt.state[p].items() if torch.is_tensor(v)} for p in params]


def _state_name(keys: set[str]) -> str:
    if {"exp_avg", "exp_avg_sq"} <= keys:
        return "Adam's (or AdamW's)"
    if "square_avg" in keys:
        return "RMSprop's"
    if keys == {"momentum_buffer"}:
        return "SGD's with momentum"
    return "an optimizer's"


def check_optimizer_state(ckpt: Checkpoint, net: nn.Module, optimizer_cfg: Any, path: Any) -> None:
    """The checkpoint's optimizer state must be one the sweep's optimizer keeps (start.optimizer=restore)."""
    if ckpt.optimizer is None:
        return
    expected = expected_state(net, optimizer_cfg)
    fresh = "set start.optimizer=fresh (a new optimizer)"
    if len(ckpt.optimizer) != len(expected):
        raise UserError(
            f"start.checkpoint: its optimizer state covers {len(ckpt.optimizer)} parameters but the model "
            f"trains {len(expected)}; {fresh}, or save the optimizer of this model"
        )
    theirs = set().union(*({k for k, v in e.items() if v is not None} for e in ckpt.optimizer))
    ours = set().union(*expected)
    if theirs != ours:
        held = f"{_state_name(theirs)} ({', '.join(sorted(theirs))})"
        kept = f"keeps {', '.join(sorted(ours))}" if ours else "keeps no state"
        raise UserError(
            f"start.checkpoint: its optimizer state is {held} but this sweep's optimizer={optimizer_cfg.name} "
            f"{kept}; {fresh}, or use the optimizer the checkpoint was trained with"
        )
    for i, (entry, shapes) in enumerate(zip(ckpt.optimizer, expected)):
        for k, shape in shapes.items():
            v = entry.get(k)
            if torch.is_tensor(v) and len(shape) and tuple(v.shape) != tuple(shape):
                raise UserError(
                    f"start.checkpoint: its optimizer state of parameter {i} ({k}) is {list(v.shape)}, the "
                    f"parameter is {list(shape)}; {fresh}, or save the optimizer of this model"
                )


# --------------------------------------------------------------------------- a worker's start


class NullStart:
    """From scratch: every seed keeps its own initial weights."""

    epoch = 0

    def apply(self, group: Any) -> None:
        pass


class Start:
    """The checkpoint every run starts from, written into a group of seeds (separate or packed)."""

    def __init__(self, ckpt: Checkpoint, epoch: int, restore: bool, path: Any) -> None:
        self.ckpt, self.epoch, self.path = ckpt, epoch, path
        self.restore = restore and ckpt.optimizer is not None

    def apply(self, group: Any) -> None:
        if hasattr(group, "trainers"):  # separate models (SeedGroup)
            for t in group.trainers:
                self.apply_to(t.model, t.optimizer)
        else:
            apply_packed(group, self.ckpt.model, self.ckpt.optimizer if self.restore else None)

    def apply_to(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        weights = without_prefix(self.ckpt.model, model.state_dict())
        model.load_state_dict(weights)
        if self.restore:
            params = [p for p in model.parameters() if p.requires_grad]
            set_optimizer_state(optimizer, params, self.ckpt.optimizer)


def load_start(cfg: Any) -> Start | NullStart:
    """The start of `cfg`'s runs (NullStart from scratch); the file must be the one the study
    started from (its sha256)."""
    if not cfg.start.active:
        return NullStart()
    check_start_file(cfg)
    path = start_file(cfg)
    ckpt = read_checkpoint(path)
    epoch = cfg.start.epoch if cfg.start.epoch is not None else ckpt.epoch
    return Start(ckpt, int(epoch or 0), cfg.start.optimizer == "restore", path)


def check_start_state(cfg: Any, task: Any, configs: list[Any]) -> None:
    """Every check of a start for lrsweep's own loop, before anything is written: the file and
    its hash, the epoch it was saved at, the weights' shapes and the optimizer state's kind in
    the model and optimizer of every setting (`configs`: one config per extra axes' values)."""
    check_start_file(cfg)
    if not cfg.start.active:
        return
    path = start_file(cfg)
    ckpt = read_checkpoint(path)
    if cfg.start.epoch is None:
        if ckpt.epoch is None:
            raise UserError(
                "start.epoch: say after which epoch the checkpoint was saved, e.g. start.epoch=900 "
                "(epochs then count on from 901; 0 for a state before any training)"
            )
        cfg.start.epoch = ckpt.epoch
        check_start_file(cfg)  # the kept epochs against the epoch now known
    for run_cfg in configs:
        net = build_model(run_cfg.model, task, 0)
        fitted_weights(ckpt, net, path, run_cfg.model)
        if cfg.start.optimizer == "restore":
            check_optimizer_state(ckpt, net, run_cfg.optimizer, path)
