"""The resolved spec of one setting: everything training needs, built once per trial.

Usage::

    spec = SettingSpec.build(cfg, setting, seeds=[0, 1, 2])   # extra axes applied and checked here
    records = train_spec(task, spec, device)

The extra grid axes of a setting (e.g. `model.hidden_size`) are applied to the config once, when
the spec is built; the trainers read plain fields and never see the whole config again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sweep.config import Config, apply_overrides, config_fingerprint
from sweep.core.setting import Setting


@dataclass(frozen=True)
class SettingSpec:
    """One setting of a sweep, resolved: its seeds, model, optimizer, schedule and numbers."""

    setting: Setting
    seeds: tuple[int, ...]
    lr: float
    clip: float | None
    batch_size: int
    epochs: int
    model: Any  # ModelConfig
    optimizer: Any  # an OptimizerConfig
    schedule: Any  # a ScheduleConfig
    packing: str  # auto | on | off
    fingerprint: str  # the comparable config (checkpoints of another config are never used)
    signals: Any = None  # a SignalsConfig (None: its defaults): what is measured beside training

    @classmethod
    def build(cls, cfg: Config, setting: dict[str, Any], seeds: Sequence[int]) -> SettingSpec:
        setting = Setting(setting)
        run_cfg = apply_overrides(cfg, setting.extra())
        return cls(
            setting=setting,
            seeds=tuple(int(s) for s in seeds),
            lr=float(setting["lr"]),
            clip=None if setting.get("clip") is None else float(setting["clip"]),
            batch_size=int(setting["batch_size"]),
            epochs=run_cfg.epochs,
            model=run_cfg.model,
            optimizer=run_cfg.optimizer,
            schedule=run_cfg.schedule,
            packing=run_cfg.packing,
            fingerprint=config_fingerprint(cfg),
            signals=getattr(run_cfg, "signals", None),
        )
