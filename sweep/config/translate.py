"""The one translator: Hydra's and OmegaConf's errors -> a one-line UserError.

Each message names the key, the rule and the value, and says how to fix it: "seeds: must be an
integer, got 'abc'; e.g. seeds=5 (the default)". Every message prefix of the README's
troubleshooting table comes from here or from a schema's `check`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any

from sweep.config.rules import default_fix, rule_error
from sweep.core.errors import UserError

# OmegaConf's node types -> the rule a value broke.
TYPE_RULES = {
    "Integer": "must be an integer",
    "Float": "must be a number",
    "Boolean": "must be true or false",
}
_CONVERSION = re.compile(
    r"Value '(?P<value>.*)' of type '(?P<type>\w+)' could not be converted to (?P<target>\w+)"
)


def one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


def _value(text: str, type_name: str) -> Any:
    """The value OmegaConf quotes, as the user gave it (1.5, True, 'abc')."""
    try:
        return {"float": float, "int": int, "bool": lambda v: v == "True"}.get(type_name, str)(text)
    except ValueError:
        return text


def translate_omegaconf(error: BaseException, choices: dict[str, str] | None = None) -> UserError:
    """An OmegaConf error raised while typing or merging a config, as one line."""
    from omegaconf.errors import (
        ConfigAttributeError,
        ConfigKeyError,
        InterpolationResolutionError,
        MissingMandatoryValue,
    )

    key = getattr(error, "full_key", None) or "config"
    if isinstance(error, MissingMandatoryValue):
        example = MISSING_EXAMPLES.get(key, f"{key}=VALUE")
        return UserError(f"{key}: needs a value (it has no default); e.g. {example}")
    reason = one_line(str(error)).split(" full_key:", 1)[0]
    conversion = _CONVERSION.search(reason)
    if conversion and conversion["target"] in TYPE_RULES:
        value = _value(conversion["value"], conversion["type"])
        return rule_error(
            key, TYPE_RULES[conversion["target"]], value, default_fix_of(key, choices)
        )
    if isinstance(error, (ConfigKeyError, ConfigAttributeError)) and reason.startswith("Key '"):
        return UserError(f"{key}: unknown config key; {suggest(key)}")
    if isinstance(error, InterpolationResolutionError):
        return UserError(
            f"{key}: {reason}; an interpolation ${{...}} must name an existing key, "
            f"see `sweep run --cfg job`"
        )
    return UserError(f"{key}: {reason}; see `sweep run --cfg job` for the form of {key}")


MISSING_EXAMPLES = {"trainer._target_": "trainer._target_=mytrain.fit (your module.function)"}


def translate_hydra(error: BaseException, overrides: list[str]) -> UserError:
    """A Hydra composition error, as one line (OmegaConf causes go through translate_omegaconf)."""
    from omegaconf.errors import OmegaConfBaseException

    text = str(error)
    cause = error.__cause__
    choices = group_choices(overrides)
    if "Could not override '" in text:
        key = text.split("Could not override '", 1)[1].split("'", 1)[0]
        full_key = getattr(cause, "full_key", None)  # model={a:1}: the unknown key is model.a
        key = full_key if isinstance(full_key, str) and full_key else key
        return UserError(f"{key}: unknown config key; {suggest(key)}")
    if text.startswith("Ambiguous value for argument '"):
        arg = text.split("'", 2)[1]
        key, value = arg.split("=", 1)
        return UserError(
            f"{key}: {value!r} is ambiguous (a comma list without brackets); write a list as {key}='[{value}]'"
        )
    if text.startswith("Could not append to config. An item is already at '"):
        key = text.split("'", 2)[1]
        return UserError(
            f"{key}: already in the config, so '+{key}' cannot add it; set it with {key}=VALUE "
            f"(a leading + only adds keys the config does not have)"
        )
    if text.startswith("Error merging override ") and cause is not None:
        arg = text[len("Error merging override ") :].strip()
        key = arg.lstrip("+~").split("=", 1)[0]
        if isinstance(cause, OmegaConfBaseException) and _CONVERSION.search(str(cause)):
            return translate_omegaconf(cause, choices)
        reason = one_line(str(cause)).split(" full_key:", 1)[0]
        return UserError(
            f"{key}: cannot set {arg!r} ({reason}); see `sweep run --cfg job` for the form of {key}"
        )
    if isinstance(error, OmegaConfBaseException):
        return translate_omegaconf(error, choices)
    return UserError(one_line(text))


# --------------------------------------------------------------------------- keys and defaults


DEFAULT_CHOICES = {
    "task": "digits",
    "trainer": "builtin",
    "model": "lstm",
    "optimizer": "sgd",
    "schedule": "constant",
}


def group_choices(overrides: list[str]) -> dict[str, str]:
    """The option of each schema group: from `group=option` overrides, else the default one."""
    choices = dict(DEFAULT_CHOICES)
    for ov in overrides:
        name, _, value = ov.lstrip("+~").partition("=")
        if name in choices and value:
            choices[name] = value
    return choices


def _schema_of(path: list[str], choices: dict[str, str] | None) -> tuple[Any, str]:
    """(dataclass, field name) that a dotted key lands in, or (None, '')."""
    from sweep.config.schema import GROUP_SCHEMAS, Config

    cls: Any = Config
    for i, part in enumerate(path[:-1]):
        if i == 0 and part in GROUP_SCHEMAS:
            option = (choices or DEFAULT_CHOICES).get(part, "")
            cls = GROUP_SCHEMAS[part].get(option)
            continue
        field = (
            next((f for f in dataclasses.fields(cls) if f.name == part), None)
            if dataclasses.is_dataclass(cls)
            else None
        )
        if field is None or field.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            return None, ""
        cls = type(field.default_factory())  # type: ignore[misc]
    return (cls, path[-1]) if dataclasses.is_dataclass(cls) else (None, "")


def default_fix_of(key: str, choices: dict[str, str] | None = None) -> str:
    """'e.g. KEY=DEFAULT (the default)' for a dotted key of the schema, else ''."""
    key = key.split("[", 1)[0]  # an element of a list: the list's key
    cls, name = _schema_of(key.split("."), choices)
    return default_fix(cls, name, key) if cls is not None else ""


def known_keys() -> list[str]:
    """Every dotted key of the schema (all options of every group), for "did you mean"."""
    from sweep.config.schema import GROUP_SCHEMAS, Config

    keys = [f.name for f in dataclasses.fields(Config)]
    for f in dataclasses.fields(Config):
        if f.name in GROUP_SCHEMAS:
            for schema in set(GROUP_SCHEMAS[f.name].values()):
                keys += [f"{f.name}.{g.name}" for g in dataclasses.fields(schema)]
        elif f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(
            f.default_factory()
        ):  # type: ignore[misc]
            keys += [f"{f.name}.{g.name}" for g in dataclasses.fields(f.default_factory())]  # type: ignore[misc]
    return sorted(set(keys))


def suggest(key: str) -> str:
    """'did you mean X?' from the schema's keys, else a pointer to --cfg job."""
    close = difflib.get_close_matches(key, known_keys(), n=1)
    if close and close[0] == key or key.split(".")[0] in ("model", "task", "trainer") and not close:
        # A key of another option of the group, or an argument of a user's own model, loader or
        # training function that its YAML does not list: Hydra adds a key with a leading +.
        return (
            f"to add it, write +{key}=VALUE (a leading + adds a key the config does not have yet)"
        )
    return f"did you mean {close[0]}?" if close else "see `sweep run --cfg job` for the valid keys"
