"""Starting every run of a sweep from one saved state (config nodes `start` and `checkpoint`).

Usage::

    sweep run start.checkpoint=ckpt.pt start.epoch=900 start.setting='{lr:0.01,clip:null}' ...
    sweep run checkpoint.keep_epochs='[30]' ...            # keep every run's state at epoch 30
    sweep run start.from_run=lr0.01-clipnone-bs32/seed-0@30 ...   # then start from one of them

`check_start_file(cfg)` finds the state (a file, or a state lrsweep kept), hashes it and checks the
original setting against the grid, before anything is written; the built-in trainer's further
checks (the model's shapes, the optimizer state) are `sweep.training.start_state`'s. The study
records the file's sha256 (`start_part`, part of what makes results comparable) and the facts of
the start (`ATTR_START`: the checkpoint, its epoch, the original run's curve when it is known).

Torch-free: the report reads the start facts without the training code.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.config.rules import Checked, rule_error
from sweep.core.errors import UserError
from sweep.core.setting import BASE_AXES, Setting, setting_label, value_label

ATTR_START = "lrsweep.start"  # study user attribute: where the sweep started (`start_facts`)
KEPT = "kept"  # results/<study>/kept/<setting>/seed-N@EPOCH.pt (+ .json): states kept on request
OPTIMIZER_CHOICES = ("restore", "fresh")
# [<study>/]<setting>/seed-<N>@<EPOCH>, <setting> as its kept folder is named (lr0.01-clipnone-bs32)
FROM_RUN = re.compile(
    r"^(?:(?P<study>[^/]+)/)?(?P<setting>[^/@]+)/seed-(?P<seed>\d+)@(?P<epoch>\d+)$"
)
FROM_RUN_EXAMPLE = "e.g. start.from_run=lr0.01-clipnone-bs32/seed-0@30"


@dataclass
class StartConfig(Checked):
    """Where every run of the sweep starts: from scratch (the default), a saved state, or a state
    lrsweep kept. The seeds then vary what is still random: the data order and dropout."""

    checkpoint: str | None = None  # a saved state every run starts from (null: from scratch) ...
    # ... saved after this epoch: epochs count on from epoch + 1 (null: read from the file)
    epoch: int | None = None
    # restore: the checkpoint's optimizer state (momentum, Adam's moments) when it holds one;
    # fresh: a new optimizer. Either way the sweep's lr and clip apply from the first step.
    optimizer: str = "restore"
    # or a state lrsweep kept (checkpoint.keep_epochs): [<study>/]<setting>/seed-N@EPOCH
    from_run: str | None = None
    # the setting the checkpoint was trained with, e.g. {lr:0.01,clip:null}: continuing it over
    # the same seeds is the sweep's baseline (from_run knows it)
    setting: Any = None
    # the original run's metrics file (a CSV or JSON-lines log, as a user's training writes):
    # its epochs up to start.epoch are drawn in grey before the sweep's, and epoch start.epoch's
    # scores are where every run starts from (lrsweep's own loop measures them itself)
    log: str | None = None
    sha256: str | None = None  # written by lrsweep: the content hash of the checkpoint's file

    @property
    def active(self) -> bool:
        return bool(self.checkpoint or self.from_run)

    def check(self, prefix: str) -> None:
        if self.checkpoint and self.from_run:
            raise UserError(
                f"{prefix}.from_run: give either {prefix}.checkpoint=PATH or {prefix}.from_run=..., "
                f"not both (from_run names a checkpoint lrsweep kept)"
            )
        self.require(
            self.optimizer in OPTIMIZER_CHOICES,
            prefix,
            "optimizer",
            "must be restore or fresh",
            f"e.g. {prefix}.optimizer=fresh (a new optimizer; restore: the checkpoint's state)",
        )
        if self.epoch is not None:
            self.require(
                self.epoch >= 0, prefix, "epoch", "must be >= 0", f"e.g. {prefix}.epoch=900"
            )
        if self.from_run is not None and not FROM_RUN.match(self.from_run):
            raise rule_error(
                f"{prefix}.from_run",
                "must name a kept state as [<study>/]<setting>/seed-<N>@<EPOCH>",
                self.from_run,
                FROM_RUN_EXAMPLE,
            )
        if self.setting is not None and not isinstance(self.setting, dict):
            raise rule_error(
                f"{prefix}.setting",
                "must be a mapping of grid axes",
                self.setting,
                "e.g. start.setting='{lr:0.01,clip:null}'",
            )
        if self.log and not self.active:
            raise UserError(
                f"{prefix}.log: the original run's metrics, but no {prefix}.checkpoint is given; add "
                f"{prefix}.checkpoint=PATH {prefix}.epoch=N or drop {prefix}.log"
            )
        if self.setting and not self.active:
            raise UserError(
                f"{prefix}.setting: the original setting of a checkpoint, but no "
                f"{prefix}.checkpoint is given; add {prefix}.checkpoint=PATH or drop {prefix}.setting"
            )


@dataclass
class KeepConfig(Checked):
    """States lrsweep keeps on request (config node `checkpoint`), so that a later sweep can start
    from one of them with `start.from_run`."""

    # keep every run's model and optimizer state after these epochs (results/<study>/kept/)
    keep_epochs: list[int] = field(default_factory=list)

    def check(self, prefix: str) -> None:
        for epoch in self.keep_epochs:
            if not epoch >= 1:
                raise rule_error(
                    f"{prefix}.keep_epochs",
                    "every epoch must be >= 1",
                    epoch,
                    "e.g. checkpoint.keep_epochs='[30]'",
                )
        if len(set(self.keep_epochs)) != len(self.keep_epochs):
            raise rule_error(
                f"{prefix}.keep_epochs",
                "epochs must not repeat",
                list(self.keep_epochs),
                "list each epoch once",
            )


# --------------------------------------------------------------------------- the study's record


def start_part(cfg: Any) -> dict[str, Any]:
    """The start's keys in the comparable part of a study (none from scratch, so that a study
    from scratch compares as before): the file's hash, its epoch and, for lrsweep's own loop,
    whether the optimizer state was restored."""
    start = getattr(cfg, "start", None)
    if start is None or not start.active:
        return {}
    part = {"start.sha256": start.sha256, "start.epoch": start.epoch}
    if cfg.trainer.builtin:
        part["start.optimizer"] = start.optimizer
    return part


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def kept_folder(setting: Mapping[str, Any]) -> str:
    """`lr0.01-clipnone-bs32-1a2b3c4d`: a setting's kept states' folder (as its run folders)."""
    s = Setting(setting)
    words = f"lr{value_label(s.get('lr'))}-clip{value_label(s.get('clip'))}-bs{value_label(s.get('batch_size'))}"
    words = re.sub(r"[^A-Za-z0-9.+-]", "_", words)
    return f"{words}-{hashlib.sha1(s.key.encode()).hexdigest()[:8]}"


def kept_name(setting: Mapping[str, Any], seed: int, epoch: int, study: str = "") -> str:
    """What `start.from_run` calls a kept state: `[<study>/]lr0.01-clipnone-bs32/seed-0@30`."""
    words = kept_folder(setting).rsplit("-", 1)[0]
    return f"{study + '/' if study else ''}{words}/seed-{int(seed)}@{int(epoch)}"


def kept_paths(
    study_dir: Path, setting: Mapping[str, Any], seed: int, epoch: int
) -> tuple[Path, Path]:
    """(state .pt, facts .json) of the state kept after `epoch` of (setting, seed)."""
    base = Path(study_dir) / KEPT / kept_folder(setting) / f"seed-{int(seed)}@{int(epoch)}"
    return base.with_suffix(".pt"), base.with_suffix(".json")


def all_kept(results_dir: str | Path) -> list[tuple[str, Path]]:
    """(study, facts file) of every kept state under results_dir."""
    return [
        (p.parents[2].name, p) for p in sorted(Path(results_dir).glob(f"*/{KEPT}/*/seed-*@*.json"))
    ]


def find_kept(results_dir: str | Path, from_run: str) -> tuple[Path, dict[str, Any]]:
    """The kept state `from_run` names: (its .pt file, its facts); one line when none or several."""
    m = FROM_RUN.match(from_run)
    if m is None:  # checked by StartConfig.check already
        raise rule_error("start.from_run", "must be [<study>/]<setting>/seed-<N>@<EPOCH>", from_run)
    name = f"seed-{m['seed']}@{m['epoch']}.json"
    found = [
        (study, facts)
        for study, facts in all_kept(results_dir)
        if facts.name == name
        and (m["study"] is None or study == m["study"])
        and (
            facts.parent.name == m["setting"] or facts.parent.name.rsplit("-", 1)[0] == m["setting"]
        )
    ]
    if not found:
        kept = all_kept(results_dir)
        listed = ", ".join(_named(f) for _, f in kept[:4]) + (", ..." if len(kept) > 4 else "")
        there = (
            f"states kept under {results_dir}: {listed}"
            if kept
            else f"no state is kept under {results_dir}: run the original sweep with checkpoint.keep_epochs='[EPOCH]'"
        )
        raise UserError(f"start.from_run: no kept state {from_run!r}; {there}")
    if len({study for study, _ in found}) > 1 or len(found) > 1:
        names = ", ".join(_named(f) for _, f in found[:4])
        raise UserError(
            f"start.from_run: {from_run!r} names several kept states ({names}); name one of them in full"
        )
    facts_file = found[0][1]
    facts = json.loads(facts_file.read_text(encoding="utf-8"))
    state = facts_file.with_suffix(".pt")
    if not state.is_file():
        raise UserError(
            f"start.from_run: the kept state {state} is missing (only its facts are there); keep it again"
        )
    return state, facts


def _named(facts_file: Path) -> str:
    study = facts_file.parents[2].name
    return f"{study}/{facts_file.parent.name.rsplit('-', 1)[0]}/{facts_file.stem}"


# --------------------------------------------------------------------------- checks before training


def start_file(cfg: Any) -> Path:
    """The file every run starts from (`start.checkpoint`, or the state `start.from_run` names)."""
    if cfg.start.from_run:
        return find_kept(cfg.results_dir, cfg.start.from_run)[0]
    return Path(cfg.start.checkpoint).expanduser()


def check_start_file(cfg: Any) -> None:
    """The checks every trainer shares, before anything is written: the file is there (and is the
    one the study started from), the original setting is in the grid, the kept epochs lie in the
    sweep. Fills `start.sha256` (and, from a kept state, `start.epoch` and `start.setting`)."""
    start = cfg.start
    if not start.active:
        _check_keep_epochs(cfg, 0)
        return
    if start.from_run:
        if not cfg.trainer.builtin:
            raise UserError(
                "start.from_run: names a state of lrsweep's own model, which your training cannot load; "
                "give your own checkpoint with start.checkpoint=PATH (and {init_checkpoint} in the command, "
                "or init_checkpoint in the function)"
            )
        _, facts = find_kept(cfg.results_dir, start.from_run)
        _agree(start, "epoch", start.epoch, int(facts["epoch"]))
        _agree(start, "setting", start.setting, facts["setting"])
        start.epoch, start.setting = int(facts["epoch"]), dict(facts["setting"])
    path = start_file(cfg)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "no such file"
        raise UserError(
            f"start.checkpoint: {path} is {what}; give the file of the saved state every run starts from "
            f"(e.g. start.checkpoint=checkpoints/epoch-900.pt)"
        )
    digest = file_sha256(path)
    if start.sha256 and start.sha256 != digest:
        raise UserError(
            f"start.checkpoint: {path} changed since the study started from it (sha256 {start.sha256[:12]}... "
            f"then, {digest[:12]}... now); put the original file back, or start a new study from this one"
        )
    start.sha256 = digest
    if start.epoch is None and not cfg.trainer.builtin:
        raise UserError(
            "start.epoch: say after which epoch the checkpoint was saved, e.g. start.epoch=900 "
            "(epochs then count on from 901; 0 for a state before any training)"
        )
    check_original_setting(cfg)
    if start.epoch is not None:
        _check_keep_epochs(cfg, start.epoch)


def _agree(start: StartConfig, key: str, given: Any, kept: Any) -> None:
    if given is None or given == {}:
        return
    if key == "setting":
        mismatch = any(Setting({k: kept.get(k)}) != Setting({k: v}) for k, v in given.items())
    else:
        mismatch = given != kept
    if mismatch:
        raise UserError(
            f"start.{key}: {given!r} but the kept state {start.from_run!r} says {kept!r}; "
            f"leave start.{key} out (a kept state knows it)"
        )


def check_original_setting(cfg: Any) -> None:
    """The original setting (start.setting) must be among the grid's settings: continuing it from
    the checkpoint is the sweep's baseline."""
    original = cfg.start.setting
    if not original:
        return
    axes = cfg.grid.axes()
    for axis, value in original.items():
        if axis not in axes:
            raise UserError(
                f"start.setting: {axis} is not an axis of the grid (axes: {', '.join(axes)}); "
                f"name the original setting by the grid's axes, e.g. start.setting='{{lr:0.01,clip:null}}'"
            )
        if Setting({axis: value}) not in [Setting({axis: v}) for v in axes[axis]]:
            shown = [value_label(v) for v in axes[axis]]
            key = f"grid.{axis}"
            listed = ",".join("null" if s == "none" else s for s in [*shown, value_label(value)])
            raise UserError(
                f"start.setting: the original setting {setting_label(original)} is not in the grid "
                f"({key}: {', '.join(shown)}); continuing it from the checkpoint is the sweep's baseline: "
                f"add it, e.g. {key}='[{listed}]'"
            )


def _check_keep_epochs(cfg: Any, start_epoch: int) -> None:
    last = start_epoch + cfg.epochs
    outside = [e for e in cfg.checkpoint.keep_epochs if not start_epoch < e <= last]
    if outside:
        raise rule_error(
            "checkpoint.keep_epochs",
            f"every kept epoch must be one the sweep trains ({start_epoch + 1} to {last})",
            outside,
            f"e.g. checkpoint.keep_epochs='[{last}]'",
        )


def original_settings(
    start: dict[str, Any], settings: list[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The grid settings that continue the original one (those equal to it on every axis it names)."""
    original = start.get("setting") or {}
    if not original:
        return []
    return [
        s
        for s in settings
        if all(Setting({a: s.get(a)}) == Setting({a: v}) for a, v in original.items())
    ]


__all__ = [
    "ATTR_START",
    "BASE_AXES",
    "KeepConfig",
    "StartConfig",
    "check_start_file",
    "file_sha256",
    "find_kept",
    "kept_name",
    "kept_paths",
    "start_part",
]


def incomparable_start(study: str, old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Why a study and a config that start from different places are not comparable, in one line
    (None when their starts agree): `old` and `new` are comparable parts (`start_part`)."""
    keys = ("start.sha256", "start.epoch", "start.optimizer")
    if all(old.get(k) == new.get(k) for k in keys):
        return None
    fix = f"start a new study (study.name={study}-2)"

    def where(part: dict[str, Any]) -> str:
        if "start.sha256" not in part:
            return "from scratch"
        return f"from a checkpoint (sha256 {str(part['start.sha256'])[:12]}..., epoch {part.get('start.epoch')})"

    if old.get("start.sha256") != new.get("start.sha256"):
        back = (
            "drop start.*" if "start.sha256" not in old else "give the checkpoint it started from"
        )
        return (
            f"start.checkpoint: study {study!r} trained every run {where(old)}, this config {where(new)}, "
            f"so their results would not be comparable; {fix}, or {back}"
        )
    key = next(k for k in keys if old.get(k) != new.get(k))
    return (
        f"{key}: study {study!r} was run with {key}={old.get(key)}, this config has {new.get(key)}, so "
        f"their results would not be comparable; {fix}, or set {key}={old.get(key)}"
    )
