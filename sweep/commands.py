"""The subcommands behind the CLI: `run` and `worker` (launch workers), `find` (range test),
`refine` (rounds near the stability boundary), `report` and `status` (read-only views of a
study storage).

`sweep report` and `sweep status` import no torch: the launcher (training) is imported only by
the commands that train.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sweep.config import Config
from sweep.core.files import check_writable
from sweep.core.redact import redact_url
from sweep.store.counts import count_settings, stored_grid
from sweep.store.storage import open_storage
from sweep.store.studies import load_study, study_names


def report_command(cfg: Config, set_keys: set[str]) -> int:
    """Rebuild results/<study>/ from the storage; detect.* overrides re-run detection."""
    storage = open_storage(cfg.storage_url(), create=False)
    study = load_study(storage, cfg.study.name)
    check_writable(cfg.study_dir)
    from sweep.report.write import results_line, write_results  # (matplotlib: after the checks)

    detect = cfg.detect if any(k.startswith("detect") for k in set_keys) else None
    paths = write_results(study, cfg.results_dir, detect=detect)
    print(results_line(paths["runs"].parent, paths))
    return 0


def status_rows(storage: Any) -> list[dict[str, Any]]:
    """One row per study; `notes` (not a column): the lines printed under the table."""
    from sweep.store.studies import ATTR_CONFIG

    rows = []
    for name in study_names(storage):
        study = load_study(storage, name)
        settings, seeds = stored_grid(study)
        grace = ((study.user_attrs.get(ATTR_CONFIG) or {}).get("study") or {}).get(
            "grace_seconds", 60
        )
        snap = count_settings(study, settings, seeds, grace)
        last = (
            dt.datetime.fromtimestamp(snap.last_activity).strftime("%Y-%m-%d %H:%M:%S")
            if snap.last_activity
            else "-"
        )
        stale = f" ({len(snap.stale)} stale)" if snap.stale else ""
        notes = []
        if snap.stale:
            notes.append(
                f"{name}: {len(snap.stale)} trial(s) stale ({', '.join(snap.stale[:3])}): their "
                f"worker is gone; the next `sweep run` or `sweep worker` on this study takes them back"
            )
        notes += [f"{name}: given up: {why}" for why in snap.gave_up]
        rows.append(
            {
                "study": name,
                "settings": snap.total,
                "done": snap.done,
                "running": f"{snap.running - len(snap.stale)}{stale}",
                "failed": snap.failed_settings + len(snap.gave_up),
                "remaining": snap.total - snap.done,
                "runs": snap.complete_runs,
                "collapsed": snap.collapsed_runs,
                "crashed": snap.crashed_runs,
                "last activity": last,
                "notes": notes,
            }
        )
    return rows


def status_command(cfg: Config) -> int:
    storage = open_storage(cfg.storage_url(), create=False)
    rows = status_rows(storage)
    print(f"storage: {redact_url(cfg.storage_url())}")
    if not rows:
        print("no studies yet; start one with `sweep run`")
        return 0
    cols = [c for c in rows[0] if c != "notes"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
    for r in rows:
        for note in r["notes"]:
            print(note)
    return 0


def run_command(cfg: Config, write_results: bool, set_keys: set[str] | None = None) -> int:
    """`sweep run` (train, then write the report) and `sweep worker` (train only)."""
    from sweep.launch.launcher import launch  # torch: only for the commands that train

    return launch(cfg, write_results=write_results, set_keys=set_keys)


def find_command(cfg: Config) -> int:
    """`sweep find`: the learning-rate range test (torch: imported here)."""
    from sweep.launch.find import find_command as find

    return find(cfg)


def refine_command(cfg: Config) -> int:
    """`sweep refine`: rounds of runs where they narrow the stability boundary."""
    from sweep.launch.refine import refine_command as refine

    return refine(cfg)
