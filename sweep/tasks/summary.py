"""What the data look like to the model, stated before anyone reads a curve.

Usage: ``data_summary(task, normalized=True)`` -> a plain dict, stored with the study's task facts
(sweep.launch.launcher.task_info) and read by the report's header and sweep.analysis.data_checks:

- `inputs`: per-feature mean and standard deviation of the training inputs as the model sees
  them (after any standardisation), over valid steps only (padding left out); for token inputs
  only the vocabulary size. At most MAX_FEATURES features are listed; `n_features` counts all.
- `classes` (classification): sequence counts per class in the training and validation sets
  (per-step tasks: counts of valid steps).
- `targets` (regression): mean, standard deviation, min and max of the targets per split.
- `normalized`: whether lrsweep standardised the inputs (task.normalize), None when the task
  has no such option (built-in generators and digits come scaled).
"""

from __future__ import annotations

from typing import Any

import torch

from sweep.tasks.data import TaskData

MAX_FEATURES = 64  # features listed one by one; the rest are summarised by the warnings only


def _valid(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """[N, T, ...] -> [valid steps, ...]: the steps within each sequence's length."""
    if lengths is None:
        return x.reshape(-1, *x.shape[2:])
    steps = torch.arange(x.shape[1], device=x.device)
    return x[steps[None, :] < lengths[:, None]]


def _input_stats(task: TaskData) -> dict[str, Any]:
    if task.vocab_size:
        return {
            "tokens": True,
            "vocab_size": int(task.vocab_size),
            "n_features": 0,
            "mean": [],
            "sd": [],
        }
    steps = _valid(task.x_train.double(), task.lengths_train)  # [valid steps, F]
    if steps.numel() == 0:
        return {"tokens": False, "n_features": int(task.x_train.shape[-1]), "mean": [], "sd": []}
    mean, sd = steps.mean(dim=0), steps.std(dim=0, unbiased=False)
    far = _far_from_standard(mean, sd)
    return {
        "tokens": False,
        "n_features": int(mean.numel()),
        "mean": [round(float(v), 6) for v in mean[:MAX_FEATURES]],
        "sd": [round(float(v), 6) for v in sd[:MAX_FEATURES]],
        # Every feature is checked, also those past MAX_FEATURES: (index, mean, sd) of the worst few.
        "far": [[int(i), round(float(mean[i]), 6), round(float(sd[i]), 6)] for i in far[:5]],
        "n_far": len(far),
    }


# A feature counts as far from standardised when its mean is more than 3 units from 0 or its
# standard deviation exceeds 10: one-hot symbols, 0/1 flags and values scaled to [0, 1] pass;
# raw pixel values (0-255), timestamps or sensor counts in the thousands do not. Small spreads
# are not flagged: a nearly constant feature (an image's border pixels) carries little but does
# not drive the gates into saturation.
FAR_MEAN, FAR_SD = 3.0, 10.0


def _far_from_standard(mean: torch.Tensor, sd: torch.Tensor) -> list[int]:
    bad = (mean.abs() > FAR_MEAN) | (sd > FAR_SD)
    order = torch.argsort(-(mean.abs() + sd))
    return [int(i) for i in order if bool(bad[i])]


def _class_counts(
    y: torch.Tensor, lengths: torch.Tensor | None, per_step: bool, classes: int
) -> list[int]:
    labels = _valid(y, lengths) if per_step else y
    return [int(v) for v in torch.bincount(labels.reshape(-1).long(), minlength=classes)[:classes]]


def _target_stats(
    y: torch.Tensor, lengths: torch.Tensor | None, per_step: bool
) -> dict[str, float]:
    values = (_valid(y, lengths) if per_step else y).double().reshape(-1)
    if values.numel() == 0:
        return {}
    return {
        "mean": float(values.mean()),
        "sd": float(values.std(unbiased=False)),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def data_summary(task: TaskData, normalized: bool | None = None) -> dict[str, Any]:
    """The inputs' per-feature scale and the class balance (or target scale) of `task`."""
    out: dict[str, Any] = {"inputs": _input_stats(task), "normalized": normalized}
    if task.is_classification:
        k = int(task.output_dim)
        labels = task.info.get("classes")  # a file task's original labels, {index: label}
        labels = labels if isinstance(labels, dict) else {}
        out["classes"] = {
            "names": [str(labels.get(i, i)) for i in range(k)],
            "train": _class_counts(task.y_train, task.lengths_train, task.per_step, k),
            "val": _class_counts(task.y_val, task.lengths_val, task.per_step, k),
        }
    else:
        out["targets"] = {
            "train": _target_stats(task.y_train, task.lengths_train, task.per_step),
            "val": _target_stats(task.y_val, task.lengths_val, task.per_step),
        }
    return out
