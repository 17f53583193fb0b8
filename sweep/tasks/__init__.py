"""Task data: every built-in, file-backed or user-loaded task turns its config into a `TaskData`.

Usage: ``data = build_task(cfg.task)``. A built-in task has a builder in ``BUILDERS`` (and its
schema in ``sweep.config.tasks.TASKS``); a task node with a `_target_` is a user's loader
(`sweep.tasks.loader`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sweep.tasks.data import TaskData
from sweep.tasks.digits import build_digits
from sweep.tasks.files import build_file
from sweep.tasks.loader import build_loader
from sweep.tasks.synthetic import build_adding, build_echo, build_temporal_order, build_vector_sum
from sweep.tasks.text import build_text

BUILDERS: dict[str, Callable[[Any], TaskData]] = {
    "digits": build_digits,
    "adding": build_adding,
    "temporal_order": build_temporal_order,
    "echo": build_echo,
    "vector_sum": build_vector_sum,
    "file": build_file,
    "text": build_text,
}


def build_task(task_cfg: Any) -> TaskData:
    """The task's data set on the CPU (deterministic for a given config)."""
    from sweep.config.targets import TargetTask

    if isinstance(task_cfg, TargetTask):
        return build_loader(task_cfg)
    return BUILDERS[task_cfg.name](task_cfg)


__all__ = ["TaskData", "build_task", "BUILDERS"]
