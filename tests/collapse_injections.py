"""Test-only injections of the mechanisms of a collapse into lrsweep's own loop (issue 26).

Each injection wraps `SeedGroup.run_epoch` (separate training; the seeds of a setting advance
together, epoch by epoch) and changes one thing when epoch `k` starts:

- `gradient_x100`: one step's gradient (the first of epoch k) is scaled x100 before clipping;
- `lr_x30`: the learning rate is x30 from epoch k on;
- `inputs_x100`: every input sequence (training and validation: the data changed) is x100;
- `labels_one_class`: every training label is class 0 from epoch k on;
- `nan_weight`: a NaN is written into one weight of `layer` (rnn.l0, rnn.l1).

The product code has no test branch: these are monkeypatches of the loop's own methods.

Usage::

    with injected("lr_x30", k=6):
        records = train_setting(task, cfg, setting, seeds, cpu)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from sweep.training.gradients import ParamGroups
from sweep.training.separate import SeedGroup

KINDS = ("gradient_x100", "lr_x30", "inputs_x100", "labels_one_class", "nan_weight")
EXPECTED = {  # the mechanism the autopsy must name for each injection
    "gradient_x100": "gradient_cliff",
    "lr_x30": "step_too_large",
    "inputs_x100": "saturation",
    "labels_one_class": "output_collapse",
    "nan_weight": "nonfinite",
}


@contextmanager
def injected(kind: str, k: int, layer: str = "rnn.l1") -> Iterator[None]:
    """Within the block, every SeedGroup gets the injection `kind` at the start of epoch k."""
    if kind not in KINDS:
        raise ValueError(f"unknown injection {kind!r}; one of {KINDS}")
    run_epoch, clip = SeedGroup.run_epoch, ParamGroups.clip
    scaled: set[int] = set()  # trainers whose scaled step has happened

    def epoch(group: SeedGroup) -> None:
        starting = min(t.record.epochs_run for t in group.trainers) + 1
        if starting == k:
            task = group.trainers[0].task
            for t in group.trainers:
                if kind == "lr_x30":
                    t.lr = t.lr * 30
                elif kind == "nan_weight":
                    with torch.no_grad():
                        getattr(t.model.rnn, f"weight_hh_l{layer[-1]}")[1, 2] = math.nan
                elif kind == "gradient_x100":
                    t.groups.scale_next = 100.0  # read by the wrapped clip below
            with torch.no_grad():
                if kind == "inputs_x100":
                    task.x_train.mul_(100.0)
                    task.x_val.mul_(100.0)
                elif kind == "labels_one_class":
                    task.y_train.fill_(0)
        run_epoch(group)

    def scaled_clip(groups: ParamGroups, value):
        factor = getattr(groups, "scale_next", None)
        if factor is not None and id(groups) not in scaled:
            scaled.add(id(groups))
            torch._foreach_mul_([p.grad for p in groups.params if p.grad is not None], factor)
        return clip(groups, value)

    SeedGroup.run_epoch = epoch
    ParamGroups.clip = scaled_clip
    try:
        yield
    finally:
        SeedGroup.run_epoch = run_epoch
        ParamGroups.clip = clip
