"""How a config class states its rules: `Checked.require(...)` raises the one-line UserError.

Every message names the key, the rule and the value, and says how to fix it: with the fix the
rule gives, or else with the key's default ("e.g. detect.drop=0.5 (the default)").
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sweep.core.errors import UserError


def shown(value: Any) -> str:
    """A value as the user writes it on the command line (null, true, 0.5)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def rule_error(key: str, rule: str, value: Any, fix: str = "") -> UserError:
    """`key: rule, got value; fix`."""
    return UserError(f"{key}: {rule}, got {value!r}" + (f"; {fix}" if fix else ""))


def default_fix(cls: Any, name: str, key: str) -> str:
    """'e.g. key=default (the default)' for a dataclass field with a plain default, its metadata's
    example where it has one, else ''."""
    field = (
        next((f for f in dataclasses.fields(cls) if f.name == name), None)
        if dataclasses.is_dataclass(cls)
        else None
    )
    if (
        field is not None and "example" in field.metadata
    ):  # a list or mapping: its default shows little
        return f"e.g. {key}={field.metadata['example']}"
    if field is None or field.default is dataclasses.MISSING:
        return ""
    return f"e.g. {key}={shown(field.default)} (the default)"


class Checked:
    """Mixin of the config dataclasses: each checks its own value rules in `check(prefix)`."""

    def check(self, prefix: str) -> None:  # pragma: no cover - every class overrides it
        """Raise UserError for the first rule a value breaks; `prefix` is the node's dotted path."""

    def require(self, ok: bool, prefix: str, name: str, rule: str, fix: str = "") -> None:
        if ok:
            return
        key = f"{prefix}.{name}" if prefix else name
        raise rule_error(key, rule, getattr(self, name), fix or default_fix(type(self), name, key))
