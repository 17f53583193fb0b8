"""Hydra composition: the configs shipped in the package, plus a user's config folder.

Usage::

    cfg = load_config(["task=adding", "grid.lr=[0.01,0.1]"])            # compose + type + check
    cfg = load_config(["model=seq2seq"], config_dir="conf")              # with the user's folder

The built-in configs are the package `sweep.conf` (the repository's top-level configs/ folder,
mapped into the package when it is installed). A user's folder (`--config-dir`) comes first in
Hydra's search path: its files add options to the built-in groups, and a file with a built-in's
name (or a config.yaml) replaces it.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sweep.config.convert import config_from_dict
from sweep.config.schema import Config, register
from sweep.config.translate import one_line, translate_hydra, translate_omegaconf
from sweep.core.errors import UserError

CONFIG_MODULE = "sweep.conf"
GROUPS = ("task", "trainer", "model", "optimizer", "schedule", "grid", "detect")


def builtin_dir() -> Any:
    """The built-in config folder (a Traversable: a real folder, or one inside a wheel)."""
    return importlib.resources.files(CONFIG_MODULE)


def check_config_dir(config_dir: str | None) -> Path | None:
    """The user's config folder as an absolute path; a one-line error when it is not a folder."""
    if config_dir is None:
        return None
    path = Path(config_dir).expanduser().resolve()
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise UserError(
            f"--config-dir: {config_dir} {what}; give a folder of config groups, e.g. --config-dir conf "
            f"with conf/model/NAME.yaml"
        )
    return path


def group_options(group: str, config_dir: str | None = None) -> list[str]:
    """The options of a config group: the built-in YAML files and the user's."""
    names: set[str] = set()
    folder = builtin_dir() / group
    if folder.is_dir():
        names |= {p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")}
    user = check_config_dir(config_dir)
    if user is not None and (user / group).is_dir():
        names |= {p.stem for p in (user / group).glob("*.yaml")}
    return sorted(names)


def compose(overrides: list[str], config_dir: str | None = None) -> Any:
    """Compose the configs with Hydra's compose API; Hydra's errors become one-line UserErrors."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    user = check_config_dir(config_dir)
    overrides = [quote_free_text(ov) for ov in overrides]
    for ov in overrides:
        name = ov.split("=", 1)[0].lstrip("+~")
        if "=" in ov and name in GROUPS:
            choice = ov.split("=", 1)[1]
            options = group_options(name, config_dir)
            if choice not in options:
                raise UserError(
                    f"{name}={choice}: unknown {name}; valid {name}s: {', '.join(options)}"
                )
    for ov in overrides:  # one at a time, so that a syntax error names its override
        check_syntax(ov)
    register()
    try:
        if user is None:
            init = initialize_config_module(
                config_module=CONFIG_MODULE, version_base="1.3", job_name="sweep"
            )
        else:
            init = _user_first(user)
        with init:
            return hydra_compose(config_name="config", overrides=list(overrides))
    except MissingConfigException as e:
        raise UserError(one_line(str(e))) from None
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise translate_hydra(e, list(overrides)) from None


@contextmanager
def _user_first(user: Path) -> Iterator[None]:
    """Hydra initialised with the search path: the user's folder, then the built-in configs.

    Hydra's compose API puts extra folders after the primary config module (a user's file could
    then add options but never replace a built-in); Hydra 1.3's own `--config-dir` builds its
    search path with these calls, which let the user's folder come first.
    """
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra

    search_path = create_config_search_path(f"file://{user}")
    search_path.prepend(
        provider="lrsweep", path=f"pkg://{CONFIG_MODULE}", anchor=SearchPathQuery(provider="schema")
    )
    GlobalHydra.instance().clear()
    Hydra.create_main_hydra2(task_name="sweep", config_search_path=search_path)
    try:
        yield
    finally:
        GlobalHydra.instance().clear()


# Keys whose value is free text (a shell command line with spaces, braces and quotes): the value
# arrives as the shell left it, and is quoted here for Hydra's override grammar.
FREE_TEXT_KEYS = ("trainer.command",)
# Keys that take a list of names: `task.feature_columns=f1,f2` means the list [f1,f2] (Hydra would
# read a bare comma list as a multirun sweep and refuse it).
NAME_LIST_KEYS = ("task.feature_columns", "task.label_columns")
# Mappings a user fills in entry by entry: `trainer.columns.val_acc=my_accuracy` adds the entry
# (Hydra would want a leading + for a key its config does not have yet).
MAPPING_PREFIXES = ("trainer.columns.",)


def quote_free_text(override: str) -> str:
    """`trainer.command=python train.py --lr {lr}` -> the same with its value quoted for Hydra
    (quotes, `${` and backslashes before a quote escaped), unless it is quoted already."""
    import re

    key, sep, value = override.partition("=")
    if sep and key.startswith(MAPPING_PREFIXES):  # a new entry of a mapping key: add or replace it
        return f"++{override}"
    if sep and key.lstrip("+~") in NAME_LIST_KEYS and "," in value and value[:1] not in "[('\"":
        return f"{key}=[{value}]"
    if not sep or key.lstrip("+~") not in FREE_TEXT_KEYS:
        return override
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return override
    value = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)
    value = value.replace("'", "\\'").replace("${", "\\${")
    return f"{key}='{value}'"


def check_syntax(override: str) -> None:
    """Raise a UserError naming `override` when Hydra's override grammar cannot parse it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    key = override.split("=", 1)[0].lstrip("+~")
    if not key:
        raise UserError(f"{override!r}: no key before '='; write key=value, e.g. seeds=3")
    try:
        OverridesParser.create().parse_overrides([override])
    except HydraException as e:
        detail = one_line(str(e).split("See https://", 1)[0])
        detail = detail.replace(f"Error parsing override {override!r} ", "")
        if detail.startswith("LexerNoViableAltException"):
            detail = "a character the override syntax does not allow, e.g. < > ( ) { } or a space"
        raise UserError(
            f"{key}: cannot parse the override {override!r} ({detail}); write key=value, lists as "
            f"key=[a,b], and quote a value with special characters for Hydra: \"{key}='...'\""
        ) from None


def resolve(composed: Any) -> dict[str, Any]:
    """The composed DictConfig as a plain dict with interpolations resolved."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(composed, resolve=True)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        raise translate_omegaconf(e) from None


def load_config(overrides: list[str], config_dir: str | None = None) -> Config:
    """Compose, type and check: the single entry point used by every subcommand."""
    return config_from_dict(resolve(compose(overrides, config_dir)))
