"""Everything `sweep run`, `worker`, `find` and `refine` do before training: every check that
needs no storage connection, the task data, the study's storage and the queued work.

Usage::

    task = checked_task(cfg)                     # config, results_dir, storage URL, data, model checks
    storage, study, task = prepare(cfg, task)    # open/create the study, queue the missing work

Order of work (every user error is found before anything is written to the storage):
check results_dir and storage URL (no connection) -> build task data -> check model, lr
multipliers and batch sizes -> open storage -> check the study is comparable -> reclaim orphaned
trials -> queue missing (setting, seeds).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sweep.config import Config, apply_overrides
from sweep.config.start import ATTR_START, check_start_file
from sweep.core.errors import UserError
from sweep.core.files import check_writable
from sweep.store.queue import enqueue, plan_work, uncovered
from sweep.store.storage import check_storage_url, open_storage
from sweep.store.studies import open_or_create_study
from sweep.store.workers import reclaim_orphans
from sweep.tasks import TaskData, build_task
from sweep.tasks.data import save_task
from sweep.tasks.summary import data_summary
from sweep.trainers.original_log import original_log
from sweep.training.models import check_group_lr_mult, check_model
from sweep.training.start_facts import start_facts
from sweep.training.start_state import check_start_state


def task_info(task: TaskData, normalized: bool | None = None) -> dict[str, Any]:
    """Facts about the data stored in the study (the report needs them without the data).
    `normalized`: the task's `normalize` option (None when it has none)."""
    h = hashlib.sha1()
    for t in (
        task.x_train,
        task.y_train,
        task.x_val,
        task.y_val,
        task.lengths_train,
        task.lengths_val,
    ):
        if t is not None:
            h.update(t.contiguous().cpu().numpy().tobytes())
    return {
        "name": task.name,
        "kind": task.kind,
        "chance": task.chance(),
        "chance_loss": task.chance_loss(),  # the reference of calls from the loss
        "n_train": task.n_train,
        "n_val": int(task.x_val.shape[0]),
        "steps": int(task.x_train.shape[1]),
        "input_dim": task.input_dim,
        "output_dim": task.output_dim,
        "per_step": task.per_step,
        "tolerance": task.tolerance,
        "fingerprint": h.hexdigest(),
        "info": task.info,
        "data": data_summary(
            task, normalized
        ),  # input scale and class balance, for the report's header
    }


def external_info(cfg: Config) -> dict[str, Any]:
    """What the study records of a user's training's data: only what the config says (n_val and
    chance, or None where each run's log states them); the data itself is the script's own."""
    from sweep.config.trainers import FROM_LOG

    trainer = cfg.trainer
    return {
        "name": cfg.study.name,
        "kind": "classification",
        "chance": None if trainer.chance in (None, FROM_LOG) else float(trainer.chance),
        "n_val": None if trainer.n_val in (None, FROM_LOG) else int(trainer.n_val),
        "chance_loss": None
        if trainer.chance_loss in (None, FROM_LOG)
        else float(trainer.chance_loss),
        # What the training is, is compared key by key (sweep.config.identity); no data to hash.
        "fingerprint": hashlib.sha1(f"external:{trainer.name}".encode()).hexdigest(),
        "info": {"trainer": trainer.name},
        "trainer": trainer.name,
    }


def check_device(device: str, n: int) -> None:
    """`device=cuda[:N]` needs that GPU among the `n` of this machine (checked before any data
    or storage)."""
    if not device.startswith("cuda"):
        return
    import torch

    if n == 0:
        raise UserError(
            f"device: {device!r} asks for a CUDA GPU, but torch {torch.__version__} sees none on this machine; "
            f"use device=auto (GPU when there is one) or device=cpu"
        )
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= n:
        raise UserError(
            f"device: {device!r} but this machine has {n} GPU(s), cuda:0..cuda:{n - 1}; "
            f"pick one of them, or device=cuda to use them all"
        )


def checked_task(cfg: Config) -> TaskData | None:
    """Every check that needs no storage connection, then the task data (built once; None for a
    user's training, which brings its own data)."""
    check_writable(cfg.study_dir)
    if (
        cfg.study.storage
    ):  # a bad URL fails before the data is built (the default one is made below)
        check_storage_url(cfg.study.storage)
    if not cfg.trainer.builtin:
        check_start_file(cfg)  # start.checkpoint: the file, its hash and epoch
        return None
    task = build_task(cfg.task)
    check_model(cfg.model, task)  # a user's model: importable, a Module, outputs of the right shape
    check_start_state(cfg, task, setting_configs(cfg))  # ... and that the checkpoint fits it
    check_group_lr_mult(setting_configs(cfg), task)  # one lr multiplier per parameter group
    too_big = [b for b in cfg.grid.batch_size if b > task.n_train]
    if too_big:
        raise UserError(
            f"grid.batch_size: every batch size must be <= the {task.n_train} training sequences, got {too_big}; "
            f"use smaller batch sizes (a batch cannot hold more sequences than the training set)"
        )
    return task


def setting_configs(cfg: Config) -> list[Config]:
    """The config of each combination of the extra grid axes' values (just `cfg` without any)."""
    import itertools

    if not cfg.grid.extra:
        return [cfg]
    paths = [path for path, _ in cfg.grid.extra]
    return [
        apply_overrides(cfg, dict(zip(paths, values)))
        for values in itertools.product(*(values for _, values in cfg.grid.extra))
    ]


def prepare(
    cfg: Config,
    task: TaskData | None = None,
    extra_work: Sequence[tuple[dict[str, Any], list[int]]] = (),
) -> tuple[Any, Any, TaskData | None]:
    """Validate everything, then open/create the study and queue the missing work (the grid's,
    and `extra_work` beyond it: seeds `sweep refine` adds to single settings)."""
    task = task if task is not None else checked_task(cfg)
    start = start_facts(cfg, task, original_log(cfg)) if cfg.start.active else None
    storage = open_study_storage(cfg)
    info = (
        task_info(task, getattr(cfg.task, "normalize", None))
        if task is not None
        else external_info(cfg)
    )
    study = open_or_create_study(storage, cfg, info)
    if start is not None:
        study.set_user_attr(ATTR_START, start)
    if task is not None:
        # Workers read the data built here instead of building it again (tokenising a text corpus
        # or parsing a large CSV once, not once per worker).
        save_task(task, task_cache_path(cfg, info["fingerprint"]))
    reclaim_orphans(study, cfg.study.grace_seconds)
    trials = study.get_trials(deepcopy=False)
    enqueue(study, plan_work(cfg, trials) + uncovered(extra_work, trials, cfg.study.retry_failed))
    return storage, study, task


def has_work(cfg: Config, extra_work: Sequence[tuple[dict[str, Any], list[int]]] = ()) -> bool:
    """A look at the storage before anything is checked or written: False only when the study
    exists and holds every (setting, seed) asked for, with no trial queued or running (then no
    worker needs starting). Any doubt (no storage yet, a bad URL: told later, by `prepare`) is
    True."""
    from optuna.trial import TrialState

    from sweep.store.studies import load_study, study_names

    try:
        storage = open_storage(cfg.storage_url(), create=False)
        if cfg.study.name not in study_names(storage):
            return True
        trials = load_study(storage, cfg.study.name).get_trials(deepcopy=False)
    except Exception:
        return True
    if any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials):
        return True
    return bool(plan_work(cfg, trials) or uncovered(extra_work, trials, cfg.study.retry_failed))


def open_study_storage(cfg: Config) -> Any:
    """The study's storage, opened (the default SQLite file is created under results_dir)."""
    if not cfg.study.storage:  # the default SQLite file lives in results_dir
        cfg.study_dir.parent.mkdir(parents=True, exist_ok=True)
    return open_storage(cfg.storage_url(), cfg.study.heartbeat_seconds, cfg.study.grace_seconds)


def task_cache_path(cfg: Config, fingerprint: str) -> Path:
    return cfg.study_dir / f"task-{fingerprint[:16]}.pt"
