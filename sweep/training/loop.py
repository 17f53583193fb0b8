"""Training the seeds of one setting: `train_setting` picks separate or packed training, resumes
from a checkpoint, and advances all seeds epoch by epoch.

Usage::

    records = train_setting(task, cfg, setting, seeds=[0, 1, 2], device=torch.device("cpu"))
    records = train_spec(task, SettingSpec.build(cfg, setting, seeds), device, checkpointer, should_stop)

It does no plotting and no storage I/O: it returns one `RunRecord` per seed. Separate and packed
training share one small interface (`SeedGroupLike`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from sweep.config import Config
from sweep.config.targets import TargetModel
from sweep.core.errors import StopRequested
from sweep.core.records import RunRecord
from sweep.tasks.data import TaskData
from sweep.training.accelerator import describe_device
from sweep.training.kept import Keeper, NullKeeper
from sweep.training.packed import PackedTrainer
from sweep.training.separate import SeedGroup
from sweep.training.spec import SettingSpec
from sweep.training.start_state import NullStart, load_start


class SeedGroupLike(Protocol):
    """What separate (`SeedGroup`) and packed (`PackedTrainer`) training both offer."""

    mode: str  # "separate" or "packed": recorded in checkpoints

    @property
    def stopped(self) -> bool: ...

    def run_epoch(self) -> None: ...

    def records_list(self) -> list[RunRecord]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class NullCheckpointer:
    """Checkpointing switched off: nothing is saved or restored."""

    def load(self) -> dict[str, Any] | None:
        return None

    def maybe_save(
        self, epoch: int, state: Callable[[], dict[str, Any]], force: bool = False
    ) -> None:
        pass

    def clear(self) -> None:
        pass


def use_packing(cfg: Any, device: torch.device) -> bool:
    """`packing=auto`: pack the seeds where it is faster, by a fixed rule (the choice changes
    float rounding, so it must not depend on timing noise):

    - CUDA: yes. One small model cannot keep a GPU busy (it waits on kernel launches); the pack
      does the work of all seeds per launch.
    - CPU: no. PyTorch's nn.LSTM/nn.GRU run their time loop in C++, while the pack's loop is
      Python; measured with one thread (benchmarks/README.md, "Packed seeds") the pack ran at
      0.28x-0.43x of separate models, so separate models are the default there.
    - Not with dropout between stacked layers (dropout > 0 and layers > 1): packed dropout masks
      are drawn for the whole pack, so a seed's curves would depend on which seeds share its
      pack (`packing=on` still allows it).

    `packing=on` / `off` decide by themselves, except that a user's model (`model._target_`)
    cannot be stacked: its seeds always train separately.
    """
    if isinstance(cfg.model, TargetModel):
        return False  # a user's model cannot be stacked: its seeds train separately
    if cfg.packing != "auto":
        return cfg.packing == "on"
    if cfg.model.dropout > 0 and cfg.model.layers > 1:
        return False
    return device.type == "cuda"


def train_setting(
    task: TaskData,
    cfg: Config,
    setting: dict[str, Any],
    seeds: list[int],
    device: torch.device,
    checkpointer: Any = None,
    should_stop: Callable[[], bool] = lambda: False,
    check_every: int | None = None,
) -> list[RunRecord]:
    """Train every seed of one setting for `cfg.epochs` epochs; return one record per seed.

    `setting` holds lr, clip, batch_size and any extra grid axes (dotted config keys); every seed
    starts from `cfg.start`'s checkpoint when it names one; see `train_spec` for the rest.
    """
    start = load_start(cfg)
    return train_spec(
        task,
        SettingSpec.build(cfg, setting, seeds),
        device,
        checkpointer,
        should_stop,
        check_every,
        start=start,
        keeper=Keeper(cfg, setting, start.epoch) if cfg.checkpoint.keep_epochs else NullKeeper(),
    )


def train_spec(
    task: TaskData,
    spec: SettingSpec,
    device: torch.device,
    checkpointer: Any = None,
    should_stop: Callable[[], bool] = lambda: False,
    check_every: int | None = None,
    on_epoch: Callable[[int], None] = lambda epoch: None,
    start: Any = None,
    keeper: Any = None,
) -> list[RunRecord]:
    """Train the seeds of `spec`; return one record per seed.

    Seeds advance together, epoch by epoch, so that a checkpoint holds all of them at the same
    epoch; with packing they are one model. After every epoch `should_stop()` is asked; when it
    says yes, a checkpoint is written and :class:`StopRequested` is raised. `check_every`
    overrides the steps between non-finite checks (default: per device); `on_epoch(epoch)` is
    told each finished epoch (live progress). Every seed starts from `start`'s saved state
    (`sweep.training.start_state.Start`; None: from its own initial weights), and `keeper`
    keeps the seeds' states after the epochs it is asked for (`sweep.training.kept.Keeper`).
    """
    # Denormal floats make saturated high-LR runs several times slower on CPUs and carry no
    # information for training; flush them to zero while training (set here so every entry
    # point agrees, and reset after: it is process-wide CPU state).
    torch.set_flush_denormal(True)
    try:
        return _train(
            task,
            spec,
            device,
            checkpointer or NullCheckpointer(),
            should_stop,
            check_every,
            on_epoch,
            start or NullStart(),
            keeper or NullKeeper(),
        )
    finally:
        torch.set_flush_denormal(False)


def _train(
    task: TaskData,
    spec: SettingSpec,
    device: torch.device,
    checkpointer: Any,
    should_stop: Callable[[], bool],
    check_every: int | None,
    on_epoch: Callable[[int], None],
    start: Any,
    keeper: Any,
) -> list[RunRecord]:
    saved = checkpointer.load()
    # A resumed setting continues in the mode it started in, also on another device (a setting
    # begun packed on a GPU host resumes packed on a CPU host): switching would change rounding.
    packed = saved["mode"] == PackedTrainer.mode if saved is not None else use_packing(spec, device)
    group: SeedGroupLike = (PackedTrainer if packed else SeedGroup)(task, spec, device, check_every)
    if saved is not None:
        group.load_state_dict(saved["group"])
    else:  # a fresh start: every seed from the same saved state, when the sweep names one
        start.apply(group)
    epoch = min(
        (r.epochs_run for r in group.records_list() if r.nonfinite is None), default=spec.epochs
    )
    while not group.stopped:
        epoch += 1
        group.run_epoch()
        on_epoch(epoch)
        keeper.after_epoch(group, epoch)
        stop = should_stop() and not group.stopped
        if not group.stopped:
            checkpointer.maybe_save(
                epoch, lambda: {"mode": group.mode, "group": group.state_dict()}, force=stop
            )
        if stop:
            raise StopRequested(f"stopped after epoch {epoch}")
    records = group.records_list()
    for record in records:
        record.device = describe_device(device)
    return records
