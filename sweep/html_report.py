"""report.html: one self-contained page a person reads after a sweep.

Usage::

    path = write_html(tables, verdicts, figure_files, study_dir)   # -> study_dir/report.html

The page needs no network: inline CSS and a few lines of inline JS (sortable tables, a check that
every figure loaded), figures referenced by relative path (figures/*.png next to it). Every text
that comes from a config, a path or the data goes through `html.escape`; no data is ever written
into the script. The storage URL is shown only as stored in the study (password already
redacted there, and redacted again here in case an older study stored it in full).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from html import escape
from pathlib import Path
from typing import Any, Optional, Sequence
from urllib.parse import quote

from sweep.outputs import write_text
from sweep.verdicts import (
    Recommendation, Verdicts, clip_fractions, normalize, setting_key, setting_label, slice_axes, value_label,
)

# One sentence per figure kind: what it shows and how to read it.
CAPTIONS = {
    "collapse_rate": (
        "Share of seeds that collapsed at each setting (cells: collapsed/runs, one colour scale for all "
        "panels): read a row left to right to see from which lr runs start to collapse, and down a column "
        "to see what clipping changes."
    ),
    "mean_best_acc": (
        "Mean over seeds of each run's best val_acc (mean_best_acc; collapsed runs included) per setting: "
        "brighter is better, and the colour scale is shared so panels compare directly."
    ),
    "lr_curves": (
        "Top: mean_best_acc vs lr with its 95% interval as a band, one line per clip value, chance dashed and "
        "the noise floor of the best epoch dash-dotted (mean_best_acc is a best of many epochs: read it against "
        "the floor, not against chance); bottom: collapse_rate with its 95% Wilson interval (its upper end "
        "counts undecided runs as collapsed), so a good lr is where the top curve is high and the bottom "
        "one sits at 0 with a short bar."
    ),
    "learning_curves": (
        "val_acc (top) and val_loss (bottom, log scale) of every seed per epoch, rows lr and columns clip: "
        "red seeds collapsed (dotted line at the collapse epoch), an x marks where a run went non-finite "
        "and stopped, the dashed line is chance and the purple dash-dotted line the noise floor (what the best "
        "epoch reaches with nothing learned at this validation size: a best below it could be luck)."
    ),
    "grad_norms": (
        "Gradient norm before clipping per epoch (solid grad_norm_mean, dashed grad_norm_max, log scale) "
        "with the clip threshold in green, and beneath it clip_fraction, the share of steps clipped: look "
        "for norms growing before a collapse, and for clip_fraction above 0.5 (clipping too aggressive)."
    ),
}
FIGURE_TITLES = {
    "collapse_rate": "Collapse rate", "mean_best_acc": "Mean best accuracy", "lr_curves": "LR curves",
    "learning_curves": "Learning curves", "grad_norms": "Gradient norms",
}
DETECT_MEANINGS = {
    "drop": "a run diverged when val_acc fell below chance + (1 - drop) x (best - chance) and stayed there",
    "patience": "... for at least this many epochs until the end of training",
    "min_gain": "a finite run whose best stays below chance + min_gain never learned (not a collapse)",
    "spike_factor": "a spike is an epoch whose val_loss exceeds spike_factor x the lowest val_loss so far",
    "constant_frac": "a diverged run predicting this share of one class at the end is constant_output",
    "alpha": ("false-alarm budget of the noise-aware calls: nothing learned passes the learned test with "
              "probability <= alpha/2, a drop within noise passes the diverged test with probability <= alpha"),
}
SUMMARY_SHOWN = [
    ("n_runs", "runs"), ("mean_best_acc", "mean_best_acc"), ("mean_best_acc_ci", "95% CI"),
    ("collapse_rate", "collapse_rate"), ("collapse_rate_ci", "95% CI"), ("n_nonfinite", "nonfinite"),
    ("n_diverged", "diverged"), ("n_constant_output", "constant_output"), ("n_undecided", "undecided"),
    ("n_never_learned", "never_learned"), ("noise_floor", "noise_floor"),
    ("mean_final_acc", "mean_final_acc"), ("mean_spikes", "mean_spikes"),
    ("median_collapse_epoch", "median_collapse_epoch"), ("grad_norm_p90", "grad_norm_p90"),
    ("clip_fraction", "clip_fraction"),
]
RUN_SHOWN = ["seed", "collapse_mode", "collapse_epoch", "collapse_witness", "best_acc", "best_epoch", "final_acc",
             "epochs_run", "nonfinite", "grad_norm_max"]
SLICE_SHOWN = [
    ("lr_sensitivity", "lr_sensitivity"), ("largest_stable_lr", "largest stable lr"),
    ("first_collapse_lr", "first lr with a collapse"), ("collapsed_lrs", "lrs with a collapse"),
    ("best_lr", "best lr"), ("best_mean_best_acc", "its mean_best_acc"), ("collapsed_of_runs", "collapsed/runs"),
    ("grad_norm_p90", "grad_norm_p90 (stable)"),
]

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1500px; padding: 0 24px 48px; color: #1d1d1f; }
h1 { font-size: 1.6em; margin: 24px 0 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; }
.meta { color: #555; margin: 0 0 8px; } nav a { margin-right: 14px; }
.reading { font-size: 1.05em; max-width: 75em; }
.rec { background: #eef7ee; border-left: 4px solid #2ca02c; padding: 10px 14px; max-width: 75em; }
.rec.none { background: #fbeeee; border-color: #d62728; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f4f4f6; position: sticky; top: 0; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
td.text, th.text { text-align: left; }
tr.bad td { background: #fff3f3; } tr.best td { background: #eef7ee; font-weight: 600; }
.scroll { overflow-x: auto; max-width: 100%; }
figure { margin: 18px 0 28px; } figure img { max-width: none; display: block; border: 1px solid #eee; }
figcaption { color: #444; max-width: 75em; margin-top: 6px; }
figure.missing::before { content: "figure file missing: rebuild the report with sweep report"; color: #d62728; }
pre { background: #f6f6f8; padding: 10px; overflow-x: auto; font-size: 12px; }
.note { color: #666; font-size: 0.92em; }
"""

# Static script: no data is interpolated here. Sorts tables by clicking headers (numbers by the
# cell's data-v, text otherwise) and records on <body> how many figures loaded, marking the
# figures whose file is missing (also read by the browser test).
SCRIPT = """
(function () {
  function key(cell) {
    var v = cell.getAttribute('data-v');
    if (v === null) { v = cell.textContent.trim(); }
    var x = parseFloat(v);
    return (v !== '' && isFinite(x)) ? [0, x, ''] : [v === '' ? 2 : 1, 0, v];
  }
  function cmp(a, b) {
    for (var i = 0; i < 3; i++) { if (a[i] < b[i]) return -1; if (a[i] > b[i]) return 1; }
    return 0;
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('thead th').forEach(function (th, col) {
      th.addEventListener('click', function () {
        var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
        table.querySelectorAll('thead th').forEach(function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r, s) {
          var a = key(r.cells[col]), b = key(s.cells[col]);
          if (a[0] === 2 || b[0] === 2) return a[0] - b[0];  // empty cells last either way
          return dir * cmp(a, b);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  window.addEventListener('load', function () {
    var images = document.querySelectorAll('figure img'), ok = 0;
    images.forEach(function (img) {
      if (img.complete && img.naturalWidth > 0) { ok++; } else { img.closest('figure').classList.add('missing'); }
    });
    document.body.setAttribute('data-images-loaded', String(ok));
    document.body.setAttribute('data-images-total', String(images.length));
    document.body.setAttribute('data-images-ok', String(ok === images.length));
  });
})();
"""


def write_html(tables: Any, verdicts: Verdicts, figures: Sequence[Any], study_dir: str | Path) -> Path:
    """Write study_dir/report.html (atomically) and return its path."""
    return write_text(Path(study_dir) / "report.html", render_html(tables, verdicts, figures))


def render_html(tables: Any, verdicts: Verdicts, figures: Sequence[Any]) -> str:
    """The page as a string. `figures`: objects with kind, name (relative path) and label."""
    meta = tables.meta or {}
    study = str(meta.get("study") or meta.get("config", {}).get("study", {}).get("name") or "study")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>lrsweep report: {escape(study)}</title>",
        f"<style>{CSS}</style></head>",
        "<body>",
        f"<h1>Learning-rate stability: {escape(study)}</h1>",
        f'<p class="meta">{escape(_overview(tables))}</p>',
        '<nav><a href="#verdict">Verdict</a><a href="#slices">Per slice</a><a href="#figures">Figures</a>'
        '<a href="#summary">Summary table</a><a href="#collapsed">Collapsed runs</a>'
        '<a href="#config">Config and thresholds</a></nav>',
        _verdict_section(tables, verdicts),
        _slices_section(tables, verdicts),
        _figures_section(figures, len(tables.summary)),
        _summary_section(tables, verdicts),
        _collapsed_section(tables),
        _config_section(tables, study),
        f"<script>{SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- sections


def _overview(tables: Any) -> str:
    meta = tables.meta or {}
    cfg, task = meta.get("config", {}) or {}, meta.get("task", {}) or {}
    bits = []
    if task.get("name") or cfg.get("task", {}).get("name"):
        kind = f" ({task['kind']})" if task.get("kind") else ""
        bits.append(f"task {task.get('name') or cfg['task']['name']}{kind}, chance {tables.chance:.3f}")
    if task.get("n_val"):
        from sweep.noise import resolution

        bits.append(f"{task['n_val']} validation sequences (accuracy resolved to about "
                    f"{resolution(int(task['n_val'])):.2f})")
    model, opt = cfg.get("model", {}), cfg.get("optimizer", {})
    if model:
        bits.append(f"model {model.get('name', '?')} ({model.get('layers', '?')} x {model.get('hidden_size', '?')})")
    if opt:
        bits.append(f"optimizer {opt.get('name', '?')}")
    s = tables.summary
    n_runs = int(s["n_runs"].sum()) if len(s) else 0
    n_coll = int(s["n_collapsed"].sum()) if len(s) else 0
    bits.append(f"{len(s)} settings, {n_runs} runs, {n_coll} collapsed")
    if cfg.get("epochs"):
        bits.append(f"{cfg['epochs']} epochs per run")
    bits.append("generated " + dt.datetime.now().strftime("%Y-%m-%d %H:%M"))
    return "; ".join(bits)


def _verdict_section(tables: Any, v: Verdicts) -> str:
    rec = v.recommendation
    if rec is None:
        box = ('<div class="rec none"><b>No recommendation:</b> every setting had at least one collapsed run, '
               'or no run learned anything that stands out from sampling noise.</div>')
    else:
        box = f'<div class="rec"><b>Recommended:</b> {escape(_rec_text(rec, tables.axes))}</div>'
    return (f'<section id="verdict"><h2>Verdict</h2>{box}'
            f'<p class="reading">{escape(v.reading)}</p></section>')


def _rec_text(rec: Recommendation, axes: Sequence[str]) -> str:
    return (f"{setting_label(rec.setting, axes)}: mean best accuracy {rec.mean_best_acc:.3f} "
            f"(95% CI {rec.mean_best_acc_lo:.3f}-{rec.mean_best_acc_hi:.3f}) over {rec.n_runs} seeds, no collapse"
            + (f"; its grad_norm_p90 is {rec.grad_norm_p90:.3g}" if math.isfinite(rec.grad_norm_p90) else ""))


def _slices_section(tables: Any, v: Verdicts) -> str:
    keys = slice_axes(tables.axes)
    head = [(k, k) for k in keys] + SLICE_SHOWN
    rows = []
    for r in v.slices.to_dict("records"):
        r = dict(r, collapsed_of_runs=f"{r['n_collapsed']}/{r['n_runs']}")
        if normalize(r["largest_stable_lr"]) is None:
            r["largest_stable_lr"] = "none"
        rows.append((r, "bad" if r["n_collapsed"] else ""))
    note = ('<p class="note">A slice is every lr at one clip and batch size (and extra-axis value). '
            "lr_sensitivity: mean over the lr grid of the best mean_best_acc minus max(mean_best_acc(lr), chance), "
            "the accuracy a poorer lr choice costs on average (lower is more forgiving). Largest stable lr: the "
            "largest lr such that it and every smaller lr had no collapsed run. This table is verdicts.csv.</p>")
    return f'<section id="slices"><h2>Per slice</h2>{note}{_table(head, rows, "slices")}</section>'


def _figures_section(figures: Sequence[Any], n_settings: int = 0) -> str:
    if not figures:
        return '<section id="figures"><h2>Figures</h2><p>No figures: no completed runs yet.</p></section>'
    out = ['<section id="figures"><h2>Figures</h2>']
    traced = sum(1 for f in figures if f.kind == "learning_curves" and "/learning_curves/" in f.name)
    if 0 < traced < n_settings:
        out.append(
            f"<p class=\"note\">Learning curves and gradient-norm traces are drawn for {traced} of the "
            f"{n_settings} settings: the recommended one, every setting with a collapsed run (highest "
            f"collapse rate first), then the most accurate others. curves.parquet holds every run.</p>"
        )
    seen: set[str] = set()
    for f in figures:
        if f.kind not in seen:
            seen.add(f.kind)
            out.append(f'<h3 id="fig-{escape(f.kind)}">{escape(FIGURE_TITLES.get(f.kind, f.kind))}</h3>')
        label = f"{f.label}: " if f.label else ""
        caption = label + CAPTIONS.get(f.kind, "")
        src = quote(f.name)
        out.append(
            f'<figure><div class="scroll"><img src="{escape(src)}" alt="{escape(f.kind + " " + f.label)}"></div>'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )
    out.append("</section>")
    return "\n".join(out)


def _summary_section(tables: Any, v: Verdicts) -> str:
    axes = list(tables.axes)
    s = tables.summary
    if not len(s):
        return '<section id="summary"><h2>Summary table</h2><p>No completed settings yet.</p></section>'
    frac = {setting_key(r, axes): r["clip_fraction"] for r in clip_fractions(tables.curves, axes).to_dict("records")}
    rec_key = setting_key(v.recommendation.setting, axes) if v.recommendation else None
    rows = []
    for r in s.to_dict("records"):
        key = setting_key(r, axes)
        r = dict(r)
        r["mean_best_acc_ci"] = _ci(r["mean_best_acc_lo"], r["mean_best_acc_hi"])
        r["collapse_rate_ci"] = _ci(r["collapse_rate_lo"], r["collapse_rate_hi"])
        r["clip_fraction"] = frac.get(key)
        cls = "best" if key == rec_key else "bad" if r["n_collapsed"] else ""
        rows.append((r, cls))
    head = [(a, a) for a in axes] + SUMMARY_SHOWN
    note = ('<p class="note">One row per setting (summary.csv, plus clip_fraction: the share of steps clipped, '
            "mean over epochs and seeds). undecided: runs that fell below the collapse threshold by less than "
            "the validation noise (the collapse-rate interval's upper end counts them as collapsed); "
            "noise_floor: what the best epoch reaches with nothing learned at this validation size. Click a "
            "header to sort. Green: the recommended setting; red: settings with a collapsed run.</p>")
    return f'<section id="summary"><h2>Summary table</h2>{note}<div class="scroll">{_table(head, rows, "summary")}</div></section>'


def _collapsed_section(tables: Any) -> str:
    runs = tables.runs
    bad = runs[runs["collapsed"].astype(bool)] if len(runs) else runs
    if not len(bad):
        return '<section id="collapsed"><h2>Collapsed runs</h2><p>No run collapsed.</p></section>'
    axes = list(tables.axes)
    head = [(a, a) for a in axes] + [(c, c) for c in RUN_SHOWN]
    rows = [(r, "") for r in bad.to_dict("records")]
    note = ('<p class="note">Every collapsed run (runs.csv has all runs). collapse_epoch: the epoch where a value '
            "became non-finite, or the first epoch of the final stretch below the threshold.</p>")
    return f'<section id="collapsed"><h2>Collapsed runs</h2>{note}<div class="scroll">{_table(head, rows, "collapsed")}</div></section>'


def _config_section(tables: Any, study: str) -> str:
    meta = tables.meta or {}
    detect = meta.get("detect") or meta.get("config", {}).get("detect") or {}
    rows = "".join(
        f'<tr><td class="text">{escape(str(k))}</td><td>{escape(_fmt(v))}</td>'
        f'<td class="text">{escape(DETECT_MEANINGS.get(k, ""))}</td></tr>'
        for k, v in detect.items()
    )
    config = _redacted(meta.get("config") or {})
    task = meta.get("task") or {}
    return (
        '<section id="config"><h2>Config and thresholds</h2>'
        "<h3>Detection thresholds that produced this report</h3>"
        '<table><thead><tr><th class="text">detect.*</th><th>value</th><th class="text">meaning</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
        f'<p class="note">Rebuild with other thresholds (no retraining): sweep report study.name={escape(study)} '
        "detect.drop=0.7 ...</p>"
        "<h3>Task</h3>"
        f"<pre>{escape(json.dumps(task, indent=2, sort_keys=True, default=str))}</pre>"
        "<h3>Config of the study</h3>"
        f"<pre>{escape(json.dumps(config, indent=2, default=str))}</pre></section>"
    )


def _redacted(config: dict[str, Any]) -> dict[str, Any]:
    """The config with study.storage passed through redact_url once more (never show a password)."""
    from sweep.study import redact_url

    config = json.loads(json.dumps(config, default=str))
    storage = config.get("study", {}).get("storage") if isinstance(config.get("study"), dict) else None
    if isinstance(storage, str):
        config["study"]["storage"] = redact_url(storage)
    return config


# --------------------------------------------------------------------------- tables


def _table(head: Sequence[tuple[str, str]], rows: Sequence[tuple[dict[str, Any], str]],
           table_id: Optional[str] = None) -> str:
    ident = f' id="{escape(table_id)}"' if table_id else ""
    ths = "".join(f'<th class="{_align(k)}">{escape(title)}</th>' for k, title in head)
    body = []
    for row, cls in rows:
        cells = []
        for k, _ in head:
            value = row.get(k)
            # "no clipping" sorts before every clip value (clip values are > 0)
            sort = "-1" if k == "clip" and normalize(value) is None else _sort_value(value)
            data = f' data-v="{escape(sort)}"' if sort is not None else ""
            cells.append(f'<td class="{_align(k)}"{data}>{escape(_cell(k, value))}</td>')
        body.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    return (f'<table class="sortable"{ident}><thead><tr>{ths}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _align(key: str) -> str:
    return "text" if key in ("collapse_mode", "nonfinite", "collapsed_lrs", "collapse_witness") else ""


def _cell(key: str, value: Any) -> str:
    value = normalize(value)
    if value is None:
        return "none" if key == "clip" else ""
    if key in ("lr", "clip", "batch_size", "largest_stable_lr", "first_collapse_lr", "best_lr") or key not in _NUMERIC:
        return value_label(value) if not isinstance(value, str) else value
    return _fmt(value)


_NUMERIC = {"mean_best_acc", "collapse_rate", "mean_final_acc", "mean_spikes", "noise_floor",
            "grad_norm_p90", "grad_norm_max", "clip_fraction", "best_acc", "final_acc", "lr_sensitivity",
            "best_mean_best_acc"}


def _fmt(value: Any) -> str:
    value = normalize(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.3g}"
    return str(value)


def _sort_value(value: Any) -> Optional[str]:
    value = normalize(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None if value is not None else ""
    return repr(float(value))


def _ci(lo: Any, hi: Any) -> str:
    lo, hi = normalize(lo), normalize(hi)
    return "" if lo is None or hi is None else f"{lo:.3f}-{hi:.3f}"

