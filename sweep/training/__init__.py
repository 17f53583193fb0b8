"""Training the repeated seeds of one grid setting (torch).

The main modules, in the order data flows through them: `spec` (the resolved SettingSpec of a
setting), `models` / `packed_net` (a seed's network, or every seed's as one), `optim` (optimizers
and schedules), `separate` / `packed` (the two ways to train a setting's seeds, one interface),
`gradients` (norms before clipping, and clipping), `epoch` (what an epoch leaves behind),
`signals` / `saturation` / `origin` (the signals of why a run collapsed: update ratios, saturated
units, the critical step size, where a NaN started), `checkpoints` (a running trial's state),
`start_state` / `state_slots` / `start_facts` (the saved state every run of a sweep may start
from, written into separate or packed seeds, and what the study records of it), `kept` (states
kept for a later sweep to start from), `accelerator` (CPU/CUDA state), `setting`
(`train_setting`: picks the mode, resumes, loops over epochs); `range_test` is `sweep find`'s
run. Losses and accuracy are the task's (`sweep.tasks.scoring`).
"""

from sweep.core.records import EPOCH_COLUMNS, RunRecord
from sweep.training.epoch import NONFINITE_CHECK_STEPS, nonfinite_check_steps
from sweep.training.loop import (
    NullCheckpointer,
    StopRequested,
    train_setting,
    train_spec,
    use_packing,
)
from sweep.training.packed import PackedTrainer
from sweep.training.separate import SeedGroup, SeedTrainer
from sweep.training.spec import SettingSpec

__all__ = [
    "EPOCH_COLUMNS",
    "RunRecord",
    "NONFINITE_CHECK_STEPS",
    "nonfinite_check_steps",
    "PackedTrainer",
    "SeedGroup",
    "SeedTrainer",
    "NullCheckpointer",
    "StopRequested",
    "train_setting",
    "train_spec",
    "use_packing",
    "SettingSpec",
]
