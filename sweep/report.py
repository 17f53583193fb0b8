"""Everything under results/<study>/, rebuilt from the study storage alone.

Usage::

    paths = write_report(storage, study_name, results_dir="results")   # `sweep report`

Reads the run records stored in the study, runs detection with the thresholds recorded there
(or the ones given), and writes runs.csv, summary.csv, curves.parquet, figures/ and report.html.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

from sweep.analysis import Tables, build_tables, load_study_runs
from sweep.config import DetectConfig
from sweep.outputs import write_csv, write_parquet
from sweep.study import ATTR_CONFIG, ATTR_TASK


def study_tables(study: Any, detect: Optional[DetectConfig] = None) -> Tables:
    """The three tables of a study; `detect` overrides the thresholds recorded in the study."""
    config = study.user_attrs.get(ATTR_CONFIG, {})
    task = study.user_attrs.get(ATTR_TASK, {})
    if detect is None:
        detect = DetectConfig(**config.get("detect", {}))
    axes = list(config.get("grid", {"lr": [], "clip": [], "batch_size": []}))
    tables = build_tables(load_study_runs(study), float(task.get("chance", 0.0)), detect, axes=axes)
    tables.meta = {"config": config, "task": task, "detect": dataclasses.asdict(detect), "study": study.study_name}
    return tables


def write_report(study: Any, results_dir: str | Path, detect: Optional[DetectConfig] = None) -> dict[str, Path]:
    """Write the tables, figures and report.html of `study` under results_dir/<study>/."""
    out = Path(results_dir) / study.study_name
    tables = study_tables(study, detect)
    paths = {
        "runs": write_csv(tables.runs, out / "runs.csv"),
        "summary": write_csv(tables.summary, out / "summary.csv"),
        "curves": write_parquet(tables.curves, out / "curves.parquet"),
    }
    return paths
