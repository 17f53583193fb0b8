"""lrsweep from Python: a notebook or a script runs a sweep and gets its tables as DataFrames.

Usage::

    import sweep

    def fit(setting, seed, epochs, report):          # your own training loop
        ...
        report(epoch, val_acc=acc, val_loss=vloss, train_loss=loss)

    result = sweep.run_sweep(fit, grid={"lr": [1e-3, 1e-2, 1e-1], "clip": [None, 1.0]},
                             seeds=3, epochs=20, n_val=500, chance=0.1)
    result.summary          # one row per setting: mean best accuracy, collapse rate, intervals
    result.runs, result.curves, result.verdicts
    print(result.verdict)   # what the report's verdict says
    result.report           # Path of report.html (report_standalone.html: the same, one file)
    result                  # in a notebook: the verdict, the main figures and the summary inline

    sweep.run_sweep("python train.py --lr {lr} --clip {clip} --seed {seed} --log {metrics}", n_val=40, chance=0.25)
    sweep.run_sweep("mytrain.fit", ...)              # a function by its dotted path
    sweep.run_sweep(overrides=["task=adding", "model=gru"])  # the built-in trainer
    sweep.load_results("fit-function")              # a stored study, without training

The same study, storage, resume and report as the `sweep` command: calling `run_sweep` again with
the same arguments resumes and trains only what is missing. A function given as an object runs
in this process (one worker: a notebook's functions cannot be imported by worker processes); a
command or a dotted path uses `workers` processes. Mistakes raise `sweep.core.errors.UserError`
with the same one-line message the command prints.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sweep.core.errors import UserError

Trainer = None | str | Callable[..., Any]


@dataclass
class SweepResult:
    """A study's tables and where its report is (everything rebuilt from the study storage)."""

    study: str
    summary: pd.DataFrame
    runs: pd.DataFrame
    curves: pd.DataFrame
    verdicts: pd.DataFrame
    verdict: str
    report: Path | None
    status: int = 0  # the `sweep run` exit status: 0 done, 1 runs failed or crashed (retried by calling again)

    def __repr__(self) -> str:
        return (
            f"SweepResult(study={self.study!r}, {len(self.summary)} settings, {len(self.runs)} runs, "
            f"status={self.status}, report={str(self.report)!r})"
        )

    @property
    def report_standalone(self) -> Path | None:
        """report_standalone.html: the report with its figures inside, one file that travels
        (`IPython.display.HTML(filename=...)` shows it whole; report.html needs figures/ beside it)."""
        path = self.report.with_name("report_standalone.html") if self.report else None
        return path if path is not None and path.is_file() else None

    def _repr_html_(self) -> str:
        """The notebook's view of a result: the verdict, the main figures (embedded, so they show
        wherever the notebook goes) and the summary table."""
        import html

        from sweep.report.write import png_data_uri

        parts = [
            f"<p><b>lrsweep study {html.escape(self.study)}</b>: {len(self.summary)} settings, "
            f"{len(self.runs)} runs, status {self.status}</p>",
            f"<pre style='white-space: pre-wrap'>{html.escape(self.verdict.strip())}</pre>",
        ]
        folder = self.report.parent if self.report else None
        for name in ("collapse_rate", "mean_best_acc", "lr_curves"):
            png = folder / "figures" / f"{name}.png" if folder else None
            if png is not None and png.is_file():
                parts.append(
                    f"<img src='{png_data_uri(png)}' alt='{name}' style='max-width: 100%'>"
                )
        if len(self.summary):
            parts.append(
                "<details><summary>summary (one row per setting)</summary>"
                + self.summary.to_html(index=False, max_rows=200)
                + "</details>"
            )
        if self.report:
            where = self.report_standalone or self.report
            parts.append(f"<p>full report: <code>{html.escape(str(where))}</code></p>")
        return "<div class='lrsweep-result'>" + "".join(parts) + "</div>"


def _hydra_value(value: Any) -> str:
    """A Python value as a Hydra override writes it (None -> null, lists in brackets)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value) if any(ch in value for ch in " ,[]{}()<>'\"=:$") else value
    return str(value)


def sweep_overrides(
    trainer: Trainer = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    overrides: Sequence[str] = (),
    **keys: Any,
) -> list[str]:
    """The `sweep run` overrides these arguments stand for (what the command line would say)."""
    out: list[str] = []
    facts = {
        k: keys.pop(k)
        for k in ("metric", "n_val", "chance", "chance_loss", "timeout_minutes")
        if k in keys
    }
    if isinstance(trainer, str) and any(ch.isspace() or ch == "{" for ch in trainer):
        out += ["trainer=command", f"trainer.command={trainer}"]
    elif trainer is not None:
        target = (
            trainer if isinstance(trainer, str) else f"{trainer.__module__}.{trainer.__qualname__}"
        )
        out += ["trainer=function", f"trainer._target_={_hydra_value(target)}"]
    elif facts:
        raise UserError(
            f"{', '.join(facts)}: only for your own training; give run_sweep a trainer (a function, "
            f"its dotted path or a command line)"
        )
    out += [f"trainer.{k}={_hydra_value(v)}" for k, v in facts.items()]
    base = ("lr", "clip", "batch_size")
    for axis, values in (grid or {}).items():
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        out.append(f"{'' if axis in base else '+'}grid.{axis}={_hydra_value(values)}")
    out += [f"{k}={_hydra_value(v)}" for k, v in keys.items()]
    return out + list(overrides)


# A `key=value` setting that a one-line error suggests (`study.name=fit-2`, `set epochs=5`).
_SUGGESTED = re.compile(r"(?<![\w.+/-])(\+?[A-Za-z_][\w.]*=[^\s;,()]+)")


def for_python(message: str) -> str:
    """A one-line error as the caller of `run_sweep` can act on it: every `key=value` the
    message suggests is an item of `overrides=[...]` (or a keyword argument where it has one)."""
    suggested = _SUGGESTED.findall(message)
    if not suggested:
        return message
    return (
        f"{message} (from Python, a key=value above goes in "
        f"run_sweep(..., overrides=[{suggested[0].rstrip('.')!r}]))"
    )


def run_sweep(
    trainer: Trainer = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    overrides: Sequence[str] = (),
    config_dir: str | None = None,
    **keys: Any,
) -> SweepResult:
    """Run (or resume) a sweep and return its tables.

    Args:
        trainer: None (lrsweep's own loop on `task=...`), a training function (called in this
            process), the dotted path of one ("mytrain.fit"), or a command line template.
        grid: axis -> values, e.g. {"lr": [1e-3, 1e-2], "clip": [None, 1.0], "dropout": [0, 0.3]}.
        overrides: any further `key=value` overrides, as on the command line.
        config_dir: a folder of your own config groups (`--config-dir`).
        **keys: config keys by name: seeds=3, epochs=20, workers=2, results_dir="results", and
            for your own training metric=... ("auto", "acc", "loss"), n_val=..., chance=...,
            chance_loss=..., timeout_minutes=....

    Returns:
        SweepResult with summary, runs, curves and verdicts (pandas DataFrames), the verdict text
        and the path of report.html.
    """
    from sweep.config import load_config
    from sweep.launch.launcher import launch

    try:
        cfg = load_config(sweep_overrides(trainer, grid, overrides, **keys), config_dir)
        function = trainer if callable(trainer) else None
        if function is not None:
            from sweep.trainers.checks import check_signature, source_hash
            from sweep.trainers.function import check_start_argument

            takes = check_signature(function, cfg.trainer)
            check_start_argument(cfg, takes, getattr(function, "__qualname__", "the function"))
            cfg.trainer.source = source_hash(function)
        status = launch(cfg, write_results=True, function=function)
    except UserError as e:
        raise UserError(for_python(str(e))) from None
    if status == 130:
        raise KeyboardInterrupt(
            "sweep stopped; call run_sweep again with the same arguments to resume"
        )
    return load_results(
        cfg.study.name, storage=cfg.study.storage, results_dir=cfg.results_dir, status=status
    )


def load_results(
    study: str,
    storage: str | None = None,
    results_dir: str = "results",
    write: bool = False,
    status: int = 0,
) -> SweepResult:
    """The tables of a stored study (no training). `write=True` also rebuilds results/<study>/ as
    `sweep report` does."""
    from sweep.analysis.conclusions import compute_verdicts
    from sweep.report.write import study_tables, write_results
    from sweep.store.storage import open_storage
    from sweep.store.studies import load_study

    url = storage or "sqlite:///" + str((Path(results_dir) / "lrsweep.db").resolve())
    handle = load_study(open_storage(url, create=False), study)
    if write:
        write_results(handle, results_dir)
    tables = study_tables(handle)
    verdicts = compute_verdicts(tables)
    folder = Path(results_dir) / study
    text_file = folder / "verdict.txt"
    verdict = text_file.read_text(encoding="utf-8") if text_file.is_file() else verdicts.reading
    report = folder / "report.html"
    return SweepResult(
        study=study,
        summary=tables.summary,
        runs=tables.runs,
        curves=tables.curves,
        verdicts=verdicts.slices,
        verdict=verdict,
        report=report if report.is_file() else None,
        status=status,
    )
