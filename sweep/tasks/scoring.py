"""What counts as correct: loss and accuracy of model outputs, and the chance level of a task.

All functions work on device tensors and return tensors (no `.item()`), so the training loop can
accumulate them without host synchronisation.

Output shapes: classification logits [B, C] (or [B, T, C] with per-step targets); regression
predictions [B, D] (or [B, T, D]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def step_mask(
    lengths: torch.Tensor | None, batch: int, steps: int, device: torch.device
) -> torch.Tensor:
    """[B, T] bool: which steps lie inside each sequence (all of them when lengths is None)."""
    if lengths is None:
        return torch.ones(batch, steps, dtype=torch.bool, device=device)
    return torch.arange(steps, device=device)[None, :] < lengths[:, None]


def item_loss(kind: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Loss per item (sequence, or step for per-step targets), unreduced."""
    if kind == "classification":
        return F.cross_entropy(
            out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="none"
        ).reshape(y.shape)
    return ((out - y) ** 2).mean(dim=-1)


def item_correct(
    kind: str, out: torch.Tensor, y: torch.Tensor, tolerance: float | None
) -> torch.Tensor:
    """Bool per item: argmax hits the class; or squared error (mean over D) below tolerance."""
    if kind == "classification":
        return out.argmax(dim=-1) == y
    return ((out - y) ** 2).mean(dim=-1) < tolerance


def batch_loss(
    kind: str, out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Mean loss over the items of a batch (masked steps excluded for per-step targets)."""
    losses = item_loss(kind, out, y)
    if mask is None:
        return losses.mean()
    maskf = mask.to(losses.dtype)
    return (losses * maskf).sum() / maskf.sum().clamp_min(1.0)


def chance_level(task) -> float:
    """Accuracy of the trivial predictor: validation majority-class rate (classification), or
    accuracy of always predicting the training targets' mean (regression)."""
    mask = None
    if task.per_step:
        n, t = task.y_val.shape[:2]
        mask = step_mask(task.lengths_val, n, t, task.y_val.device)
    if task.kind == "classification":
        labels = task.y_val[mask] if mask is not None else task.y_val.reshape(-1)
        counts = torch.bincount(labels.reshape(-1), minlength=task.output_dim)
        return float(counts.max()) / max(1, int(labels.numel()))
    if task.per_step:
        tmask = step_mask(task.lengths_train, *task.y_train.shape[:2], task.y_train.device)
        mean = task.y_train[tmask].mean(dim=0)
        correct = item_correct("regression", mean.expand_as(task.y_val), task.y_val, task.tolerance)
        return float(correct[mask].float().mean())
    mean = task.y_train.mean(dim=0, keepdim=True)
    correct = item_correct("regression", mean.expand_as(task.y_val), task.y_val, task.tolerance)
    return float(correct.float().mean())


def chance_loss_level(task) -> float:
    """The validation loss of knowing nothing, the reference of the loss calls: predicting the
    training label frequencies (classification: the cross-entropy of the validation labels under
    those frequencies, the entropy when the two sets are alike) or the training targets' mean
    (regression: the mean squared error of that constant)."""
    val_mask = train_mask = None
    if task.per_step:
        val_mask = step_mask(task.lengths_val, *task.y_val.shape[:2], task.y_val.device)
        train_mask = step_mask(task.lengths_train, *task.y_train.shape[:2], task.y_train.device)
    y_train = task.y_train[train_mask] if train_mask is not None else task.y_train
    y_val = task.y_val[val_mask] if val_mask is not None else task.y_val
    if task.kind == "classification":
        counts = torch.bincount(y_train.reshape(-1), minlength=task.output_dim).double()
        # add-one smoothing: a class absent from training would make the reference infinite
        freq = (counts + 1.0) / (counts.sum() + task.output_dim)
        return float(-torch.log(freq)[y_val.reshape(-1)].mean())
    mean = y_train.reshape(-1, y_train.shape[-1]).double().mean(dim=0)
    return float(((y_val.double() - mean) ** 2).mean())
