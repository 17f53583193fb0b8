"""Everything under results/<study>/, rebuilt from the study storage alone.

Usage::

    paths = write_report(study, results_dir="results")   # what `sweep report` does

Reads the run records stored in the study, runs detection with the thresholds recorded there
(or the ones given), and writes runs.csv, summary.csv, curves.parquet, verdicts.csv, figures/,
report_standalone.html (the same page with every figure inside it: one file that can be mailed,
shown inline in a notebook or opened anywhere) and report.html (last, so that every figure it
references exists when it appears).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import re
from pathlib import Path
from typing import Any

from sweep.analysis.conclusions import compute_verdicts
from sweep.analysis.metric import asked_metric
from sweep.analysis.numbers import csv_ready
from sweep.analysis.start import shift_epochs, with_start_row
from sweep.analysis.tables import Tables, build_tables
from sweep.config import DetectConfig
from sweep.config.start import ATTR_START
from sweep.core.errors import UserError
from sweep.core.files import write_csv, write_parquet, write_text
from sweep.report.figures import write_figures
from sweep.report.html import render_html
from sweep.store.results import load_study_runs
from sweep.store.studies import ATTR_CONFIG, ATTR_FIND, ATTR_REFINE, ATTR_TASK


def study_tables(study: Any, detect: DetectConfig | None = None) -> Tables:
    """The three tables of a study; `detect` overrides the thresholds recorded in the study."""
    config = study.user_attrs.get(ATTR_CONFIG, {})
    task = study.user_attrs.get(ATTR_TASK, {})
    if detect is None:
        detect = DetectConfig(**config.get("detect", {}))
    axes = list(config.get("grid", {"lr": [], "clip": [], "batch_size": []}))
    start = study.user_attrs.get(ATTR_START)  # a sweep from a checkpoint (sweep.analysis.start)
    runs = with_start_row(load_study_runs(study), start)
    task = stated_by_runs(task, [record for _, record, _ in runs])
    n_val = int(task["n_val"]) if task.get("n_val") else None
    chance = float(task["chance"]) if task.get("chance") is not None else None
    tables = build_tables(
        runs,
        chance,
        detect,
        axes=axes,
        n_val=n_val,
        asked=asked_metric({**config, "detect": dataclasses.asdict(detect)}),
        chance_loss=task.get("chance_loss"),
    )
    shift_epochs(tables, start)
    tables.meta = {
        "config": config,
        "task": task,
        "detect": dataclasses.asdict(detect),
        "study": study.study_name,
        "find": study.user_attrs.get(ATTR_FIND),
        "refine": study.user_attrs.get(ATTR_REFINE),
        "start": start,
    }
    return tables


def stated_by_runs(task: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The study's task facts, with n_val and chance taken from the runs' own logs where the
    config left them to the log (`trainer.n_val=log`): the median over the runs that state them."""
    import statistics

    task = dict(task)
    for key in ("n_val", "chance"):
        if task.get(key) is None:
            stated = [r[key] for r in records if r.get(key) is not None]
            if stated:
                task[key] = statistics.median(stated)
    return task


def write_report(
    study: Any, results_dir: str | Path, detect: DetectConfig | None = None
) -> dict[str, Path]:
    """Write the tables, verdicts, figures and report.html of `study` under results_dir/<study>/.

    Returns:
        name -> path of every file written: "runs", "summary", "curves", "verdicts", "verdict"
        (verdict.txt: the verdict as plain text, what `sweep run` prints at its end), one entry per
        figure named by its path relative to the study folder ("figures/lr_curves.png"),
        "report_standalone" (report_standalone.html) and "report" (report.html) last.
    """
    out = Path(results_dir) / study.study_name
    tables = study_tables(study, detect)
    verdicts = compute_verdicts(tables)
    # The CSVs print what the data resolve (accuracies as counts of n_val, 4 significant digits
    # elsewhere: sweep.analysis.numbers); the parquet and the tables in memory keep full precision.
    n_val = (tables.meta.get("task") or {}).get("n_val")
    n_val = int(n_val) if n_val else None
    axes = list(tables.axes)
    paths = {
        "runs": write_csv(csv_ready(tables.runs, axes, n_val, runs=1), out / "runs.csv"),
        "summary": write_csv(
            csv_ready(tables.summary, axes, n_val, runs="n_runs"), out / "summary.csv"
        ),
        "curves": write_parquet(tables.curves, out / "curves.parquet"),
        "verdicts": write_csv(csv_ready(verdicts.slices, axes, n_val), out / "verdicts.csv"),
    }
    paths["verdict"] = write_text(out / "verdict.txt", verdicts.text(study.study_name))
    figures = write_figures(tables, out)
    paths.update({f.name: f.path for f in figures})
    page = render_html(tables, verdicts, figures)
    paths["report_standalone"] = write_text(
        out / "report_standalone.html", standalone_html(page, out)
    )
    paths["report"] = write_text(out / "report.html", page)
    return paths


_FIGURE_SRC = re.compile(r'(src|href)="([^":#?]+\.png)"')


def png_data_uri(path: Path) -> str:
    """A PNG file as a data: URI (an image that travels inside the page)."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def standalone_html(page: str, folder: Path) -> str:
    """`page` (report.html's text) with every figure it shows embedded as a data: URI, so that
    the page needs no file beside it. A link to a figure's file points at the figures section
    instead (browsers refuse to open a data: URI from a link)."""
    root = Path(folder).resolve()

    def embed(m: re.Match[str]) -> str:
        attr, rel = m.group(1), html.unescape(m.group(2))
        path = (root / rel).resolve()
        if root not in path.parents or not path.is_file():
            return m.group(0)  # not one of the study's figures: left as it is
        if attr == "href":
            return 'href="#figures"'
        return f'src="{png_data_uri(path)}"'

    return _FIGURE_SRC.sub(embed, page)


def results_line(folder: Path, paths: dict[str, Path]) -> str:
    """One line saying where the results are: the report first, then what else was written."""
    figures = sum(1 for p in paths.values() if p.suffix == ".png")
    tables = [p.name for p in paths.values() if p.suffix in (".csv", ".parquet")]
    report = paths.get("report")
    lead = f"open {report}" if report else f"results in {folder}/"
    return f"{lead}  ({', '.join(tables)}; {figures} figures in {folder}/figures/)"


def write_results(study: Any, results_dir: str, detect: Any = None) -> dict[str, Any]:
    """`write_report`, with a full disk or a permission problem told as a UserError (every file
    is written atomically, so the previous good ones are still in place)."""
    try:
        return write_report(study, results_dir, detect=detect)
    except OSError as e:
        where = e.filename or results_dir
        raise UserError(
            f"results_dir: cannot write {where} ({e.strerror or type(e).__name__}); no file was left half-written "
            f"and the study holds every result: free some space or pick another results_dir=PATH, then "
            f"run `sweep report study.name={study.study_name}`"
        ) from None
