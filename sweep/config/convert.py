"""A composed or stored config (a plain mapping) -> a checked `Config`.

Usage::

    cfg = config_from_dict(data)            # types by OmegaConf, rules by each class's check()
    spec_cfg = apply_overrides(cfg, {"model.hidden_size": 128})   # one value of an extra axis

OmegaConf does the typing: each group node is merged onto its option's schema (chosen by its
`name`), the rest onto `Config`. Its errors become one-line UserErrors in `translate`. The grid
has rules of its own (lists or single values, any config key as an extra axis).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from pathlib import Path
from typing import Any

from sweep.config.rules import rule_error
from sweep.config.schema import GRID_EXAMPLES, GROUP_SCHEMAS, Config, GridConfig
from sweep.config.targets import TargetModel, TargetTask, is_target
from sweep.config.trainers import TargetTrainer
from sweep.config.translate import translate_omegaconf
from sweep.core.errors import UserError

GROUPS = tuple(GROUP_SCHEMAS)  # the nodes whose schema depends on the chosen option


def config_from_dict(data: dict[str, Any]) -> Config:
    """Convert and check a plain (resolved) config mapping; raises UserError on any problem."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    data = dict(data)
    known = [f.name for f in dataclasses.fields(Config)]
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = (
                f"did you mean {close[0]}?" if close else f"valid keys: {', '.join(sorted(known))}"
            )
            raise UserError(f"{key}: unknown config key; {hint}")
    nodes = {g: data.get(g, _ABSENT_GROUPS.get(g)) for g in GROUPS}
    targets = {
        g: node
        for g, node in nodes.items()
        if g in ("model", "task", "trainer") and is_target(node)
    }
    groups = {g: group_schema(g, node) for g, node in nodes.items() if g not in targets}
    grid = data.pop("grid", None)
    rest = {k: v for k, v in data.items() if k not in GROUPS}
    workers = rest.get("workers", "auto")
    if workers != "auto":
        rest["workers"] = _workers(workers)
    try:
        typed = OmegaConf.merge(OmegaConf.structured(Config), _literal(rest))
        for group, (schema, node) in groups.items():
            typed[group] = OmegaConf.merge(OmegaConf.structured(schema), _literal(node))
        for group, node in targets.items():  # users' own code: kept as a plain mapping
            typed[group] = node
        base = OmegaConf.to_container(typed)  # every key an extra grid axis may name
        cfg = OmegaConf.to_object(typed)
    except OmegaConfBaseException as e:
        raise translate_omegaconf(e) from None
    if "model" in targets:
        cfg.model = TargetModel.from_node(targets["model"])
    if "task" in targets:
        cfg.task = TargetTask.from_node(targets["task"], _typed)
    if "trainer" in targets:
        cfg.trainer = TargetTrainer.from_node(targets["trainer"], _typed)
    cfg.grid = grid_from_mapping(
        grid if grid is not None else Config().grid, base, free=not cfg.trainer.builtin
    )
    if cfg.study.name is None:
        cfg.study.name = default_study_name(cfg)
    cfg.check()
    # Each extra-axis value must be valid where it lands: apply every value once (a free axis of
    # a user's training is the user's parameter: no config key to check it against).
    for path, values in cfg.grid.extra:
        if path in cfg.grid.free:
            continue
        for value in values:
            apply_overrides(cfg, {path: value})
    return cfg


# Groups a stored config of an earlier lrsweep may lack, and what they were then.
_ABSENT_GROUPS = {"schedule": {"name": "constant"}, "trainer": {"name": "builtin"}}


def _literal(value: Any) -> Any:
    """Strings with `${` escaped: the mapping is resolved already (or stored), so a `${` left in it
    is text (a shell variable in a command line), never an interpolation to resolve again."""
    if isinstance(value, str):
        return value.replace("${", "\\${")
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v) for v in value]
    return value


def _typed(schema: type, options: dict[str, Any]) -> Any:
    """`options` typed by OmegaConf against `schema` (one-line errors)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), _literal(options)))
    except OmegaConfBaseException as e:
        raise translate_omegaconf(e) from None


def default_study_name(cfg: Config) -> str:
    """`<task>-<model>-<optimizer>`; a file or text task adds its data's name and a user's code
    its target's, so that two data sets or two models never share a study by default. A user's
    training names its own: `<script>-command` (train.py -> train-command), `<function>-function`."""
    if isinstance(cfg.trainer, TargetTrainer):
        return _folder_safe(f"{cfg.trainer.target.rsplit('.', 1)[-1]}-function")
    if not cfg.trainer.builtin:
        return _folder_safe(f"{command_label(cfg.trainer.command)}-command")
    task = cfg.task
    label = task.name
    if not isinstance(task, TargetTask) and getattr(task, "path", None):
        stem = Path(task.path).stem if task.name == "file" else Path(task.path).name
        label = f"{task.name}-{stem}" if stem else task.name
    return _folder_safe(f"{label}-{cfg.model.name}-{cfg.optimizer.name}")


def _folder_safe(name: str) -> str:
    return "".join(ch if ch.isprintable() and ch not in "/\\" else "_" for ch in name)


def command_label(command: str) -> str:
    """What a command line runs, in a word: its first script's name (python train.py -> train),
    else its program's (./train.sh -> train.sh, mytrain --lr 1 -> mytrain)."""
    import shlex

    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    words = [
        w for w in words if "=" not in w.split("/")[0] or w.startswith(("-", "/", "."))
    ]  # FOO=1 env words
    scripts = [w for w in words if w.endswith((".py", ".sh"))]
    if scripts:
        return Path(scripts[0]).stem if scripts[0].endswith(".py") else Path(scripts[0]).name
    return Path(words[0]).name if words else "command"


def group_schema(group: str, node: Any) -> tuple[type, dict[str, Any]]:
    """(schema class, node) of a group node, chosen by its `name`."""
    registry = GROUP_SCHEMAS[group]
    if not isinstance(node, dict) or "name" not in node:
        raise rule_error(group, "must be a config group with a name", node, f"use {group}=NAME")
    name = node["name"]
    if name not in registry:
        raise UserError(
            f"{group}.name: unknown {group} {name!r}; valid {group}s: {', '.join(sorted(registry))}"
        )
    return registry[name], node


def _workers(value: Any) -> int:
    try:
        number = int(value) if isinstance(value, str) else value
        if isinstance(number, bool) or not isinstance(number, int):
            raise ValueError
        return number
    except ValueError:
        raise rule_error(
            "workers",
            "must be a whole number >= 1 or auto",
            value,
            "e.g. workers=2 or workers=auto",
        ) from None


# --------------------------------------------------------------------------- the grid


def grid_from_mapping(data: Any, base: dict[str, Any], free: bool = False) -> GridConfig:
    """The grid node -> GridConfig: lr, clip, batch_size (a single value is a one-point axis),
    and every other leaf an extra axis that must name an existing config key of `base`.

    `free` (a user's own training): an extra axis that names no config key is a parameter of the
    user's script or function ({dropout} in a command), passed to each run by its key."""
    if not isinstance(data, dict):
        raise rule_error("grid", "must be a mapping of axis -> list of values", data)
    flat = flatten(data)
    lr_auto = (
        flat.get("lr") == "auto"
    )  # the learning rates come from a range test when the sweep starts
    if lr_auto:
        flat.pop("lr")
    lr = () if lr_auto else _axis(flat, "lr", _number)
    clip = _axis(flat, "clip", lambda v, key: None if v is None else _number(v, key))
    batch = _axis(flat, "batch_size", _integer)
    extra, free_axes = [], []
    for path, values in flat.items():
        target = lookup(base, path)
        if free and target is MISSING and path.split(".")[0] not in base:
            free_axes.append(path)
            extra.append((path, tuple(_as_list(values, f"grid.{path}"))))
            continue
        if target is MISSING or isinstance(target, dict) or path.split(".")[0] in ("grid", "study"):
            raise UserError(
                f"grid.{path}: not a config key that can be swept; an extra grid axis must name an existing "
                f"key, e.g. +grid.model.hidden_size='[32,128]' (or, with schedule=warmup, +grid.schedule.warmup_steps)"
            )
        if isinstance(
            target, list
        ):  # a list-valued key (optimizer.group_lr_mult): each value a list
            extra.append(
                (
                    path,
                    tuple(
                        _list_value(v, f"grid.{path}") for v in _list_axis(values, f"grid.{path}")
                    ),
                )
            )
            continue
        extra.append((path, tuple(_as_list(values, f"grid.{path}"))))
    return GridConfig(
        lr=lr,
        clip=clip,
        batch_size=batch,
        extra=tuple(extra),
        lr_auto=lr_auto,
        free=tuple(free_axes),
    )


def _axis(flat: dict[str, Any], axis: str, convert: Any) -> tuple[Any, ...]:
    key = f"grid.{axis}"
    values = _as_list(flat.pop(axis, list(getattr(GridConfig(), axis))), key)
    try:
        return tuple(convert(v, key) for v in values)
    except UserError as e:
        raise UserError(f"{e}; e.g. {GRID_EXAMPLES[key]}") from None


def _list_axis(values: Any, key: str) -> list[Any]:
    example = f"+{key}='[[0.11,0.33,1.0],[1.0,1.0,1.0]]'"
    if isinstance(
        values, (list, tuple)
    ):  # a stored grid (a worker's config) holds each value as JSON text
        values = [_parsed(v) for v in values]
    if (
        not isinstance(values, (list, tuple))
        or not values
        or not all(isinstance(v, (list, tuple)) for v in values)
    ):
        raise rule_error(
            key,
            "must be a list of lists (each value of this axis is itself a list)",
            values,
            f"e.g. {example}",
        )
    return list(values)


def _parsed(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _list_value(value: Any, key: str) -> str:
    """One value of a list-valued axis, as the setting stores it: canonical JSON text of its
    numbers ("[0.11, 0.33, 1.0]"), one spelling per value, hashable and printable in tables."""
    numbers = [_number(v, key) for v in value]
    return json.dumps(numbers)


def _as_list(value: Any, key: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            raise rule_error(
                key,
                "must list at least one value",
                list(value),
                "e.g. " + GRID_EXAMPLES.get(key, f"{key}='[VALUE1,VALUE2]'"),
            )
        return list(value)
    return [value]  # a single value is a one-point axis


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise rule_error(key, "must be a number", value)
    try:
        value = float(value)
    except OverflowError:  # an integer with hundreds of digits
        raise rule_error(key, "must be a finite number", value) from None
    if not math.isfinite(value):
        raise rule_error(key, "must be a finite number", value)
    return value


def _integer(value: Any, key: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not value.is_integer())
    ):
        raise rule_error(key, "must be an integer", value)
    return int(value)


# --------------------------------------------------------------------------- dotted keys


MISSING = object()


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def lookup(d: dict[str, Any], path: str) -> Any:
    node: Any = d
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """`cfg` with dotted-key overrides applied (one value of each extra grid axis), converted and
    checked; the grid itself is not re-derived."""
    if not overrides:
        return cfg
    data = cfg.to_dict()
    for path, value in overrides.items():
        node = data
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[part]
        if isinstance(node.get(parts[-1]), list) and isinstance(value, str):
            value = json.loads(value)  # a list-valued axis stores its values as JSON text
        node[parts[-1]] = value
    data["grid"] = {}
    out = config_from_dict(data)
    return dataclasses.replace(out, grid=cfg.grid)


def user_set_keys(overrides: list[str]) -> set[str]:
    """The dotted keys a user set explicitly on the command line."""
    return {ov.split("=", 1)[0].lstrip("+~") for ov in overrides if "=" in ov}
