"""Who trains a (setting, seed): one interface, three implementations.

Usage (by the worker)::

    trainer = make_trainer(cfg, device, task=task, on_epoch=on_epoch)
    records = trainer.train(setting, seeds, should_stop)   # one RunRecord per seed
    trainer.clear(setting, seeds)                          # once the trial's results are stored

- `builtin` (`builtin.py`): lrsweep's own loop (sweep.training) on the task's data.
- `command` (`command.py`): a user's training script in any framework, one process group per run
  (`supervise.py`), read through the metrics file it writes (`logs.py`: Keras's and Lightning's
  CSV logs, JSON lines).
- a function (`function.py`): a user's Python training function, called in the worker with a
  `report(epoch, **metrics)` callback; `gradients.GradientMonitor` records the built-in gradient
  columns for it.

`checks.py` checks a user's training before anything is written; `placeholders.py` renders a
command; `runs.py` holds the per-run folders. lrsweep never imports Keras or Lightning: only its
examples and tests do. Only the built-in trainer needs torch in the worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sweep.config import Config
from sweep.config.trainers import CommandTrainer as CommandOptions
from sweep.config.trainers import TargetTrainer
from sweep.core.records import RunRecord


class Trainer(Protocol):
    def train(
        self, setting: dict[str, Any], seeds: list[int], should_stop: Callable[[], bool]
    ) -> list[RunRecord]: ...

    def clear(self, setting: dict[str, Any], seeds: list[int]) -> None: ...


def make_trainer(
    cfg: Config,
    device: Any,
    task: Any = None,
    on_epoch: Callable[[int, int], None] | None = None,
    function: Callable[..., Any] | None = None,
) -> Trainer:
    """The trainer `cfg.trainer` names, for a worker on `device` (a torch.device or its string).
    `function`: the training function itself (the Python API passes a notebook's function)."""
    if isinstance(cfg.trainer, TargetTrainer):
        from sweep.trainers.checks import check_trainer, load_function
        from sweep.trainers.function import FunctionTrainer

        if function is None:
            check_trainer(
                cfg
            )  # the code this worker imports is the code the sweep was configured with
            function = load_function(cfg.trainer.target)
        return FunctionTrainer(cfg, str(device), function, on_epoch)
    if isinstance(cfg.trainer, CommandOptions):
        from sweep.trainers.command import CommandTrainer

        return CommandTrainer(cfg, str(device), on_epoch)
    from sweep.trainers.builtin import BuiltinTrainer

    return BuiltinTrainer(cfg, task, device, on_epoch)


__all__ = ["Trainer", "make_trainer"]
