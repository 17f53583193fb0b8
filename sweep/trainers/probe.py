"""The fixed probe batch of a user's PyTorch model and what is measured on it once per epoch:
recurrent saturation, the logits' log-sum-exp, and the critical step size along the last update.

Usage (GradientMonitor does this)::

    probe = ProbeBatch(model, inputs, targets, loss_fn)     # once
    values = probe.measure(last_update, lr, params)          # each epoch: device tensors and floats

Everything runs in eval mode (each module's own mode restored after), without gradients.
`crit_lr` (Kalra et al. 2026): along d = (w_after - w_before) / lr of the epoch's last step, the
smallest step eta on the ladder lr/16 .. 16 lr (sweep.core.signal_rules.CRIT_LADDER) whose
probe loss at w + eta d exceeds the loss at w; NaN when none does, or when the loss at w is not
finite. The weights are restored exactly after the ladder.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sweep.core.signal_rules import CRIT_LADDER, CRIT_LR, LOGIT_LSE, SAT_FRAC
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


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(_to(v, device) for v in value)
    return value


class ProbeBatch:
    """A fixed batch, and the signals measured on it."""

    def __init__(
        self,
        model: nn.Module,
        inputs: Any,
        targets: torch.Tensor | None = None,
        loss_fn: LossFn | None = None,
    ) -> None:
        device = next(model.parameters()).device
        self.model = model
        self.inputs = _to(inputs, device)
        self.targets = _to(targets, device)
        self.loss_fn = loss_fn or default_loss(self.targets)
        self.classification = self.targets is not None and not self.targets.is_floating_point()
        self.tap = RecurrentTap(model)

    def forward(self) -> torch.Tensor:
        args = self.inputs if isinstance(self.inputs, (tuple, list)) else (self.inputs,)
        return first_tensor(self.model(*args))

    def loss(self) -> float:
        out = self.forward()
        return float(self.loss_fn(out, self.targets))

    @torch.no_grad()
    def measure(
        self, params: list[torch.Tensor], last_update: list[torch.Tensor] | None, lr: float | None
    ) -> dict[str, Any]:
        """sat_frac (+ per layer), logit_lse and crit_lr: device tensors, crit_lr a float (its
        ladder reads each loss to know when to stop)."""
        row: dict[str, Any] = {}
        with eval_mode(self.model):
            with self.tap:
                out = self.forward()
            counts = self.tap.saturation()
            if counts:
                sat = torch.stack([s for s, _ in counts.values()]).sum()
                total = torch.stack([t for _, t in counts.values()]).sum()
                row[SAT_FRAC] = sat / total
                for name, (s, t) in counts.items():
                    row[f"{SAT_FRAC}/{name}"] = s / t
            row[LOGIT_LSE] = (
                torch.logsumexp(out.float(), -1).mean()
                if self.classification and out.dim() >= 2
                else torch.full((), math.nan, device=out.device)
            )
            if self.loss_fn is not None and last_update is not None and lr:
                base_loss = float(self.loss_fn(out, self.targets))
                row[CRIT_LR] = self.critical_lr(params, last_update, lr, base_loss)
        return row

    def critical_lr(
        self, params: list[torch.Tensor], update: list[torch.Tensor], lr: float, base_loss: float
    ) -> float:
        """The smallest ladder step along update / lr that raises the probe loss (NaN: none)."""
        if not math.isfinite(base_loss):
            return math.nan
        base = [p.detach().clone() for p in params]
        found = math.nan
        try:
            for multiple in CRIT_LADDER:
                eta = multiple * lr
                torch._foreach_copy_(params, base)
                torch._foreach_add_(params, update, alpha=eta / lr)
                loss = self.loss()
                if not math.isfinite(loss) or loss > base_loss:
                    found = eta
                    break
        finally:
            torch._foreach_copy_(params, base)
        return found
