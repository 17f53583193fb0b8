"""lrsweep: learning-rate stability sweeps for recurrent networks.

Data flow, one package per stage: config -> tasks (data) -> trainers (who trains: lrsweep's loop
in `training`, a user's command or function) -> store (the Optuna study) -> analysis (detection,
statistics, verdicts) -> report (tables, figures, report.html); `run` starts the workers.

Layers, top first (pyproject.toml's import-linter contract; docs/architecture.md says what each
holds). A package imports only from the layers beneath it; `|` joins independent siblings:

    sweep.cli | sweep.api | sweep.integrations
    sweep.commands
    sweep.launch
    sweep.report | sweep.trainers
    sweep.analysis | sweep.store | sweep.training
    sweep.tasks
    sweep.config
    sweep.core

From Python::

    import sweep
    result = sweep.run_sweep(fit, grid={"lr": [1e-3, 1e-2, 1e-1]}, seeds=3, n_val=500, chance=0.1)
    result.summary                       # pandas DataFrame

`import sweep` stays light: the names below load their modules on first use.
"""

__version__ = "0.1.0"

_LAZY = {
    "run_sweep": "sweep.api",
    "load_results": "sweep.api",
    "SweepResult": "sweep.api",
    "GradientMonitor": "sweep.trainers.gradients",
    "RunStopped": "sweep.trainers.function",
    "UserError": "sweep.core.errors",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sweep' has no attribute {name!r}")
