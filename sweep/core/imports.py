"""Users' own code named by a dotted path (`_target_: mynets.Tagger`): imported from where sweep runs."""

from __future__ import annotations

from typing import Any

from sweep.core.errors import UserError


def import_target(target: str, key: str) -> Any:
    """The object a dotted path names (module.attribute...), or a one-line error saying how to
    make it importable, or, when the module's own code fails as it is imported (a NameError, a
    SyntaxError, an import inside it), naming the module, the error and its line. (Hydra's own
    locator logs its failures; this one only raises.)

    The folder sweep runs from is searched first, as `python -m` does: the `sweep` console
    script alone would not see a user's mynets.py next to their conf/.
    """
    import importlib
    import os
    import sys

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    parts = target.split(".")
    module = parts[0]
    try:
        obj: Any = importlib.import_module(module)
        for i, part in enumerate(parts[1:], start=1):
            try:
                obj = getattr(obj, part)
            except AttributeError:  # a submodule not imported yet
                module = ".".join(parts[: i + 1])
                obj = importlib.import_module(module)
        return obj
    except (ImportError, AttributeError) as e:
        if isinstance(e, ImportError) and _raised_inside(e, module):
            raise _error_in_module(key, module, e) from None
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        raise UserError(
            f"{key}: cannot import {target!r} ({reason}); run sweep from the folder that holds its "
            f"module, or add that folder to PYTHONPATH (workers on other machines need it too)"
        ) from None
    except Exception as e:  # the module's own code failed while it was imported
        raise _error_in_module(key, module, e) from None
    except SystemExit as e:  # e.g. a script that parses its command line when imported
        raise UserError(
            f"{key}: importing {module} exited (sys.exit({e.code!r})); a module lrsweep imports must "
            f"not run a script when imported: put that code under `if __name__ == '__main__':`"
        ) from None


def _raised_inside(error: BaseException, module: str) -> bool:
    """True when `error` came from a line of the user's module (an import inside it that fails),
    not from finding the module itself."""
    return any(_in_module(frame.filename, module) for frame in _frames(error))


def _frames(error: BaseException) -> list:
    import traceback

    return list(traceback.extract_tb(error.__traceback__))


def _in_module(filename: str, module: str) -> bool:
    tail = module.replace(".", "/")
    name = filename.replace("\\", "/")
    return name.endswith((f"/{tail}.py", f"/{tail}/__init__.py")) or name in (
        f"{tail}.py",
        f"{tail}/__init__.py",
    )


def _error_in_module(key: str, module: str, error: BaseException) -> UserError:
    """One line: the module whose import failed, the error and where in the user's code."""
    reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
    where = ""
    frames = _frames(error)
    if isinstance(error, SyntaxError) and error.filename:
        where = f" ({error.filename}, line {error.lineno})"
    elif frames:
        own = [f for f in frames if not f.filename.startswith("<frozen")]
        last = own[-1] if own else frames[-1]
        where = f" ({last.filename}, line {last.lineno})"
    return UserError(
        f"{key}: importing {module} raised {reason}{where}; fix that module (lrsweep imports it "
        f"before anything runs or is written)"
    )
