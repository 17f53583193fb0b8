"""What one epoch of training leaves behind, shared by separate and packed training.

Per step, the loss and the gradient norm before clipping go into device buffers; `epoch_stats`
reads them once per epoch (one host synchronisation), cut at the first non-finite step. A
non-finite check every `nonfinite_check_steps` steps (`window_finite`) looks at every step since
the previous check.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from sweep.training.gradients import group_row

NONFINITE_CHECK_STEPS = 16  # on CUDA: steps between host-side non-finite checks
EVAL_BATCH = 4096  # validation batch (inference only, no activations kept)
# The validation columns of an epoch that ended non-finite (the model was no longer usable).
NO_EVALUATION = {
    "val_loss": math.nan,
    "val_acc": math.nan,
    "pred_top_frac": math.nan,
    "val_loss_sd": math.nan,
}


def nonfinite_check_steps(device: torch.device) -> int:
    """Steps between non-finite checks: every step on the CPU (a check costs nothing there);
    on CUDA every NONFINITE_CHECK_STEPS steps, since each check waits for the GPU."""
    return 1 if device.type == "cpu" else NONFINITE_CHECK_STEPS


def params_finite(params: list[torch.Tensor]) -> bool:
    return bool(torch.stack([p.detach().isfinite().all() for p in params]).all())


def sequence_sd(total: torch.Tensor, squares: torch.Tensor, n: int) -> torch.Tensor:
    """Sample SD of n per-sequence values from their sum and sum of squares (device tensors;
    any leading shape, e.g. one per packed seed)."""
    mean = total / n
    var = (squares / n - mean * mean).clamp_min(0) * (n / max(n - 1, 1))
    return var.sqrt()


def window_finite(losses: list[torch.Tensor], norms: list[torch.Tensor], window: int) -> bool:
    """Were the last `window` steps finite (one host read)? The whole window since the previous
    check, not only its last step: an inf gradient norm makes clipping multiply the gradients by
    0, so the steps after a non-finite one can look finite again."""
    if window == 1:
        return bool(torch.isfinite(losses[-1] + norms[-1]))
    return bool(torch.isfinite(torch.stack(losses[-window:]) + torch.stack(norms[-window:])).all())


def epoch_stats(
    losses: torch.Tensor,
    norms: torch.Tensor,
    clip: float | None,
    lr: float,
    group_norms: torch.Tensor | None = None,
    group_names: Sequence[str] = (),
) -> tuple[dict[str, float], str | None, int | None]:
    """Per-epoch summary of the step buffers, cut at the first non-finite step (one host sync).

    `group_norms` [steps, G] (optional) are the per-step norms of the parameter groups
    `group_names`; they add grad_norm_mean/<group> and grad_norm_max/<group>. Returns the row,
    what went non-finite first ("loss" or "gradient", None when nothing did) and the index of
    that step within the epoch.
    """
    finite = torch.isfinite(losses) & torch.isfinite(norms)
    bad = (~finite).nonzero()
    first_bad = int(bad[0, 0]) if bad.numel() else None
    nonfinite = None
    if first_bad is not None:
        losses, norms = losses[: first_bad + 1], norms[: first_bad + 1]
        group_norms = group_norms[: first_bad + 1] if group_norms is not None else None
        nonfinite = "loss" if not bool(torch.isfinite(losses[-1])) else "gradient"
    clipped = (
        (norms >= clip).float().mean() if clip is not None else torch.zeros((), device=norms.device)
    )
    names = [
        "train_loss",
        "grad_norm_mean",
        "grad_norm_max",
        "grad_norm_p90",
        "clip_fraction",
        "train_loss_sd",
    ]
    spread = losses.std() if losses.numel() > 1 else torch.zeros((), device=losses.device)
    values = [
        losses.mean(),
        norms.mean(),
        norms.max(),
        torch.quantile(norms.float(), 0.9),
        clipped,
        spread,
    ]
    if group_norms is not None and group_names:
        groups = group_row(list(group_names), group_norms)
        names += list(groups)
        values += [v.to(values[0].dtype) for v in groups.values()]
    row = dict(zip(names, torch.stack(values).tolist()))
    row = {k: (v if math.isfinite(v) else math.nan) for k, v in row.items()}
    row["epoch_lr"] = lr
    return row, nonfinite, first_bad
