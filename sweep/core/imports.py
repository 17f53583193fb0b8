"""Users' own code named by a dotted path (`_target_: mynets.Tagger`): imported from where sweep runs."""

from __future__ import annotations

from typing import Any

from sweep.core.errors import UserError


def import_target(target: str, key: str) -> Any:
    """The object a dotted path names (module.attribute...), or a one-line error saying how to
    make it importable. (Hydra's own locator logs its failures; this one only raises.)

    The folder sweep runs from is searched first, as `python -m` does: the `sweep` console
    script alone would not see a user's mynets.py next to their conf/.
    """
    import importlib
    import os
    import sys

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    parts = target.split(".")
    try:
        obj: Any = importlib.import_module(parts[0])
        for i, part in enumerate(parts[1:], start=1):
            try:
                obj = getattr(obj, part)
            except AttributeError:  # a submodule not imported yet
                obj = importlib.import_module(".".join(parts[: i + 1]))
        return obj
    except (ImportError, AttributeError) as e:
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        raise UserError(
            f"{key}: cannot import {target!r} ({reason}); run sweep from the folder that holds its "
            f"module, or add that folder to PYTHONPATH (workers on other machines need it too)"
        ) from None
