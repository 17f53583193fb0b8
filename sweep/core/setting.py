"""One grid setting: its identity and its label, the same everywhere.

Usage::

    s = Setting({"lr": 0.3, "clip": None, "batch_size": 32})
    s.key                        # '{"batch_size": 32, "clip": null, "lr": 0.3}': trials, checkpoints
    s.values(["lr", "clip"])     # (0.3, None): the row key of tables and figures
    s.label()                    # "lr=0.3, clip none, batch size 32"
    Setting.of(row, axes)        # from a runs/summary row (NaN or pd.NA read as "absent")

`None` is the one spelling of "absent" (no clipping): NaN from a table and None from a config
are the same setting.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sweep.core.values import normalize

BASE_AXES = ("lr", "clip", "batch_size")  # every grid has them; other axes are dotted config keys


class Setting(Mapping[str, Any]):
    """An ordered mapping axis -> value, hashable and equal by content."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = {str(k): normalize(v) for k, v in values.items()}

    @classmethod
    def of(cls, row: Any, axes: Sequence[str]) -> Setting:
        """The setting of a table row (a dict or a pandas Series) over `axes`."""
        return cls({a: row[a] for a in axes})

    def __getitem__(self, axis: str) -> Any:
        return self._values[axis]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Setting):
            return self.key == other.key
        return isinstance(other, Mapping) and self.key == Setting(other).key

    def __repr__(self) -> str:
        return f"Setting({self._values!r})"

    @property
    def key(self) -> str:
        """Canonical text: the identity stored with trials and naming checkpoints."""
        return json.dumps(self._values, sort_keys=True)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def values(self, axes: Sequence[str] | None = None) -> tuple[Any, ...]:  # type: ignore[override]
        """The values over `axes` (default: its own axes, in order): a row key of the tables."""
        return tuple(self._values.get(a) for a in (axes if axes is not None else self._values))

    def extra(self) -> dict[str, Any]:
        """The axes beyond lr, clip and batch size (dotted config keys) and their values."""
        return {k: v for k, v in self._values.items() if k not in BASE_AXES}

    def label(self, axes: Sequence[str] | None = None) -> str:
        return setting_label(self._values, axes)


# --------------------------------------------------------------------------- labels


def value_label(value: Any) -> str:
    """An axis value as the report prints it: 0.3, 1, none (no clipping / absent)."""
    value = normalize(value)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def slice_label(values: Mapping[str, Any]) -> str:
    """A slice in words: "batch size 32 without clipping", "... with clipping at 1"."""
    parts = []
    if "batch_size" in values:
        parts.append(f"batch size {value_label(values['batch_size'])}")
    if "clip" in values:
        clip = normalize(values["clip"])
        parts.append(
            "without clipping" if clip is None else f"with clipping at {value_label(clip)}"
        )
    extra = [f"{k}={value_label(v)}" for k, v in values.items() if k not in BASE_AXES]
    text = " ".join(parts)
    return ", ".join([text, *extra]) if text else ", ".join(extra)


def setting_label(setting: Mapping[str, Any], axes: Sequence[str] | None = None) -> str:
    """A setting in words: "lr=0.3, clip 1, batch size 32, model.hidden_size=64"."""
    axes = list(axes) if axes is not None else list(setting)
    parts = []
    for a in axes:
        if a not in setting:
            continue
        if a == "clip":
            parts.append(f"clip {value_label(setting[a])}")
        elif a == "batch_size":
            parts.append(f"batch size {value_label(setting[a])}")
        else:
            parts.append(f"{a}={value_label(setting[a])}")
    return ", ".join(parts)
