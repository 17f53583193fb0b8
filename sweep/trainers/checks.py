"""Checks of a user's training before anything is written: the command's placeholders and
program, the function's import and signature (and the hash of its syntax tree, which makes
changed code incomparable with stored results; comments and docstrings do not count).

Usage (by the launcher)::

    warnings = check_trainer(cfg)   # raises UserError; sets cfg.trainer.source for a function
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import os
import shlex
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sweep.config import Config
from sweep.config.trainers import CommandTrainer, TargetTrainer
from sweep.core.errors import UserError
from sweep.core.imports import import_target
from sweep.core.setting import BASE_AXES
from sweep.trainers.placeholders import (
    RUN_NAMES,
    run_values,
    start_problem,
    unknown_placeholders,
    unmentioned_axes,
    value_text,
)

KEY = "trainer._target_"


def check_trainer(cfg: Config) -> list[str]:
    """Raise UserError for a command or function that cannot run; return warnings (one line each)."""
    if isinstance(cfg.trainer, TargetTrainer):
        fn = load_function(cfg.trainer.target)
        takes = check_signature(fn, cfg.trainer)
        from sweep.trainers.function import check_start_argument

        check_start_argument(cfg, takes, cfg.trainer.target)
        source = source_hash(fn)
        if cfg.trainer.source is not None and cfg.trainer.source != source:
            raise UserError(
                f"{KEY}: the code of {cfg.trainer.target} changed since this sweep was configured "
                f"(source hash {cfg.trainer.source} -> {source}); run `sweep run` again with the new code"
            )
        cfg.trainer.source = source
        return []
    if isinstance(cfg.trainer, CommandTrainer):
        return check_command(cfg)
    return []


def load_function(target: str) -> Callable[..., Any]:
    fn = import_target(target, KEY)
    if not callable(fn):
        raise UserError(
            f"{KEY}: {target} is a {type(fn).__name__}, not a function; name your training function, "
            f"e.g. trainer._target_=mytrain.fit"
        )
    return fn


def check_signature(fn: Callable[..., Any], trainer: TargetTrainer) -> list[str]:
    from sweep.trainers.function import call_arguments

    try:
        return call_arguments(fn, dict(trainer.kwargs))
    except (TypeError, ValueError) as e:
        raise UserError(
            f"{KEY}: {trainer.target} has the wrong signature: {e}; write it as "
            f"def fit(setting, seed, epochs, report, checkpoint_dir, ...)"
        ) from None


def source_hash(fn: Callable[..., Any]) -> str:
    """A short hash of what the function does: its syntax tree, so that comments, docstrings,
    blank lines and layout do not count (adding a comment in a notebook keeps the study's
    results comparable). Without source to read, the hash of its qualified name."""
    try:
        text = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        text = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
        return hashlib.sha1(text.encode()).hexdigest()[:16]
    try:
        tree = ast.parse(text)
    except SyntaxError:  # e.g. a lambda inside a longer expression: its lines, as they are
        return hashlib.sha1(text.encode()).hexdigest()[:16]
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]  # a docstring says nothing about behaviour
    return hashlib.sha1(ast.dump(tree, include_attributes=False).encode()).hexdigest()[:16]


def placeholder_names(cfg: Config) -> list[str]:
    """Every placeholder a command of this grid may use."""
    setting = (
        {axis: values[0] for axis, values in cfg.grid.axes().items()}
        if cfg.grid.lr
        else {axis: None for axis in cfg.grid.axes()}
    )
    here = Path(".")
    return list(run_values(setting, 0, cfg.epochs, here, here, here))


def check_command(cfg: Config) -> list[str]:
    template = cfg.trainer.command
    names = placeholder_names(cfg)
    unknown = unknown_placeholders(template, names)
    if unknown:
        listed = ", ".join(
            "{" + n + "}" for n in [*BASE_AXES, *RUN_NAMES, *(p for p, _ in cfg.grid.extra)]
        )
        raise UserError(
            f"trainer.command: unknown placeholder {{{unknown[0]}}}; the placeholders are {listed} "
            f"(write {{{{ and }}}} for literal braces)"
        )
    problem = start_problem(template, cfg.start.active)  # {init_checkpoint}, {start_epoch}
    if problem:
        raise UserError(problem)
    try:
        words = shlex.split(template)
    except ValueError as e:
        raise UserError(
            f"trainer.command: cannot read the command line ({e}); quote it as a shell would"
        ) from None
    program = next((w for w in words if not _is_assignment(w)), None)
    if program is None:
        raise UserError(
            "trainer.command: names no program to run; e.g. trainer.command='python train.py --lr {lr}'"
        )
    if "{" not in program and not _runnable(program):
        raise UserError(
            f"trainer.command: cannot start {program!r}: no such program on PATH or file here "
            f"({os.getcwd()}); check the spelling, or give its full path"
        )
    script = _python_script(words, program)
    if script is not None and "{" not in script and not Path(script).is_file():
        raise UserError(
            f"trainer.command: the script {script} does not exist (looked in {os.getcwd()}); run sweep "
            f"from the folder that holds it, or give its full path"
        )
    for axis in unmentioned_axes(template, cfg.grid.axes()):
        values = ", ".join(value_text(v) for v in cfg.grid.axes()[axis])
        one = "null" if axis == "clip" else value_text(cfg.grid.axes()[axis][0])
        raise UserError(
            f"trainer.command: grid.{axis} has {len(cfg.grid.axes()[axis])} values ({values}), but the "
            f"command has no {{{axis}}}, so each would run the same command line; pass it (e.g. "
            f"--{axis} {{{axis}}}{', the word none for no clipping' if axis == 'clip' else ''}), "
            f"or sweep one value (grid.{axis}='[{one}]')"
        )
    used = {m for m in names if "{" + m + "}" in template}
    return [
        f"grid axis {axis} is not in trainer.command; the command can read it from ${_env_name(axis)}"
        for axis, _ in cfg.grid.extra
        if axis not in used and axis.rsplit(".", 1)[-1] not in used
    ]


def _is_assignment(word: str) -> bool:
    name, sep, _ = word.partition("=")
    return bool(sep) and name.isidentifier()


def _runnable(program: str) -> bool:
    if "/" in program:
        return os.access(program, os.X_OK) and Path(program).is_file()
    return shutil.which(program) is not None or program in (
        "cd",
        "exec",
        "export",
        "set",
        ".",
        "source",
    )


def _python_script(words: list[str], program: str) -> Any:
    """The script a `python[3] [-u ...] script.py` command runs, if it runs one."""
    if not Path(program).name.startswith("python"):
        return None
    rest = words[words.index(program) + 1 :]
    for _i, w in enumerate(rest):
        if w in ("-m", "-c"):
            return None
        if not w.startswith("-"):
            return w if w.endswith(".py") else None
    return None


def _env_name(axis: str) -> str:
    import re

    return "LRSWEEP_" + re.sub(r"[^A-Za-z0-9]", "_", axis).upper()
