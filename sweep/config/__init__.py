"""Configuration: Hydra composes the configs shipped in the package (and a user's folder), the
schema types them, each class checks its own rules, and downstream code receives a `Config`.

Usage::

    cfg = load_config(["task=adding", "grid.lr=[0.01,0.1]"])   # compose + type + check
    cfg.grid.settings()                                         # every grid setting, as dicts

Every problem raises :class:`~sweep.core.errors.UserError` with a one-line message that names the
key, the rule and the value.

Modules: `schema` and `tasks` (the dataclasses and their rules), `compose` (Hydra), `convert`
(mapping -> Config, grid axes), `translate` (Hydra/OmegaConf errors -> one line), `identity`
(what makes two configs' results comparable).
"""

from sweep.config.compose import GROUPS, compose, group_options, load_config, resolve
from sweep.config.convert import apply_overrides, config_from_dict, user_set_keys
from sweep.config.identity import EXECUTION_KEYS, comparable_part, config_fingerprint
from sweep.config.optimizers import (
    AdamConfig,
    AdamWConfig,
    ConstantSchedule,
    CosineSchedule,
    OneCycleSchedule,
    RMSpropConfig,
    SGDConfig,
    WarmupSchedule,
)
from sweep.config.schema import (
    DETECT_MEANINGS,
    Config,
    DetectConfig,
    GridConfig,
    ModelConfig,
    StudyConfig,
)
from sweep.config.tasks import (
    AddingTask,
    DigitsTask,
    EchoTask,
    FileTask,
    TemporalOrderTask,
    TextTask,
    VectorSumTask,
)

__all__ = [
    "GROUPS",
    "compose",
    "group_options",
    "load_config",
    "resolve",
    "apply_overrides",
    "config_from_dict",
    "user_set_keys",
    "EXECUTION_KEYS",
    "comparable_part",
    "config_fingerprint",
    "DETECT_MEANINGS",
    "AdamConfig",
    "AdamWConfig",
    "Config",
    "ConstantSchedule",
    "CosineSchedule",
    "DetectConfig",
    "GridConfig",
    "ModelConfig",
    "OneCycleSchedule",
    "RMSpropConfig",
    "SGDConfig",
    "StudyConfig",
    "WarmupSchedule",
    "AddingTask",
    "DigitsTask",
    "EchoTask",
    "FileTask",
    "TemporalOrderTask",
    "TextTask",
    "VectorSumTask",
]
