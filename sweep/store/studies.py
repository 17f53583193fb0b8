"""The study of a sweep: created once, loaded by name, refusing incomparable configs.

Storage layout:
  study user attrs: `lrsweep.comparable` (config keys that fix what results mean),
    `lrsweep.config` (the config of the latest run; its grid is the union of every run's),
    `lrsweep.task` (chance level, sizes, data fingerprint), `lrsweep.find` (range tests),
    `lrsweep.refine` (refinement rounds).
  trial params: lr, batch_size, clip (absent: no clipping), numeric extra axes.
  trial user attrs: `setting` (all axes), `seeds`, `worker` (host, pid, start time),
    `run_<seed>` (compact record of one run), and a readable summary (mean_best_acc, ...).
"""

from __future__ import annotations

import warnings
from typing import Any

from sweep.config import Config, comparable_part
from sweep.config.identity import ADDED_KEYS, trainer_name
from sweep.config.start import incomparable_start
from sweep.core.errors import UserError
from sweep.core.redact import redact_url

DIRECTIONS = ("maximize", "minimize")  # values: mean best accuracy, collapse rate
ATTR_COMPARABLE = "lrsweep.comparable"
ATTR_CONFIG = "lrsweep.config"
ATTR_TASK = "lrsweep.task"
ATTR_FIND = "lrsweep.find"  # the learning-rate range tests of `sweep find` / grid.lr=auto
ATTR_REFINE = "lrsweep.refine"  # the rounds of `sweep refine`: what each added and why


def study_names(storage: Any) -> list[str]:
    """The names of the studies in `storage`, from the study rows alone. (Optuna's study
    summaries read every trial of every study too: slow on a shared database, and a KeyError
    when another user's study is deleted between the listing and the reading.)"""
    import optuna

    return optuna.study.get_all_study_names(storage)


def load_study(storage: Any, name: str) -> Any:
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = study_names(storage)
        hint = (
            f"studies there: {', '.join(names)}"
            if names
            else "it holds no study yet; run `sweep run` first"
        )
        raise UserError(f"study.name: no study {name!r} in this storage; {hint}") from None


def check_comparable(study: Any, cfg: Config) -> None:
    """Refuse a config whose results would not be comparable with what the study holds."""
    stored = study.user_attrs.get(ATTR_COMPARABLE)
    if stored is None:
        return
    new = comparable_part(cfg)
    old_trainer, new_trainer = trainer_name(stored), trainer_name(new)
    if old_trainer != new_trainer:
        raise UserError(
            f"trainer: study {study.study_name!r} was trained with trainer={old_trainer}, this config has "
            f"trainer={new_trainer}, so its results would not be comparable; start a new study "
            f"(study.name={study.study_name}-2) or set trainer={old_trainer}"
        )
    swept = {k for k, _ in cfg.grid.extra} | set(
        study.user_attrs.get(ATTR_CONFIG, {}).get("grid", {})
    )
    # Group choices first (optimizer.name says more than optimizer.beta1 appearing).
    for key in sorted(set(stored) | set(new), key=lambda k: (not k.endswith(".name"), k)):
        if key in swept or (key in ADDED_KEYS and key not in stored):
            continue
        old_v, new_v = stored.get(key, "<unset>"), new.get(key, "<unset>")
        if old_v != new_v and key.startswith("start."):  # from another checkpoint, or from scratch
            raise UserError(incomparable_start(study.study_name, stored, new))
        if old_v != new_v and key == "trainer.source":
            name = study.study_name
            raise UserError(
                f"trainer._target_: the code of {new.get('trainer._target_')} changed since study "
                f"{name!r} was run (source hash {old_v} -> {new_v}; comments, docstrings and layout "
                f"do not count), so its results would not be comparable; start a new study "
                f"(study.name={name}-2) or restore the code"
            )
        if old_v != new_v:
            raise UserError(
                f"{key}: study {study.study_name!r} was run with {key}={old_v!r}, this config has "
                f"{new_v!r}, so its results would not be comparable; start a new study "
                f"(study.name={study.study_name}-2) or set {key}={old_v!r}"
            )


def open_or_create_study(
    storage: Any, cfg: Config, task_info: dict[str, Any], record_grid: bool = True
) -> Any:
    """Load the study (checking comparability first) or create it; record config and task facts.

    `record_grid=False` (`sweep find`) leaves the study's grid and seeds as they are: a range
    test plans no work. One launcher at a time (`study_lock`): two starting together each find
    the other's grid in the study's config, and the second to create the study checks it."""
    from sweep.store.locks import study_lock

    with study_lock(storage, cfg.study.name):
        return _open_or_create(storage, cfg, task_info, record_grid)


def _open_or_create(storage: Any, cfg: Config, task_info: dict[str, Any], record_grid: bool) -> Any:
    import optuna

    if cfg.study.name in study_names(storage):
        study = optuna.load_study(study_name=cfg.study.name, storage=storage)
        check_comparable(study, cfg)
        old_task = study.user_attrs.get(ATTR_TASK)
        if old_task and old_task.get("fingerprint") != task_info.get("fingerprint"):
            raise UserError(
                f"task: the data of study {cfg.study.name!r} differ from the data this config builds "
                f"(sizes or contents changed); start a new study (study.name={cfg.study.name}-2)"
            )
    else:
        try:
            study = optuna.create_study(
                study_name=cfg.study.name, storage=storage, directions=list(DIRECTIONS)
            )
        except optuna.exceptions.DuplicatedStudyError:  # another worker created it meanwhile
            study = optuna.load_study(study_name=cfg.study.name, storage=storage)
        with warnings.catch_warnings():  # experimental API; names the values in optuna-dashboard
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["mean_best_acc", "collapse_rate"])
    if ATTR_COMPARABLE not in study.user_attrs:
        study.set_user_attr(ATTR_COMPARABLE, comparable_part(cfg))
        study.set_user_attr(ATTR_TASK, task_info)
    elif "data" in task_info and "data" not in (study.user_attrs.get(ATTR_TASK) or {}):
        # A study made by an older lrsweep: add the data summary (same data, checked above).
        study.set_user_attr(
            ATTR_TASK, {**study.user_attrs.get(ATTR_TASK, {}), "data": task_info["data"]}
        )
    merged = cfg.to_dict()
    merged["study"]["storage"] = redact_url(cfg.storage_url())
    old = study.user_attrs.get(ATTR_CONFIG)
    if not record_grid:
        merged["grid"], merged["seeds"] = (
            (old or {}).get("grid", {}),
            int((old or {}).get("seeds", 0)),
        )
    elif old is not None:  # the study's grid is the union of every grid run against it
        merged["grid"] = _union_grid(old.get("grid", {}), merged["grid"])
        merged["seeds"] = max(int(old.get("seeds", 0)), cfg.seeds)
    study.set_user_attr(ATTR_CONFIG, merged)
    return study


def _union_grid(old: dict[str, list], new: dict[str, list]) -> dict[str, list]:
    out = {k: list(v) for k, v in old.items()}
    for k, values in new.items():
        for v in values:
            if v not in out.setdefault(k, []):
                out[k].append(v)
    return out
