"""The network of one run: lrsweep's LSTM/GRU (optional embedding -> LSTM/GRU -> linear
read-out), or a user's own torch.nn.Module named by `model._target_`.

Usage::

    net = build_model(cfg.model, task, seed=3)     # initialisation fixed by the seed alone
    out = net(x, lengths)                          # [B, C] / [B, D], or [B, T, .] per step
    check_model(cfg.model, task)                   # a user's model: importable, a Module, right shapes

A user's model is built with Hydra's `instantiate` from the model node's keys, plus `input_size`
(features per step, or the vocabulary for token inputs) and `output_size` (classes, or the target
dimension) when its constructor has parameters of those names. Its `forward(inputs, lengths)`
returns what the task's targets need; a `targets=` keyword, when `forward` has one, receives the
batch's targets during training (teacher forcing) and never during evaluation.

A sequence's padding never changes its output: a unidirectional network reads each sequence's
output at its own last step (later steps cannot influence it); a bidirectional one packs the
batch with `pack_padded_sequence`. `lengths` is a CPU tensor (packing reads it on the host); the
trainer keeps a CPU copy so no device->host copy happens per step.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from sweep.config import ModelConfig
from sweep.config.targets import TargetModel
from sweep.core.errors import UserError
from sweep.core.imports import import_target


class RecurrentNet(nn.Module):
    """Embedding (token inputs only) -> nn.LSTM / nn.GRU (batch_first) -> nn.Linear."""

    def __init__(
        self,
        cfg: ModelConfig,
        input_dim: int,
        output_dim: int,
        tokens: bool = False,
        per_step: bool = False,
    ) -> None:
        super().__init__()
        self.cell = cfg.name
        self.per_step = per_step
        self.embed = nn.Embedding(input_dim, cfg.embedding_dim, padding_idx=0) if tokens else None
        rnn_in = cfg.embedding_dim if tokens else input_dim
        rnn_type = nn.LSTM if cfg.name == "lstm" else nn.GRU
        self.rnn = rnn_type(
            rnn_in,
            cfg.hidden_size,
            num_layers=cfg.layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
            bidirectional=cfg.bidirectional,
        )
        self.directions = 2 if cfg.bidirectional else 1
        self.head = nn.Linear(cfg.hidden_size * self.directions, output_dim)
        if cfg.name == "lstm" and cfg.forget_bias:
            h = cfg.hidden_size
            with torch.no_grad():
                for name, bias in self.rnn.named_parameters():
                    if name.startswith("bias_ih"):  # gate order i, f, g, o
                        bias[h : 2 * h].add_(cfg.forget_bias)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            x = self.embed(x)
        steps = x.shape[1]
        if lengths is not None and self.directions == 1:
            # Reading forward, a step's output never depends on the steps after it: run the
            # padded batch and read each sequence at its own end. This also keeps the fused
            # oneDNN kernel on CPUs (2x faster than the packed-sequence path, which it refuses).
            out, _ = self.rnn(x)
            if self.per_step:
                return self.head(out)  # outputs past a sequence's end are masked by the loss
            last = out[torch.arange(out.shape[0], device=out.device), lengths.to(out.device) - 1]
            return self.head(last)
        if lengths is not None:  # backwards, padding would come first: pack the batch
            x = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, state = self.rnn(x)
        if self.per_step:
            if lengths is not None:
                out, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)
            return self.head(out)
        h_n = state[0] if isinstance(state, tuple) else state  # [layers * directions, B, H]
        if self.directions == 2:
            last = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # forward end, backward end (at step 0)
        else:
            last = h_n[-1]
        return self.head(last)


def build_model(cfg: Any, task: Any, seed: int) -> nn.Module:
    """A freshly initialised network whose weights depend only on (config, task shape, seed)."""
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)  # before instantiating: the seed fixes a user's model's weights too
    try:
        if isinstance(cfg, TargetModel):
            return instantiate_model(cfg, task)
        return RecurrentNet(
            cfg,
            input_dim=task.input_dim,
            output_dim=task.output_dim,
            tokens=task.vocab_size is not None,
            per_step=task.per_step,
        )
    finally:
        torch.set_rng_state(gen_state)


KEY = "model._target_"


def instantiate_model(cfg: TargetModel, task: Any) -> nn.Module:
    """The user's model, built with hydra.utils.instantiate (one-line errors for what goes wrong)."""
    from hydra.utils import instantiate

    target = import_target(cfg.target, KEY)
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        params = {}
    sizes = {"input_size": task.input_dim, "output_size": task.output_dim}
    kwargs = {**{k: v for k, v in sizes.items() if k in params}, **cfg.kwargs}
    try:
        model = instantiate({"_target_": cfg.target, **kwargs}, _convert_="all")
    except Exception as e:
        cause = e.__cause__ or e
        raise UserError(
            f"{KEY}: building {cfg.target} raised {type(cause).__name__}: "
            f"{' '.join(str(cause).split())[:300]}; the keys of the model's YAML (other than _target_ "
            f"and name) are its keyword arguments, plus input_size and output_size when it has them"
        ) from None
    if not isinstance(model, nn.Module):
        raise UserError(
            f"{KEY}: {cfg.target} built a {type(model).__name__}, not a torch.nn.Module; name a "
            f"Module class (or a function returning one) whose forward(inputs, lengths) returns outputs"
        )
    return model


def accepts_targets(model: nn.Module) -> bool:
    """Does the model's forward take `targets=` (teacher forcing during training)?"""
    try:
        return "targets" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def expected_shape(task: Any, batch: int, steps: int) -> tuple[int, ...]:
    """What forward must return for `batch` sequences of `steps` steps: [B, C], [B, T, C], [B, D], [B, T, D]."""
    return (batch, steps, task.output_dim) if task.per_step else (batch, task.output_dim)


def check_model(cfg: Any, task: Any) -> None:
    """A user's model, before any storage write: importable, a Module, and its outputs on the
    first two training sequences have the shape the task needs (evaluation and, with
    teacher forcing, training)."""
    if not isinstance(cfg, TargetModel):
        return
    model = build_model(cfg, task, seed=0)
    x = task.x_train[:2]
    lengths = task.lengths_train[:2] if task.lengths_train is not None else None
    want = expected_shape(task, x.shape[0], x.shape[1])
    what = (
        f"per-step {task.kind} with {task.output_dim} {'classes' if task.kind == 'classification' else 'outputs'}"
        if task.per_step
        else f"{task.kind} with {task.output_dim} "
        f"{'classes' if task.kind == 'classification' else 'outputs'}"
    )
    calls = [("forward(inputs, lengths)", False)] + (
        [("forward(inputs, lengths, targets=...)", True)] if accepts_targets(model) else []
    )
    for call, teacher in calls:
        model.train(teacher)
        try:
            with torch.no_grad():
                out = model(x, lengths, targets=task.y_train[:2]) if teacher else model(x, lengths)
        except Exception as e:
            raise UserError(
                f"model: {call} of {cfg.target} raised {type(e).__name__}: "
                f"{' '.join(str(e).split())[:300]}; it receives inputs {list(x.shape)} and lengths "
                f"[B] (or None) and must return {list(want)} ({what})"
            ) from None
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
        if shape != want:
            got = list(shape) if shape is not None else type(out).__name__
            raise UserError(
                f"model: {call} of {cfg.target} returned {got}, but task {task.name} needs {list(want)} "
                f"({what}); return one row of scores per sequence{' and step' if task.per_step else ''}"
            )


def l2_penalty(params: list[torch.Tensor]) -> torch.Tensor:
    """sum(w^2) over weight matrices and embeddings (biases excluded)."""
    return torch.stack([(p * p).sum() for p in params if p.dim() >= 2]).sum()


def param_group_names(cfg: Any, task: Any) -> list[str]:
    """The parameter groups of the model `cfg` builds for `task`, in the order that
    optimizer.group_lr_mult and the per-layer gradient norms use."""
    from sweep.training.gradients import ParamGroups

    model = build_model(cfg, task, seed=0)
    return ParamGroups.of(model, [p for p in model.parameters() if p.requires_grad]).names


def check_group_lr_mult(cfgs: Any, task: Any) -> None:
    """optimizer.group_lr_mult of each config (one per combination of extra grid axes) has one
    multiplier per parameter group of its model (checked before any storage write)."""
    seen: dict[str, list[str]] = {}
    for cfg in cfgs:
        mults = list(getattr(cfg.optimizer, "group_lr_mult", None) or [])
        if not mults:
            continue
        key = repr(cfg.model)
        names = (
            seen[key] if key in seen else seen.setdefault(key, param_group_names(cfg.model, task))
        )
        if len(mults) != len(names):
            raise UserError(
                f"optimizer.group_lr_mult: {len(mults)} multiplier{'s' if len(mults) != 1 else ''} "
                f"{_short(mults)}, but model {cfg.model.name} has {len(names)} parameter groups "
                f"({', '.join(names)}); give one per group in that order, e.g. optimizer.group_lr_mult="
                f"[{','.join(['1.0'] * len(names))}]"
            )


def _short(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"
