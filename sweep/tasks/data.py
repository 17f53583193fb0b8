"""TaskData: a task's whole data set as tensors, plus what counts as correct.

Every task (built-in generators, scikit-learn digits, user files) produces one of these; the
training code needs nothing else. Tensors live on the CPU here and are moved to the training
device once per worker (`TaskData.to`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class TaskData:
    """A task's train/validation tensors and its scoring rule.

    Shapes (N sequences, T steps, F features):
      x: [N, T, F] float32, or [N, T] int64 token ids when `vocab_size` is set.
      y: classification [N] int64; regression [N, D] float32; per-step targets [N, T] int64 or
         [N, T, D] float32 (loss and accuracy at every step within the sequence's length).
      lengths: [N] int64 valid steps of each (padded) sequence, or None when all have T steps.
         Padding must be finite (zeros): forward models read padded batches whole and take each
         sequence's output at its last valid step.
    """

    name: str
    kind: str  # "classification" or "regression"
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    output_dim: int  # number of classes, or regression target size D
    lengths_train: torch.Tensor | None = None
    lengths_val: torch.Tensor | None = None
    per_step: bool = False
    vocab_size: int | None = None  # token inputs (an embedding layer reads them)
    tolerance: float | None = None  # regression: correct when squared error < tolerance
    info: dict[str, Any] = dataclasses.field(
        default_factory=dict
    )  # facts for the report (classes, vocabulary)

    @property
    def input_dim(self) -> int:
        return int(self.vocab_size) if self.vocab_size else int(self.x_train.shape[-1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def is_classification(self) -> bool:
        return self.kind == "classification"

    def to(self, device: torch.device | str) -> TaskData:
        """The same data on `device` (done once per worker, never per step)."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **moved)

    def chance(self) -> float:
        """Accuracy of the trivial predictor (docs/architecture.md, "Definitions"): the validation
        majority-class rate for classification; for regression, the accuracy of always
        predicting the training mean."""
        from sweep.tasks.scoring import chance_level

        return chance_level(self)

    def chance_loss(self) -> float:
        """The loss of knowing nothing (the reference of calls from the loss): predicting the
        training label frequencies, or the training targets' mean."""
        from sweep.tasks.scoring import chance_loss_level

        return chance_loss_level(self)


def task_from_arrays(
    name: str, kind: str, train: tuple, val: tuple, output_dim: int, **fields: Any
) -> TaskData:
    """A TaskData from numpy arrays: `train` and `val` are (x, y) or (x, y, lengths), with lengths
    None for sequences that all have T steps; other TaskData fields as keywords."""

    def tensor(a: Any) -> torch.Tensor | None:
        return None if a is None else torch.from_numpy(np.ascontiguousarray(a))

    (x_tr, y_tr, l_tr), (x_va, y_va, l_va) = (
        (tuple(train) + (None,))[:3],
        (tuple(val) + (None,))[:3],
    )
    return TaskData(
        name=name,
        kind=kind,
        x_train=tensor(x_tr),
        y_train=tensor(y_tr),
        x_val=tensor(x_va),
        y_val=tensor(y_va),
        output_dim=int(output_dim),
        lengths_train=tensor(l_tr),
        lengths_val=tensor(l_va),
        **fields,
    )


def save_task(task: TaskData, path) -> None:
    """Write the task's tensors and facts (loadable with weights_only=True), atomically."""
    from sweep.core.files import atomic_write

    atomic_write(
        path,
        lambda p: torch.save({f.name: getattr(task, f.name) for f in dataclasses.fields(task)}, p),
    )


def load_task(path) -> TaskData | None:
    """The task saved by `save_task`, or None when the file is missing or unreadable."""
    try:
        return TaskData(**torch.load(path, map_location="cpu", weights_only=True))
    except Exception:
        return None
