"""`sweep report` and `sweep status`: read-only views of a study storage."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sweep.config import Config
from sweep.errors import UserError
from sweep.outputs import check_writable
from sweep.progress import count_progress, stored_grid
from sweep.study import load_study, open_storage, redact_url, study_names


def report_command(cfg: Config, set_keys: set[str]) -> int:
    """Rebuild results/<study>/ from the storage; detect.* overrides re-run detection."""
    storage = open_storage(cfg.storage_url(), create=False)
    study = load_study(storage, cfg.study.name)
    check_writable(cfg.study_dir)
    from sweep.report import results_line  # (imports torch and matplotlib: after the checks)

    detect = cfg.detect if any(k.startswith("detect") for k in set_keys) else None
    paths = write_results(study, cfg.results_dir, detect=detect)
    print(results_line(paths["runs"].parent, paths))
    return 0


def write_results(study: Any, results_dir: str, detect: Any = None) -> dict[str, Any]:
    """`write_report`, with a full disk or a permission problem told as a UserError (every file
    is written atomically, so the previous good ones are still in place)."""
    from sweep.report import write_report

    try:
        return write_report(study, results_dir, detect=detect)
    except OSError as e:
        where = e.filename or results_dir
        raise UserError(
            f"results_dir: cannot write {where} ({e.strerror or type(e).__name__}); no file was left half-written "
            f"and the study holds every result: free some space or pick another results_dir=PATH, then "
            f"run `sweep report study.name={study.study_name}`"
        ) from None


def status_rows(storage: Any) -> list[dict[str, Any]]:
    rows = []
    for name in study_names(storage):
        study = load_study(storage, name)
        settings, seeds = stored_grid(study)
        snap = count_progress(study, settings, seeds)
        last = dt.datetime.fromtimestamp(snap.last_activity).strftime("%Y-%m-%d %H:%M:%S") if snap.last_activity else "-"
        rows.append({
            "study": name,
            "settings": snap.total,
            "done": snap.done,
            "running": snap.running,
            "failed": snap.failed_settings,
            "remaining": snap.total - snap.done,
            "runs": snap.complete_runs,
            "collapsed": snap.collapsed_runs,
            "last activity": last,
        })
    return rows


def status_command(cfg: Config) -> int:
    storage = open_storage(cfg.storage_url(), create=False)
    rows = status_rows(storage)
    print(f"storage: {redact_url(cfg.storage_url())}")
    if not rows:
        print("no studies yet; start one with `sweep run`")
        return 0
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
    return 0
