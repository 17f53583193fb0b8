"""`sweep refine` (where a round adds runs, and that it stops within its budget and resumes) and
`sweep find` (the range test stops at divergence and proposes a span holding the steepest descent)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import kill_process_tree, run_cli

from sweep.analysis.boundary.slices import slice_boundary
from sweep.analysis.refinement import plan_round, slice_resolved
from sweep.config import load_config
from sweep.tasks import build_task
from sweep.training import SettingSpec
from sweep.training.range_test import lr_range_test, propose_grid, ramp, steepest

AXES = ["lr", "clip", "batch_size"]


def _summary(counts: dict[float, tuple[int, int]], clip=None) -> pd.DataFrame:
    """A summary table of one slice: lr -> (collapsed, runs)."""
    return pd.DataFrame(
        [
            {
                "lr": lr,
                "clip": clip,
                "batch_size": 32,
                "n_runs": n,
                "n_collapsed": k,
                "n_undecided": 0,
            }
            for lr, (k, n) in counts.items()
        ]
    )


def _plan(counts, budget=100, **kw):
    return plan_round(
        _summary(counts),
        AXES,
        factor=10**0.25,
        budget=budget,
        new_seeds=3,
        extra_seeds=3,
        max_seeds=20,
        **kw,
    )


def test_a_round_places_its_cohorts_where_they_raise_the_safe_lr():
    # Two cohorts per open slice, chosen by a one-step look-ahead on the fitted curve: here a new
    # lr at the estimated lr_at_10 and one at the bracket's geometric midpoint, sqrt(0.1 * 1);
    # new lrs sit on the 1/8-decade ladder (10 ** -0.5 = 0.316).
    plan = _plan({0.01: (0, 3), 0.1: (0, 3), 1.0: (3, 3)})
    assert len(plan.additions) == 2 and all(a.why.startswith("new lr") for a in plan.additions)
    mid = [a for a in plan.additions if "geometric midpoint" in a.why]
    assert len(mid) == 1 and mid[0].setting["lr"] == pytest.approx(0.316, rel=1e-2)
    assert (
        mid[0].seeds == [0, 1, 2]
        and mid[0].setting["clip"] is None
        and mid[0].setting["batch_size"] == 32
    )
    assert any("estimated lr_at_10" in a.why for a in plan.additions)
    # The default sweep's slice (0/5 up to lr 0.3, 4/5 at 1): more seeds at the lr at the estimate,
    # continuing its seed numbers, and the bracket's midpoint sqrt(0.3) = 0.548 on the ladder: 0.562.
    plan = _plan({0.01: (0, 5), 0.03: (0, 5), 0.1: (0, 5), 0.3: (0, 5), 1.0: (4, 5)})
    more = [a for a in plan.additions if a.why.startswith("+3 seeds")]
    assert [(a.setting["lr"], a.seeds) for a in more] == [(0.3, [5, 6, 7])]
    assert any(a.setting["lr"] == 0.562 and "midpoint" in a.why for a in plan.additions)
    assert plan.open == ["batch size 32 without clipping"] and "lr <= 0.14" in plan.notes[0]


def test_a_round_extends_the_grid_when_nothing_collapses_or_everything_does():
    up = _plan({0.01: (0, 5), 0.1: (0, 5)})
    assert [a.setting["lr"] for a in up.additions] == [
        pytest.approx(0.3)
    ] and "extend upward" in up.additions[0].why
    down = _plan({0.1: (5, 5), 1.0: (5, 5)})
    assert [a.setting["lr"] for a in down.additions] == [pytest.approx(0.1 / 3, rel=1e-2)]
    assert "extend downward" in down.additions[0].why


def test_a_round_is_trimmed_to_its_budget_and_slices_take_turns():
    # refine.max_runs is a promise: the cohort that would cross it is cut to the runs that fit
    # (before: a round that did not fit whole was dropped, and a new lr went to every slice).
    plan = _plan({0.01: (0, 3), 0.1: (0, 3), 1.0: (3, 3)}, budget=2)
    assert (
        plan.runs == 2
        and len(plan.additions) == 1
        and "trimmed to 2 of 3 runs" in plan.additions[0].why
    )
    two = pd.concat(
        [
            _summary({0.01: (0, 3), 0.1: (0, 3), 1.0: (3, 3)}, clip=None),
            _summary({0.01: (0, 3), 0.1: (1, 3), 1.0: (3, 3)}, clip=1.0),
        ]
    )
    for budget in range(0, 14):
        plan = plan_round(
            two, AXES, factor=10**0.25, budget=budget, new_seeds=3, extra_seeds=3, max_seeds=20
        )
        assert plan.runs == min(budget, 12)
        if budget >= 4:  # both slices get their best cohort before either gets a second
            assert {a.setting["clip"] for a in plan.additions[:2]} == {None, 1.0}
    assert _plan({0.01: (0, 3), 0.1: (0, 3), 1.0: (3, 3)}, budget=0).additions == []


def test_a_resolved_slice_stops_the_round():
    lrs = np.geomspace(0.05, 1.0, 12)
    dense = {
        float(lr): (int(round(20 * p)), 20)
        for lr, p in zip(lrs, 1 / (1 + np.exp(-8 * np.log10(lrs / 0.3))))
    }
    fit = slice_boundary(_summary(dense).to_dict("records"))
    assert slice_resolved(fit, 10**0.25) and fit.at_10.hi / fit.safe.lr <= 10**0.25
    plan = _plan(dense)
    assert plan.additions == [] and plan.open == [] and len(plan.resolved) == 1
    # Every lr shown safe is not resolved: the edge lies further up.
    assert not slice_resolved(
        slice_boundary(_summary({0.1: (0, 40), 0.3: (0, 40)}).to_dict("records")), 10**0.25
    )


def _refine_until_done(
    p50: float, slope: float, rng: np.random.Generator, max_runs: int
) -> tuple[float, int]:
    """Simulated `sweep refine` on a true logistic collapse curve (slope per decade): the grid of
    lr 0.01-1 half a decade apart x 3 seeds, then rounds (at most 10) until resolved or the
    budget is spent. Returns the final safe LR (0 when below the grid) and the runs used."""
    counts = {float(lr): [0, 0] for lr in np.geomspace(0.01, 1.0, 5)}

    def train(lr, n):
        risk = 1 / (1 + np.exp(-slope * np.log10(lr / p50)))
        c = counts.setdefault(lr, [0, 0])
        c[0] += int(rng.binomial(n, risk))
        c[1] += n

    for lr in list(counts):
        train(lr, 3)
    for _ in range(10):
        runs = sum(n for _, n in counts.values())
        plan = _plan({lr: tuple(c) for lr, c in counts.items()}, budget=max_runs - runs)
        if not plan.additions:
            break
        for a in plan.additions:
            train(a.setting["lr"], a.runs)
    fit = slice_boundary(_summary({lr: tuple(c) for lr, c in counts.items()}).to_dict("records"))
    return (fit.safe.lr if fit.safe.kind == "inside" else 0.0), sum(n for _, n in counts.values())


def test_simulated_refine_keeps_its_budget_and_its_safe_lr_is_safe():
    # Seeded: 24 refines on steep and shallow curves (slope 3 and 8 per decade, the 50% point
    # anywhere in the grid's upper decade), 45 runs at most. The budget holds every time. The
    # safe LR it ends with lies where the true risk is above 10% in about 6% of 120 such refines
    # (5% nominal; 24 of them: at most 4 by noise, P(>= 5) ~ 2%), and typically within x1.6
    # below the true lr_at_10 (the median of safe / true lr_at_10 is 0.62 in 120).
    rng = np.random.default_rng(19)
    unsafe, gains = 0, []
    for rep in range(24):
        slope, p50 = (3.0, 8.0)[rep % 2], float(10 ** rng.uniform(-1, 0))
        lr10 = p50 * 10 ** (math.log(1 / 9) / slope)  # logit(0.1) = -ln 9, slope per decade
        safe, runs = _refine_until_done(p50, slope, rng, max_runs=45)
        assert runs <= 45
        unsafe += safe > lr10
        gains.append(safe / lr10)
    assert unsafe <= 4
    assert np.median(gains) > 0.4


def test_the_grid_proposal_spans_two_decades_below_the_divergence_point():
    assert propose_grid([0.8], [0.05]) == [0.003, 0.01, 0.03, 0.1, 0.3, 1.0]
    assert propose_grid([0.8, 2.5], [None]) == [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
    assert propose_grid([0.8], [0.0005])[0] == 0.0003  # down to a steepest descent below
    assert np.allclose(ramp(1e-4, 1.0, 5), [1e-4, 1e-3, 1e-2, 1e-1, 1.0])


def test_steepest_is_where_the_smoothed_loss_falls_fastest_per_decade():
    lrs = list(np.geomspace(1e-5, 10, 200))
    loss = [
        2.0 - 1.5 / (1 + math.exp(-4 * (math.log10(lr) + 2))) for lr in lrs
    ]  # falls fastest at 1e-2
    assert steepest(lrs, loss) == pytest.approx(1e-2, rel=0.15)


def test_the_range_test_stops_at_divergence_and_its_proposal_holds_the_steepest_lr():
    torch.set_num_threads(1)
    cfg = load_config(
        [
            "task=vector_sum",
            "task.n_train=512",
            "task.n_val=64",
            "model.layers=1",
            "model.hidden_size=16",
            "optimizer=sgd",
            "grid.batch_size=[32]",
        ]
    )
    task = build_task(cfg.task)
    spec = SettingSpec.build(cfg, {"lr": 1e-3, "clip": None, "batch_size": 32}, [0])
    r = lr_range_test(
        task, spec, seed=0, device=torch.device("cpu"), lr_min=1e-4, lr_max=1e3, steps=150
    )
    assert r.diverged_lr is not None and len(r.lrs) < 150  # stopped early
    assert r.diverged_lr == r.lrs[-1]
    finite = [s for s in r.smoothed if math.isfinite(s)]
    assert not math.isfinite(r.smoothed[-1]) or r.smoothed[-1] > 4 * min(finite) - 1e-9
    assert r.steepest_lr is not None and r.steepest_lr < r.diverged_lr
    grid = propose_grid([r.diverged_lr], [r.steepest_lr])
    assert grid[0] <= r.steepest_lr <= grid[-1] and grid[-1] >= r.diverged_lr


SLOW_TELL = """
# Test-only: every trial waits a second before it is completed.
import time
import optuna
_tell = optuna.study.Study.tell
def _slow_tell(self, *args, **kwargs):
    time.sleep(1.0)
    return _tell(self, *args, **kwargs)
optuna.study.Study.tell = _slow_tell
"""


@pytest.mark.slow
def test_refine_stops_within_its_budget_and_an_interrupted_refine_resumes(tmp_path):
    import os
    import subprocess
    import sys
    import time

    import optuna
    from conftest import ROOT

    # Two slices (clip none and 1): a new lr goes to its own slice only, and the last round is
    # trimmed, so the study ends with exactly refine.max_runs runs (before: 82 of 80).
    args = [
        "task=digits",
        "model.hidden_size=16",
        "model.layers=1",
        "epochs=3",
        "grid.lr=[0.1,3]",
        "grid.clip=[null,1.0]",
        "grid.batch_size=[128]",
        "seeds=2",
        "refine.max_runs=14",
        "refine.extra_seeds=2",
        "workers=1",
        f"results_dir={tmp_path}",
        "study.name=r",
    ]
    # Every trial stays RUNNING for a second before it completes (a test-only hook loaded at
    # start-up, as tests/test_resume.py's), so that the kill below lands inside a round's trial.
    hook = tmp_path / "slow-tell"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_TELL)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweep", "refine", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    storage = f"sqlite:///{tmp_path / 'lrsweep.db'}"
    deadline = time.monotonic() + 300
    in_round = False
    while time.monotonic() < deadline and proc.poll() is None:  # wait for a round's trial to run
        try:
            study = optuna.load_study(study_name="r", storage=storage)
            rounds = study.user_attrs.get("lrsweep.refine", {}).get("rounds")
            running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        except Exception:
            rounds, running = None, []
        # The starting grid is complete before the first round is recorded: a trial running
        # now is one of the round's.
        if rounds and any("worker" in t.user_attrs for t in running):
            in_round = True
            break
        time.sleep(0.05)
    assert in_round and proc.poll() is None, proc.stdout.read()[-3000:]
    kill_process_tree(proc)
    p = run_cli("refine", *args, timeout=900)  # the same command
    assert p.returncode == 0, p.stderr[-3000:]
    assert "refine: stopped after" in p.stdout
    study = optuna.load_study(study_name="r", storage=storage)
    died = [t for t in study.trials if "died" in t.user_attrs.get("fail_reason", "")]
    assert died  # the round's trial that the kill interrupted was taken back and run again
    runs = pd.read_csv(tmp_path / "r" / "runs.csv")
    assert not runs.duplicated(["lr", "clip", "batch_size", "seed"]).any()
    assert len(runs) <= 14, len(runs)  # refine.max_runs, whatever stopped it
    if "the run budget is spent" in p.stdout:
        assert len(runs) == 14, (len(runs), p.stdout[-2000:])
    rounds = study.user_attrs["lrsweep.refine"]["rounds"]
    assert rounds and all(r["added"] for r in rounds)
    assert "Refinement rounds" in (tmp_path / "r" / "report.html").read_text()
    verdicts = pd.read_csv(tmp_path / "r" / "verdicts.csv")
    assert {"lr_at_10", "lr_at_10_kind", "lr_at_50", "lr_at_50_lo", "lr_at_50_hi"} <= set(
        verdicts.columns
    )


@pytest.mark.slow
def test_sweep_run_with_grid_lr_auto_sweeps_the_range_tests_proposal(tmp_path):
    args = [
        "task=digits",
        "model.hidden_size=8",
        "model.layers=1",
        "epochs=1",
        "seeds=1",
        "grid.lr=auto",
        "grid.clip=[null]",
        "grid.batch_size=[128]",
        "find.seeds=1",
        "find.steps=40",
        "find.lr_max=100",
        "workers=1",
        f"results_dir={tmp_path}",
        "study.name=auto",
    ]
    p = run_cli("run", *args, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    line = next(x for x in p.stdout.splitlines() if x.startswith("proposed grid"))
    proposed = [float(v) for v in line.split("'[", 1)[1].split("]'", 1)[0].split(",")]
    runs = pd.read_csv(tmp_path / "auto" / "runs.csv")
    assert sorted(runs["lr"]) == pytest.approx(sorted(proposed)) and len(proposed) >= 3
    assert (tmp_path / "auto" / "figures" / "find.png").is_file()
    again = run_cli(
        "run", *args, timeout=600
    )  # the same command: the stored range test, nothing retrained
    assert again.returncode == 0 and "running the learning-rate range test" not in again.stdout
    assert "1 settings" not in again.stdout and f"{len(proposed)} done, 0 to run" in again.stdout
