"""report.html: one self-contained page a person reads after a sweep.

Usage::

    path = write_html(tables, verdicts, figure_files, study_dir)   # -> study_dir/report.html

The page comes from templates/report.html.j2 (Jinja2, autoescaping): this module only prepares
what it shows (texts, table cells, figure captions). It needs no network: inline CSS and a few
lines of static script (sortable tables, a check that every figure loaded), figures referenced
by relative path. The storage URL is shown only as stored in the study (password already
redacted there, and redacted again here in case an older study stored it in full).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sweep.analysis.choice import validation_half_width
from sweep.analysis.conclusions import Verdicts
from sweep.analysis.data_checks import data_lines, data_warnings
from sweep.analysis.reading import short_reason
from sweep.analysis.verdicts import clip_fractions, setting_key, slice_axes
from sweep.config import DETECT_MEANINGS
from sweep.core.files import write_text
from sweep.core.redact import redact_secrets
from sweep.core.setting import value_label
from sweep.core.values import normalize
from sweep.report.captions import CAPTIONS, FIGURE_TITLES  # noqa: F401  (CAPTIONS re-exported)
from sweep.report.cells import Table, ci_text, fmt, make_table
from sweep.report.figures import figure_notes

SUMMARY_SHOWN = [
    ("n_runs", "runs"),
    ("mean_best_acc", "mean_best_acc"),
    ("mean_best_acc_ci", "95% CI"),
    ("collapse_rate", "collapse_rate"),
    ("collapse_rate_ci", "95% CI"),
    ("n_nonfinite", "nonfinite"),
    ("n_diverged", "diverged"),
    ("n_constant_output", "constant_output"),
    ("n_undecided", "undecided"),
    ("n_never_learned", "never_learned"),
    ("noise_floor", "noise_floor"),
    ("mean_final_acc", "mean_final_acc"),
    ("mean_spikes", "mean_spikes"),
    ("median_collapse_epoch", "median_collapse_epoch"),
    ("grad_norm_p90", "grad_norm_p90"),
    ("clip_fraction", "clip_fraction"),
    ("n_loss_jump", "loss jumps"),
    ("loss_jump_rate_ci", "95% CI"),
    ("volatility", "volatility"),
    ("volatility_ci", "95% CI"),
    ("step_loss_cv", "step_loss_cv"),
]
RUN_SHOWN = [
    "seed",
    "collapse_mode",
    "collapse_epoch",
    "collapse_witness",
    "best_acc",
    "best_epoch",
    "final_acc",
    "epochs_run",
    "nonfinite",
    "grad_norm_max",
    "loss_jump_epoch",
]
SLICE_SHOWN = [
    ("safe_lr_text", "safe lr (95%)"),
    ("lr_at_10_text", "lr at 10% risk (95% CI)"),
    ("lr_at_50_text", "lr at 50% risk (95% CI)"),
    ("bracket", "first collapse between"),
    ("runs_to_resolve", "runs to resolve"),
    ("lr_sensitivity", "lr_sensitivity"),
    ("largest_stable_lr", "largest stable lr"),
    ("first_collapse_lr", "first lr with a collapse"),
    ("collapsed_lrs", "lrs with a collapse"),
    ("best_lr", "best lr"),
    ("best_mean_best_acc", "its mean_best_acc"),
    ("collapsed_of_runs", "collapsed/runs"),
    ("grad_norm_p90", "grad_norm_p90 (stable)"),
]


def write_html(
    tables: Any, verdicts: Verdicts, figures: Sequence[Any], study_dir: str | Path
) -> Path:
    """Write study_dir/report.html (atomically) and return its path."""
    return write_text(Path(study_dir) / "report.html", render_html(tables, verdicts, figures))


def _escape(value: Any) -> Any:
    """Every value printed by the template: escaped with html.escape (quotes included, the
    entity spelling the report always had); Markup (already safe) passes as it is."""
    from markupsafe import Markup

    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value)))


def _template() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("sweep.report", "templates"),
        autoescape=True,
        finalize=_escape,
        keep_trailing_newline=True,
        undefined=StrictUndefined,
    )
    return env.get_template("report.html.j2")


def render_html(tables: Any, verdicts: Verdicts, figures: Sequence[Any]) -> str:
    """The page as a string. `figures`: objects with kind, name (relative path) and label."""
    meta = tables.meta or {}
    study = str(meta.get("study") or meta.get("config", {}).get("study", {}).get("name") or "study")
    rec = verdicts.recommendation
    detect = meta.get("detect") or meta.get("config", {}).get("detect") or {}
    return _template().render(
        study=study,
        overview=_overview(tables),
        data_lines=data_lines(meta.get("task")),
        data_warnings=data_warnings(meta.get("task")),
        recommendation=rec.text(tables.axes) if rec is not None else None,
        reading=verdicts.reading,
        head=[line.text for line in verdicts.head],
        findings=[
            {"text": line.text, "href": _anchor(line.figure, figures)} for line in verdicts.findings
        ],
        unfinished=_unfinished_table(tables),
        slices=_slices_table(tables, verdicts),
        figures=_figure_groups(figures),
        traced_note=_traced_note(figures, len(tables.summary)),
        figure_notes=figure_notes(tables),
        summary=_summary_table(tables, verdicts) if len(tables.summary) else None,
        summary_note=SUMMARY_NOTE,
        collapsed=_collapsed_table(tables),
        refine=_refine_rounds(meta.get("refine")),
        detect=[
            {"key": k, "value": fmt(v), "meaning": DETECT_MEANINGS.get(k, "")}
            for k, v in detect.items()
        ],
        task_json=json.dumps(meta.get("task") or {}, indent=2, sort_keys=True, default=str),
        config_json=json.dumps(_shown_config(meta.get("config") or {}), indent=2, default=str),
        task_title="Task" if users_trainer(meta.get("config") or {}) is None else "Validation set",
    )


SUMMARY_NOTE = (
    "One row per setting (summary.csv, plus clip_fraction: the share of steps clipped, mean over epochs and "
    "seeds). 95% CI (seeds): the Student-t interval over seeds; +- val noise: the 95% noise of one accuracy on "
    "this validation set, which more seeds do not shrink (seeds that all scored alike still do not know the "
    "accuracy better than that). undecided: runs that fell below the collapse threshold by "
    "less than the validation noise (the "
    "collapse-rate interval's upper end counts them as collapsed); noise_floor: what the best epoch reaches "
    "with nothing learned at this validation size. Click a header to sort. Green: the recommended setting; red: "
    "settings with a collapsed run."
)


# --------------------------------------------------------------------------- what the page shows


# Config keys that only lrsweep's own training loop reads: a study trained by a user's command or
# function records them (they are the schema's defaults) but they played no part in its results.
BUILTIN_ONLY = (
    "task",
    "model",
    "optimizer",
    "schedule",
    "packing",
    "checkpoint_every",
    "checkpoint_minutes",
    "find",
)


def users_trainer(config: dict[str, Any]) -> dict[str, Any] | None:
    """The `trainer` node of a study trained by the user's command or function (None: lrsweep's
    own loop, also for studies that recorded no trainer)."""
    trainer = config.get("trainer")
    if isinstance(trainer, dict) and trainer.get("name", "builtin") != "builtin":
        return trainer
    return None


def trainer_text(trainer: dict[str, Any]) -> str:
    """What trained the runs, as far as lrsweep knows it: the command line (its template), or the
    function and the keyword arguments the config passes it."""
    if trainer.get("name") == "command":
        return f"trainer command: {redact_secrets(str(trainer.get('command', '')))}"
    from sweep.config.trainers import TARGET_OPTIONS

    own = ("_target_", "name", "source", *TARGET_OPTIONS)
    kwargs = ", ".join(f"{k}={v}" for k, v in trainer.items() if k not in own)
    return f"trainer function {trainer.get('_target_', '?')}" + (f"({kwargs})" if kwargs else "")


def _overview(tables: Any) -> str:
    """One line: task (or the user's trainer and axes), validation size, model, optimizer,
    settings and runs, when."""
    meta = tables.meta or {}
    cfg, task = meta.get("config", {}) or {}, meta.get("task", {}) or {}
    users = users_trainer(cfg)
    bits = []
    if users is not None:  # lrsweep's task, model and optimizer were not used: none is named
        bits.append(trainer_text(users))
        bits.append(f"grid axes {', '.join(tables.axes)}")
        metric = getattr(tables, "metric", None)
        if metric is not None and metric.is_loss:  # no accuracy: no chance level to state
            bits.append(f"calls from the {metric.label}")
        else:
            kind = f"{task['kind']}, " if task.get("kind") else ""
            bits.append(f"{kind}chance {tables.chance:.3f}")
    elif task.get("name") or cfg.get("task", {}).get("name"):
        kind = f" ({task['kind']})" if task.get("kind") else ""
        bits.append(
            f"task {task.get('name') or cfg['task']['name']}{kind}, chance {tables.chance:.3f}"
        )
    if task.get("n_val"):
        from sweep.analysis.noise import resolution

        bits.append(
            f"{task['n_val']} validation sequences (accuracy resolved to about "
            f"{resolution(int(task['n_val'])):.2f})"
        )
    model, opt = (cfg.get("model", {}), cfg.get("optimizer", {})) if users is None else ({}, {})
    if model:
        bits.append(
            f"model {model.get('name', '?')} ({model.get('layers', '?')} x {model.get('hidden_size', '?')})"
        )
    if opt:
        bits.append(
            f"optimizer {opt.get('name', '?')}{_group_lrs(opt.get('group_lr_mult'), tables.curves)}"
        )
    s = tables.summary
    n_runs = int(s["n_runs"].sum()) if len(s) else 0
    n_coll = int(s["n_collapsed"].sum()) if len(s) else 0
    bits.append(f"{len(s)} settings, {n_runs} runs, {n_coll} collapsed")
    if cfg.get("epochs"):
        bits.append(f"{cfg['epochs']} epochs per run")
    bits.append("generated " + dt.datetime.now().strftime("%Y-%m-%d %H:%M"))
    return "; ".join(bits)


def _group_lrs(mults: Any, curves: Any) -> str:
    """ " with lr x 0.11 for embed, ..." when optimizer.group_lr_mult is set (the group names are
    those of the recorded per-group gradient norms)."""
    if not mults:
        return ""
    names = [
        c.split("/", 1)[1]
        for c in getattr(curves, "columns", [])
        if str(c).startswith("grad_norm_max/")
    ]
    if len(names) != len(mults):
        names = [f"group {i}" for i in range(len(mults))]
    return (
        " with discriminative lrs ("
        + ", ".join(f"{n} at lr x {float(m):g}" for n, m in zip(names, mults))
        + ")"
    )


def _figure_groups(figures: Sequence[Any]) -> list[dict[str, Any]]:
    """Figures grouped by kind, in report order, each with its caption."""
    groups: dict[str, dict[str, Any]] = {}
    for f in figures:
        group = groups.setdefault(
            f.kind, {"kind": f.kind, "title": FIGURE_TITLES.get(f.kind, f.kind), "files": []}
        )
        label = f"{f.label}: " if f.label else ""
        group["files"].append(
            {
                "src": quote(f.name),
                "alt": f"{f.kind} {f.label}",
                "caption": label + CAPTIONS.get(f.kind, ""),
            }
        )
    return list(groups.values())


def _traced_note(figures: Sequence[Any], n_settings: int) -> str:
    traced = sum(
        1 for f in figures if f.kind == "learning_curves" and "/learning_curves/" in f.name
    )
    if not 0 < traced < n_settings:
        return ""
    return (
        f"Learning curves and gradient-norm traces are drawn for {traced} of the {n_settings} settings: the "
        f"recommended one, every setting with a collapsed run (highest collapse rate first), then the most "
        f"accurate others. curves.parquet holds every run."
    )


def _refine_rounds(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """What each `sweep refine` round added and why, and where it stopped."""
    if not data or not data.get("rounds"):
        return None
    rounds = [
        {
            "round": r["round"],
            "runs_before": r["runs_before"],
            "runs_added": r["runs_added"],
            "added": [a["why"] for a in r["added"]],
            "state": r.get("state", []),
        }
        for r in data["rounds"]
    ]
    last = data["rounds"][-1]
    total = last["runs_before"] + last["runs_added"]
    return {"rounds": rounds, "stopped": data.get("stopped") or "still running", "total": total}


def _anchor(figure: str, figures: Sequence[Any]) -> str:
    """Where a finding's figure is on the page ("" when the report has no such figure)."""
    if figure in ("summary", "crashed"):
        return f"#{figure}"
    return f"#fig-{figure}" if any(f.kind == figure for f in figures) else ""


def _unfinished_table(tables: Any) -> Table | None:
    """Runs that crashed or timed out: setting, seed, outcome, reason, log (None when none)."""
    runs = tables.runs
    if not len(runs) or "outcome" not in runs:
        return None
    bad = runs[runs["outcome"].isin(["crashed", "timed_out"])]
    if not len(bad):
        return None
    rows = []
    for r in bad.to_dict("records"):
        reason = short_reason(r.get("failure_reason") or r.get("crash_reason"), 200)
        rows.append((dict(r, reason=reason, log=r.get("log_path") or ""), ""))
    head = [(a, a) for a in tables.axes] + [
        ("seed", "seed"),
        ("outcome", "outcome"),
        ("reason", "reason"),
        ("log", "log path"),
    ]
    return make_table("unfinished", head, rows)


def _slices_table(tables: Any, v: Verdicts) -> Table:
    keys = slice_axes(tables.axes)
    rows = []
    for r in v.slices.to_dict("records"):
        r = dict(
            r,
            collapsed_of_runs=f"{r['n_collapsed']}/{r['n_runs']}",
            **_boundary_cells(tables, r, keys),
        )
        if normalize(r["largest_stable_lr"]) is None:
            r["largest_stable_lr"] = "none"
        rows.append((r, "bad" if r["n_collapsed"] else ""))
    return make_table("slices", [(k, k) for k in keys] + SLICE_SHOWN, rows)


def _boundary_cells(tables: Any, r: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """The slice's safe lr, lr_at_10 and lr_at_50 as the verdict words them, and its bracket."""
    from sweep.analysis.boundary import boundary_bracket, slice_boundary

    rows = [
        s for s in tables.summary.to_dict("records") if setting_key(s, keys) == setting_key(r, keys)
    ]
    fit = slice_boundary(rows)
    c = fit._counts
    bracket = boundary_bracket(c.lr, c.n, c.k).text().replace("between ", "") if fit.n_runs else ""
    safe = {
        "inside": f"<= {value_label(fit.safe.lr)}" if fit.safe.lr else "",
        "above": "every lr tried",
        "below": "below the smallest lr",
        "unknown": "",
    }[fit.safe.kind]
    return {
        "safe_lr_text": safe,
        "lr_at_10_text": fit.at_10.text(),
        "lr_at_50_text": fit.at_50.text(),
        "bracket": bracket,
    }


def _summary_table(tables: Any, v: Verdicts) -> Table:
    axes = list(tables.axes)
    n_val = (tables.meta or {}).get("task", {}).get("n_val")
    n_val = int(n_val) if n_val else None
    frac = {
        setting_key(r, axes): r["clip_fraction"]
        for r in clip_fractions(tables.curves, axes).to_dict("records")
    }
    rec_key = setting_key(v.recommendation.setting, axes) if v.recommendation else None
    rows = []
    for r in tables.summary.to_dict("records"):
        key = setting_key(r, axes)
        r = dict(r)
        r["mean_best_acc_ci"] = ci_text(r["mean_best_acc_lo"], r["mean_best_acc_hi"])
        r["mean_best_loss_ci"] = _loss_ci(r.get("mean_best_loss_lo"), r.get("mean_best_loss_hi"))
        half = validation_half_width(float(r["mean_best_acc"]), n_val)
        r["val_noise"] = f"{half:.3f}" if math.isfinite(half) else ""
        r["collapse_rate_ci"] = ci_text(r["collapse_rate_lo"], r["collapse_rate_hi"])
        r["loss_jump_rate_ci"] = ci_text(r.get("loss_jump_rate_lo"), r.get("loss_jump_rate_hi"))
        r["volatility_ci"] = ci_text(r.get("volatility_lo"), r.get("volatility_hi"))
        r["clip_fraction"] = frac.get(key)
        rows.append((r, "best" if key == rec_key else "bad" if r["n_collapsed"] else ""))
    shown = SUMMARY_SHOWN
    metric = getattr(tables, "metric", None)
    if metric is not None and metric.is_loss:  # no accuracy: the loss the calls read instead
        drop = {"mean_best_acc", "mean_best_acc_ci", "noise_floor", "mean_final_acc"}
        shown = [("mean_best_loss", "mean_best_loss"), ("mean_best_loss_ci", "95% CI")] + [
            c for c in SUMMARY_SHOWN if c[0] not in drop
        ]
        shown.insert(0, shown.pop(2))  # runs first
    return make_table("summary", [(a, a) for a in axes] + shown, rows)


def _loss_ci(lo: Any, hi: Any) -> str:
    """A loss interval with 4 significant digits (a loss has no fixed scale)."""
    if lo is None or hi is None or not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
        return ""
    return f"{float(lo):.4g}-{float(hi):.4g}"


def _collapsed_table(tables: Any) -> Table | None:
    runs = tables.runs
    bad = runs[runs["collapsed"].astype(bool)] if len(runs) else runs
    if not len(bad):
        return None
    head = [(a, a) for a in tables.axes] + [(c, c) for c in RUN_SHOWN]
    return make_table("collapsed", head, [(r, "") for r in bad.to_dict("records")])


def _shown_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config as the page shows it: without the keys only lrsweep's own loop reads when a
    user's command or function trained the runs, and without passwords."""
    if users_trainer(config) is not None:
        config = {k: v for k, v in config.items() if k not in BUILTIN_ONLY}
        trainer = dict(config["trainer"])
        if isinstance(trainer.get("command"), str):
            trainer["command"] = redact_secrets(trainer["command"])
        config["trainer"] = trainer
    return _redacted(config)


def _redacted(config: dict[str, Any]) -> dict[str, Any]:
    """The config with study.storage passed through redact_url once more (never show a password)."""
    from sweep.core.redact import redact_url

    config = json.loads(json.dumps(config, default=str))
    storage = (
        config.get("study", {}).get("storage") if isinstance(config.get("study"), dict) else None
    )
    if isinstance(storage, str):
        config["study"]["storage"] = redact_url(storage)
    return config
