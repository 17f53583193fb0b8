"""A user's PyTorch model on a fixed batch: the probe's recurrent saturation and logits'
log-sum-exp, and the loss of a batch for crit_lr. Everything runs in eval mode (each module's own
mode restored after), without gradients.

Usage (GradientMonitor does this)::

    probe = ProbeBatch(model, inputs, targets)      # once
    row = probe.measure()                           # each epoch: sat_frac(/<layer>), logit_lse
    loss = batch_loss(model, inputs, targets, loss_fn)   # a 0-d device tensor

`inputs` is what the model is called with (a tuple: several arguments); its prediction is its
output, or the first tensor of a tuple output. `logit_lse` is measured for class-index targets
(the last output dimension holds the classes) and left out otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sweep.core.signal_rules import LOGIT_LSE, SAT_FRAC
from sweep.trainers.saturation import RecurrentTap

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def first_tensor(output: Any) -> torch.Tensor:
    """A model's prediction: its output, or the first tensor of a tuple/list output."""
    while isinstance(output, (tuple, list)):
        output = output[0]
    return output


def default_loss(targets: torch.Tensor | None) -> LossFn | None:
    """Cross-entropy for class indices (the last output dimension holds the classes), mean squared
    error for float targets; None without targets."""
    if targets is None:
        return None
    if not targets.is_floating_point():
        return lambda out, y: F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
    return lambda out, y: F.mse_loss(out, y.reshape(out.shape))


@contextmanager
def eval_mode(model: nn.Module):
    """Every module in eval mode, each back to its own mode after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def on_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(on_device(v, device) for v in value)
    return value


def call(model: nn.Module, inputs: Any) -> torch.Tensor:
    """The model's prediction for `inputs` (a tuple: several arguments)."""
    args = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    return first_tensor(model(*args))


def batch_loss(model: nn.Module, inputs: Any, targets: torch.Tensor, loss_fn: LossFn):
    """The loss of one batch as the model stands (eval mode, no gradient)."""
    with torch.no_grad(), eval_mode(model):
        return loss_fn(call(model, inputs), targets).float()


class ProbeBatch:
    """A fixed batch, and the signals measured on it."""

    def __init__(self, model: nn.Module, inputs: Any, targets: torch.Tensor | None = None) -> None:
        device = next(model.parameters()).device
        self.model = model
        self.inputs = on_device(inputs, device)
        targets = on_device(targets, device)
        self.classification = targets is not None and not targets.is_floating_point()
        self.tap = RecurrentTap(model)

    @torch.no_grad()
    def measure(self) -> dict[str, torch.Tensor]:
        """sat_frac (+ per recurrent layer) and logit_lse, as device tensors."""
        row: dict[str, torch.Tensor] = {}
        with eval_mode(self.model):
            with self.tap:
                out = call(self.model, self.inputs)
            counts = self.tap.saturation()
        if counts:
            sat = torch.stack([s for s, _ in counts.values()]).sum()
            total = torch.stack([t for _, t in counts.values()]).sum()
            row[SAT_FRAC] = sat / total
            for name, (s, t) in counts.items():
                row[f"{SAT_FRAC}/{name}"] = s / t
        if self.classification and out.dim() >= 2:
            row[LOGIT_LSE] = torch.logsumexp(out.float(), -1).mean()
        return row
