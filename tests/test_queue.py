"""The work queue (sweep.store.queue), fast, against Optuna's in-memory storage and SQLite; and one
stress test of 8 worker processes sharing 80 tiny trials on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import optuna
import pytest
from conftest import ROOT
from optuna.trial import TrialState

from sweep.config import load_config
from sweep.core.errors import UserError
from sweep.store import (
    drop_duplicate_waiting,
    enqueue,
    fail_and_requeue,
    open_or_create_study,
    open_storage,
    plan_work,
    pop_trial,
)

TASK = {
    "name": "digits",
    "kind": "classification",
    "chance": 0.1,
    "n_val": 450,
    "fingerprint": "data",
}
GRID = ["grid.lr=[0.01,0.1]", "grid.clip=[null]", "grid.batch_size=[16,64]", "seeds=2"]


@pytest.fixture(params=["memory", "sqlite"])
def storage(request, tmp_path):
    if request.param == "memory":
        return optuna.storages.InMemoryStorage()
    return open_storage(f"sqlite:///{tmp_path / 'q.db'}")


def _study(storage, *overrides):
    cfg = load_config([*GRID, "study.name=q", *overrides])
    study = open_or_create_study(storage, cfg, TASK)
    return cfg, study


def _queue(storage):
    cfg, study = _study(storage)
    enqueue(study, plan_work(cfg, study.get_trials(deepcopy=False)))
    return cfg, study


def test_every_trial_is_claimed_once(storage):
    cfg, study = _queue(storage)
    claimed = []
    while (trial := pop_trial(study)) is not None:
        claimed.append(trial.number)
    assert sorted(claimed) == [t.number for t in study.get_trials()] and len(claimed) == 4
    assert all(t.state == TrialState.RUNNING for t in study.get_trials())
    assert pop_trial(study) is None


def test_the_longest_work_goes_first(storage):
    cfg, study = _queue(storage)
    order = [pop_trial(study).user_attrs["setting"]["batch_size"] for _ in range(4)]
    assert order == [16, 16, 64, 64]  # most optimizer steps (seeds / batch size) first


def test_queueing_the_same_grid_twice_adds_nothing(storage):
    cfg, study = _queue(storage)
    assert plan_work(cfg, study.get_trials(deepcopy=False)) == []
    more = load_config([*GRID, "study.name=q", "seeds=3"])
    work = plan_work(more, study.get_trials(deepcopy=False))
    assert [seeds for _, seeds in work] == [[2]] * 4  # only the missing seed of each setting


def test_duplicates_a_concurrent_launcher_queued_are_dropped(storage):
    cfg, study = _queue(storage)
    work = plan_work(cfg, [])  # what a second launcher, started at the same moment, would queue
    for setting, seeds in work:
        params = {"lr": setting["lr"], "batch_size": setting["batch_size"]}
        dists = {
            "lr": optuna.distributions.FloatDistribution(setting["lr"], setting["lr"], log=True),
            "batch_size": optuna.distributions.IntDistribution(
                setting["batch_size"], setting["batch_size"]
            ),
        }
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=params,
                distributions=dists,
                user_attrs={"setting": setting, "seeds": seeds},
            )
        )
    assert drop_duplicate_waiting(study) == 4
    waiting = [t for t in study.get_trials() if t.state == TrialState.WAITING]
    assert len(waiting) == 4 and max(t.number for t in waiting) == 3  # the earlier copies win
    assert all(
        t.user_attrs.get("discarded") for t in study.get_trials() if t.state == TrialState.FAIL
    )


def test_a_failed_trial_is_queued_again_with_its_setting_and_seeds(storage):
    cfg, study = _queue(storage)
    trial = pop_trial(study)
    assert fail_and_requeue(study, trial, "worker process died")
    assert not fail_and_requeue(study, trial, "again")  # already failed: no second copy
    copies = [
        t
        for t in study.get_trials()
        if t.state == TrialState.WAITING and t.user_attrs["setting"] == trial.user_attrs["setting"]
    ]
    assert len(copies) == 1 and copies[0].user_attrs["seeds"] == trial.user_attrs["seeds"]
    assert copies[0].system_attrs["retry_history"] == [trial.number]
    assert study.get_trials()[trial.number].user_attrs["fail_reason"] == "worker process died"


def test_an_incomparable_change_is_refused(storage):
    _study(storage)
    with pytest.raises(
        UserError, match=r"model.hidden_size: study 'q' was run with model.hidden_size=64"
    ):
        _study(storage, "model.hidden_size=32")
    _study(
        storage, "grid.lr=[0.3]", "seeds=5", "detect.drop=0.3"
    )  # grid, seeds, thresholds may change


# --------------------------------------------------------------------------- many processes


WORKER = textwrap.dedent("""
    import json, sys
    from sweep.store import open_storage, pop_trial, load_study
    url, out = sys.argv[1], sys.argv[2]
    study = load_study(open_storage(url), "stress")
    claimed = []
    while (trial := pop_trial(study)) is not None:
        claimed.append(trial.number)
        study.tell(trial.number, values=[0.5, 0.0])
    json.dump(claimed, open(out, "w"))
""")


def _stress(url: str, tmp_path, workers: int = 8, trials: int = 80) -> None:
    storage = open_storage(url)
    if "stress" in optuna.get_all_study_names(storage):
        optuna.delete_study(study_name="stress", storage=storage)
    cfg = load_config(
        [
            f"grid.lr=[{','.join(str(0.001 * (i + 1)) for i in range(trials))}]",
            "grid.clip=[null]",
            "grid.batch_size=[32]",
            "seeds=1",
            "study.name=stress",
            f"study.storage={url}",
        ]
    )
    study = open_or_create_study(storage, cfg, TASK)
    enqueue(study, plan_work(cfg, []))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, str(tmp_path / f"w{i}.json")], cwd=ROOT
        )
        for i in range(workers)
    ]
    assert [p.wait(timeout=600) for p in procs] == [0] * workers
    claims = [n for i in range(workers) for n in json.load(open(tmp_path / f"w{i}.json"))]
    assert len(claims) == trials and len(set(claims)) == trials  # every trial exactly once
    states = [t.state for t in optuna.load_study(study_name="stress", storage=storage).trials]
    assert states.count(TrialState.COMPLETE) == trials and TrialState.FAIL not in states
    assert (
        sum(1 for i in range(workers) if json.load(open(tmp_path / f"w{i}.json"))) > 1
    )  # really shared


@pytest.mark.slow
def test_eight_processes_share_80_trials_on_sqlite(tmp_path):
    _stress(f"sqlite:///{tmp_path / 'stress.db'}", tmp_path)


@pytest.mark.slow
@pytest.mark.postgres
def test_eight_processes_share_80_trials_on_postgres(tmp_path, postgres_url):
    _stress(postgres_url, tmp_path)


# --------------------------------------------------------------------------- launchers at once

# A launcher (`sweep worker` with a grid: it records the grid as `sweep run` does, and writes no
# report), writing the study's config only once the other launcher has read it too (or 5 s have
# passed: with the study locked, the other cannot get there before this one is done).
SLOW_CONFIG_WRITE = textwrap.dedent("""
    import os, sys, time
    import optuna

    real = optuna.study.Study.set_user_attr
    barrier = sys.argv.pop(1)

    def meet_then_write(self, key, value):
        if key == "lrsweep.config":
            open(os.path.join(barrier, str(os.getpid())), "w").close()
            end = time.monotonic() + 5
            while len(os.listdir(barrier)) < 2 and time.monotonic() < end:
                time.sleep(0.05)
        return real(self, key, value)

    optuna.study.Study.set_user_attr = meet_then_write
    from sweep.cli import main
    main(sys.argv[1:])
""")


def _two_launchers(tmp_path, url: str, name: str) -> dict:
    common = [
        "model.hidden_size=4",
        "model.layers=1",
        "epochs=1",
        "seeds=1",
        "grid.clip=[null]",
        "grid.batch_size=[256]",
        "workers=1",
        f"study.name={name}",
        f"study.storage={url}",
    ]
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                SLOW_CONFIG_WRITE,
                str(barrier),
                "worker",
                f"grid.lr={lrs}",
                *common,
                f"results_dir={tmp_path / f'r{i}'}",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, lrs in enumerate(["[0.1,0.2]", "[0.3,0.4]"])
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    return study


@pytest.mark.slow
def test_two_launchers_started_together_keep_both_grids_on_sqlite(tmp_path):
    study = _two_launchers(tmp_path, f"sqlite:///{tmp_path / 'both.db'}", "both")
    config = study.user_attrs["lrsweep.config"]
    assert sorted(config["grid"]["lr"]) == [0.1, 0.2, 0.3, 0.4]
    done = {t.params["lr"] for t in study.trials if t.state == TrialState.COMPLETE}
    assert done == {0.1, 0.2, 0.3, 0.4}


@pytest.mark.slow
@pytest.mark.postgres
def test_two_launchers_started_together_keep_both_grids_on_postgres(tmp_path, postgres_url):
    import uuid

    name = f"both-{uuid.uuid4().hex[:8]}"
    study = _two_launchers(tmp_path, postgres_url, name)
    assert sorted(study.user_attrs["lrsweep.config"]["grid"]["lr"]) == [0.1, 0.2, 0.3, 0.4]


def _dead_process() -> dict:
    """The identity of a worker process that has exited (its pid is gone or reused)."""
    import psutil

    from sweep.store.workers import hostname

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(p.pid).create_time()
    p.wait()
    return {"host": hostname(), "pid": p.pid, "started": started}


def test_a_worker_killed_between_its_claim_and_its_identity_is_known_dead_at_once(storage):
    # The window pop_trial -> claim_for: the trial is RUNNING without "worker"; its claimant mark
    # (written before the claim) says who took it, so the same command reclaims it at once.
    from sweep.store.workers import this_worker, worker_gone

    cfg, study = _queue(storage)
    dead = _dead_process()
    trial = pop_trial(study, dead)
    assert "worker" not in trial.user_attrs
    why = worker_gone(trial, grace_seconds=3600)
    assert why == f"its worker process (pid {dead['pid']} on {dead['host']}) died"
    # A live claimant (this process) keeps its trial: nobody knows which claimant won yet.
    trial = pop_trial(study, this_worker())
    assert worker_gone(trial, grace_seconds=3600) is None
    # A trial claimed with no mark at all (an older lrsweep) waits out the grace period.
    trial = pop_trial(study)
    assert worker_gone(trial, grace_seconds=3600) is None
    assert worker_gone(trial, grace_seconds=0).startswith("no heartbeat for")


def test_a_losing_claimant_never_overwrites_the_winners_identity(storage):
    from sweep.store._optuna import storage_of, trial_id
    from sweep.store.queue import claimant_key, claimants
    from sweep.store.workers import claim_for, this_worker, worker_gone

    cfg, study = _queue(storage)
    me, dead = this_worker(), _dead_process()
    trial = pop_trial(study, me)
    claim_for(study, trial, me)
    # Another worker, working from a stale list of WAITING trials, marks the same trial and loses.
    storage_of(study).set_trial_user_attr(trial_id(trial), claimant_key(dead), dead)
    trial = storage_of(study).get_trial(trial_id(trial))
    assert trial.user_attrs["worker"] == me and len(claimants(trial)) == 2
    assert worker_gone(trial, grace_seconds=3600) is None  # its worker (me) is alive
