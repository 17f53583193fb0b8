"""A command template and the values of one run: `{lr}` -> `0.1`, and the same as environment
variables (`LRSWEEP_LR=0.1`).

Usage::

    values = run_values(setting, seed=3, epochs=20, metrics=..., run_dir=..., checkpoint_dir=...)
    render("python train.py --lr {lr} --clipnorm {clip} --log {metrics}", values)
    run_environment(values)              # {"LRSWEEP_LR": "0.1", "LRSWEEP_CLIP": "none", ...}
    start_problem(template, starts=True) # "... never passes {init_checkpoint} ..." or None
    unknown_placeholders(template, names) # ["lrr"] for "--lr {lrr}"
    unmentioned_axes(template, grid_axes) # ["clip"]: two clip values, no {clip} in the command

Placeholders are `{name}` with a name of letters, digits, `_` and `.` (an extra grid axis by its
key: `{dropout}`, `{model.hidden_size}`; the last part alone also works when it is unique).
`{{` and `}}` are literal braces, and a shell's `${VAR}` is left alone.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweep.core.setting import BASE_AXES

PLACEHOLDER = re.compile(r"\{\{|\}\}|(?<!\$)\{([A-Za-z_][A-Za-z0-9_.]*)\}")
RUN_NAMES = (
    "seed",
    "epochs",
    "metrics",
    "run_dir",
    "checkpoint_dir",
    "init_checkpoint",  # start.checkpoint: the saved state every run starts from
    "start_epoch",  # the epoch it was saved after (0 from scratch)
)
START_NAMES = ("init_checkpoint", "start_epoch")
ENV_PREFIX = "LRSWEEP_"


def value_text(value: Any) -> str:
    """A value as a command line reads it: shortest exact float (0.1, 3e-05), `none` for absent."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def run_values(
    setting: Mapping[str, Any],
    seed: int,
    epochs: int,
    metrics: Path,
    run_dir: Path,
    checkpoint_dir: Path,
    init_checkpoint: str | None = None,
    start_epoch: int = 0,
) -> dict[str, str]:
    """Every placeholder's text for one run (axes by key, also by last part where unique);
    `init_checkpoint` is `none` for a run from scratch."""
    values = {key: value_text(v) for key, v in setting.items()}
    last_parts: dict[str, list[str]] = {}
    for key in setting:
        if key not in BASE_AXES and "." in key:
            last_parts.setdefault(key.rsplit(".", 1)[1], []).append(key)
    for short, keys in last_parts.items():
        if len(keys) == 1 and short not in values:
            values[short] = values[keys[0]]
    values.update(
        seed=str(int(seed)),
        epochs=str(int(epochs)),
        metrics=str(metrics),
        run_dir=str(run_dir),
        checkpoint_dir=str(checkpoint_dir),
        init_checkpoint=str(init_checkpoint) if init_checkpoint else "none",
        start_epoch=str(int(start_epoch)),
    )
    return values


def unknown_placeholders(template: str, names: Any) -> list[str]:
    """The placeholders of `template` that are not among `names`, in order of appearance."""
    known = set(names)
    out = []
    for m in PLACEHOLDER.finditer(template):
        name = m.group(1)
        if name is not None and name not in known and name not in out:
            out.append(name)
    return out


def unmentioned_axes(template: str, axes: Mapping[str, Any]) -> list[str]:
    """lrsweep's own axes (lr, clip, batch_size) that take more than one value in `axes` but that
    `template` mentions neither as a placeholder ({clip}) nor as its environment variable
    ($LRSWEEP_CLIP): every setting along such an axis would run the same command line. (A
    user's extra axes are only noted: the script may read them from the environment.)"""
    used = {m.group(1) for m in PLACEHOLDER.finditer(template) if m.group(1)}
    out = []
    for axis in BASE_AXES:
        if len(set(map(value_text, axes.get(axis, ())))) < 2 or axis in used:
            continue
        env = ENV_PREFIX + axis.upper()
        if not re.search(rf"\$(\{{{env}\}}|{env}(?![A-Za-z0-9_]))", template):
            out.append(axis)
    return out


def start_problem(template: str, starts: bool) -> str | None:
    """What is wrong with `template`'s use of the start placeholders, in one line (None: nothing):
    {init_checkpoint} or {start_epoch} without start.checkpoint, or a start.checkpoint that the
    command never passes on (every run would train from scratch)."""
    used = [n for n in START_NAMES if _mentions(template, n)]
    if used and not starts:
        names = " and ".join("{" + n + "}" for n in used)
        return (
            f"trainer.command: uses {names}, but no start.checkpoint is given; set "
            f"start.checkpoint=PATH start.epoch=N (the saved state every run starts from), or take "
            f"{names} out of the command"
        )
    if starts and not _mentions(template, "init_checkpoint"):
        return (
            "trainer.command: start.checkpoint is set, but the command never passes {init_checkpoint}, "
            "so every run would train from scratch; pass it and the epoch, e.g. "
            "--init {init_checkpoint} --initial-epoch {start_epoch} (or read $LRSWEEP_INIT_CHECKPOINT)"
        )
    return None


def _mentions(template: str, name: str) -> bool:
    """`template` uses placeholder {name} or its environment variable $LRSWEEP_<NAME>."""
    used = {m.group(1) for m in PLACEHOLDER.finditer(template) if m.group(1)}
    env = ENV_PREFIX + name.upper()
    return name in used or bool(re.search(rf"\$(\{{{env}\}}|{env}(?![A-Za-z0-9_]))", template))


def render(template: str, values: Mapping[str, str]) -> str:
    """The command line of one run: each placeholder replaced by its value, quoted for the shell
    when it needs it (a path with a space)."""

    def replace(m: re.Match) -> str:
        if m.group(0) in ("{{", "}}"):
            return m.group(0)[0]
        return shlex.quote(values[m.group(1)])

    return PLACEHOLDER.sub(replace, template)


def run_environment(values: Mapping[str, str], setting: Mapping[str, Any]) -> dict[str, str]:
    """The same values for the process environment: LRSWEEP_LR, LRSWEEP_CLIP, LRSWEEP_SEED, ...,
    LRSWEEP_METRICS, LRSWEEP_RUN_DIR, LRSWEEP_CHECKPOINT_DIR, each extra axis by its key in capitals
    (model.hidden_size -> LRSWEEP_MODEL_HIDDEN_SIZE), and LRSWEEP_SETTING (the setting as JSON)."""
    env = {ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", k).upper(): v for k, v in values.items()}
    env[ENV_PREFIX + "SETTING"] = json.dumps(dict(setting), sort_keys=True)
    return env
