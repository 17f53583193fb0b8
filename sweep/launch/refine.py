"""`sweep refine`: rounds that add learning rates and seeds where they raise the safe LR, until
every slice's safe LR is within refine.factor below the upper end of lr_at_10's 95% interval, or
refine.max_runs (the most runs the study may hold) is spent, or refine.max_rounds are done.

Usage: ``refine_command(cfg)`` (the same study and overrides as `sweep run`). Each round reads the
study's results, plans its additions (`sweep.analysis.refinement.plan_round`), records them with
the reason in the study (`lrsweep.refine`, shown in the report), and queues them as work on single
settings (a new lr is added to its slice only, not to the whole grid, so a round never holds more
runs than planned) for the usual local workers: workers on other machines, PostgreSQL, kill/resume
and `sweep report` work unchanged. Stopped and run again, it first finishes the round it was in,
then plans the next from what is stored.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sweep.analysis.refinement import plan_round
from sweep.config import Config
from sweep.store.studies import ATTR_CONFIG, ATTR_REFINE, load_study


def _queued_runs(study: Any) -> int:
    from optuna.trial import TrialState

    return sum(
        len(t.user_attrs.get("seeds", []))
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    )


def refine_command(cfg: Config) -> int:
    from sweep.launch.launcher import launch
    from sweep.launch.preparation import open_study_storage
    from sweep.report.write import results_line, study_tables, write_results

    # The starting grid (grid.lr=auto: after its range test), or the round a stop interrupted.
    code = launch(cfg, write_results=False)
    if code:
        return code
    study = load_study(open_study_storage(cfg), cfg.study.name)
    rounds = list(study.user_attrs.get(ATTR_REFINE, {}).get("rounds", []))
    stored_lrs = tuple(float(v) for v in study.user_attrs[ATTR_CONFIG]["grid"]["lr"])
    base = dataclasses.replace(
        cfg, grid=dataclasses.replace(cfg.grid, lr=stored_lrs, lr_auto=False)
    )
    stop = ""
    while True:
        tables = study_tables(study)
        runs = int(tables.summary["n_runs"].sum()) + _queued_runs(study)
        budget = cfg.refine.max_runs - runs
        plan = plan_round(
            tables.summary,
            tables.axes,
            cfg.refine.factor,
            budget,
            cfg.seeds,
            cfg.refine.extra_seeds,
            cfg.refine.max_seeds,
        )
        if not plan.open:
            stop = (
                f"every slice's safe lr is within x{cfg.refine.factor:.2f} below the upper end of "
                f"lr_at_10's 95% interval"
            )
        elif budget <= 0:
            stop = f"the run budget is spent (refine.max_runs={cfg.refine.max_runs}, {runs} runs)"
        elif not plan.additions:
            stop = (
                f"every lr near the boundary holds refine.max_seeds={cfg.refine.max_seeds} runs; "
                f"raise it to refine further"
            )
        elif len(rounds) >= cfg.refine.max_rounds:
            stop = f"refine.max_rounds={cfg.refine.max_rounds} rounds done"
        if stop:
            break
        rounds.append(
            {
                "round": len(rounds) + 1,
                "runs_before": runs,
                "runs_added": plan.runs,
                "added": [
                    {"setting": a.setting, "seeds": a.seeds, "why": a.why} for a in plan.additions
                ],
                "state": plan.notes,
            }
        )
        _record(study, rounds, "")
        print(f"refine round {len(rounds)}: {runs} runs so far; adding {plan.runs} runs")
        for a in plan.additions:
            print(f"  {a.why}")
        code = launch(
            base, write_results=False, extra_work=[(a.setting, a.seeds) for a in plan.additions]
        )
        if code:
            return code
    _record(study, rounds, stop)
    print(f"refine: stopped after {len(rounds)} round(s): {stop}")
    for note in plan.notes:
        print(f"  {note}")
    paths = write_results(study, cfg.results_dir)
    print(results_line(cfg.study_dir, paths))
    return 0


def _record(study: Any, rounds: list[dict[str, Any]], stop: str) -> None:
    study.set_user_attr(ATTR_REFINE, {"rounds": rounds, "stopped": stop})
