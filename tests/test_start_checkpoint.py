"""Starting every run of a sweep from one saved state (issue 28): lrsweep's own loop, the kept
states, the refusals, and how the tables and the verdict read a sweep that started from epoch N."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT, kill_process_tree, run_cli, start_cli

from sweep.analysis.start import from_epoch_text, shift_epochs, with_start_row
from sweep.analysis.tables import build_tables
from sweep.config import DetectConfig, comparable_part, load_config
from sweep.config.start import kept_paths
from sweep.core.errors import UserError
from sweep.core.records import RunRecord, decode_record, encode_record
from sweep.tasks import build_task
from sweep.training import train_setting
from sweep.training.packed import PackedTrainer
from sweep.training.separate import SeedGroup
from sweep.training.spec import SettingSpec
from sweep.training.start_state import check_start_state, load_start, read_checkpoint

BASE = ["task=digits", "model.hidden_size=8", "model.layers=1", "optimizer=adam", "study.name=orig"]
SETTING = {"lr": 0.01, "clip": None, "batch_size": 64}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """Two seeds of lrsweep's loop trained 3 epochs with Adam, their states kept after epoch 2."""
    results = tmp_path_factory.mktemp("start")
    cfg = load_config([*BASE, "epochs=3", "checkpoint.keep_epochs=[2]", f"results_dir={results}"])
    task = build_task(cfg.task)
    records = train_setting(task, cfg, SETTING, [0, 1], CPU)
    return cfg, task, records, results


def _from(original, *extra: str, epochs: int = 1):
    cfg, _, _, results = original
    state, _ = kept_paths(cfg.study_dir, SETTING, 0, 2)
    return load_config(
        [
            *BASE,
            f"epochs={epochs}",
            f"start.checkpoint={state}",
            f"results_dir={results}",
            "study.name=from",
            *extra,
        ]
    )


def test_kept_state_holds_the_seeds_network_optimizer_and_curve(original):
    cfg, _, records, _ = original
    state, facts = kept_paths(cfg.study_dir, SETTING, 1, 2)
    ckpt = read_checkpoint(state)
    assert ckpt.epoch == 2 and ckpt.facts["seed"] == 1 and ckpt.facts["setting"] == SETTING
    assert set(ckpt.model) == {
        "rnn.weight_ih_l0",
        "rnn.weight_hh_l0",
        "rnn.bias_ih_l0",
        "rnn.bias_hh_l0",
        "head.weight",
        "head.bias",
    }
    assert len(ckpt.optimizer) == 6 and all(
        {"exp_avg", "exp_avg_sq", "step"} <= set(e) for e in ckpt.optimizer
    )
    kept = json.loads(facts.read_text())
    assert kept["from_run"] == "orig/lr0.01-clipnone-bs64/seed-1@2"
    assert kept["curves"]["val_acc"] == pytest.approx(records[1].curves["val_acc"][:2])


@pytest.mark.parametrize("packed", [False, True], ids=["separate", "packed"])
def test_every_seed_starts_from_the_saved_weights_and_optimizer_state(original, packed):
    _, task, _, _ = original
    cfg = _from(original)
    start = load_start(cfg)
    spec = SettingSpec.build(cfg, SETTING, [0, 1, 2])
    group = (PackedTrainer if packed else SeedGroup)(task, spec, CPU)
    start.apply(group)
    ckpt = start.ckpt
    if packed:
        w_hh = group.model.w_hh_l0.detach()
        for k in range(3):
            assert torch.equal(w_hh[k], ckpt.model["rnn.weight_hh_l0"].t())
        moments = group.optimizer.state[group.model.w_hh_l0]["exp_avg"]
        for k in range(3):
            assert torch.equal(moments[k], ckpt.optimizer[1]["exp_avg"].t())
        assert group.optimizer.param_groups[0]["lr"] == 0.01
    else:
        for t in group.trainers:
            assert all(torch.equal(v, ckpt.model[k]) for k, v in t.model.state_dict().items())
            first = next(iter(t.model.parameters()))
            assert torch.equal(t.optimizer.state[first]["exp_avg"], ckpt.optimizer[0]["exp_avg"])
            assert t.optimizer.param_groups[0]["lr"] == 0.01  # the sweep's lr, not the checkpoint's


def test_a_fresh_optimizer_keeps_no_state_of_the_checkpoint(original):
    _, task, _, _ = original
    cfg = _from(original, "start.optimizer=fresh")
    group = SeedGroup(task, SettingSpec.build(cfg, SETTING, [0]), CPU)
    load_start(cfg).apply(group)
    assert not group.trainers[0].optimizer.state
    assert comparable_part(cfg)["start.optimizer"] == "fresh"


def test_separate_and_packed_runs_from_a_checkpoint_agree(original):
    _, task, _, _ = original
    runs = {}
    for packing in ("off", "on"):
        cfg = _from(original, f"packing={packing}", epochs=2)
        runs[packing] = train_setting(task, cfg, {**SETTING, "lr": 0.02}, [0, 1], CPU)
    for a, b in zip(runs["off"], runs["on"]):
        assert a.curves["val_loss"] == pytest.approx(b.curves["val_loss"], rel=1e-4)


def test_a_tiny_lr_continues_exactly_where_the_checkpoint_was(original):
    """With an lr of 1e-12 nothing moves: each seed's first epoch scores what the kept run
    scored at epoch 2, so the state (and no fresh initialisation) is what every seed starts from."""
    _, task, records, _ = original
    cfg = _from(original)
    out = train_setting(task, cfg, {**SETTING, "lr": 1e-12}, [0, 3], CPU)
    for r in out:
        assert r.curves["val_acc"][0] == records[0].curves["val_acc"][1]
        assert r.curves["val_loss"][0] == pytest.approx(records[0].curves["val_loss"][1], rel=1e-5)


def test_seeds_vary_the_data_order_from_the_same_state(original):
    _, task, _, _ = original
    a, b = train_setting(task, _from(original), {**SETTING, "lr": 0.03}, [0, 1], CPU)
    assert a.curves["train_loss"] != b.curves["train_loss"]


def test_keeping_from_a_packed_pack_gives_each_seeds_own_network(original, tmp_path):
    _, task, _, _ = original
    states = {}
    for packing in ("off", "on"):
        cfg = load_config(
            [
                *BASE,
                "epochs=1",
                "checkpoint.keep_epochs=[1]",
                f"packing={packing}",
                f"results_dir={tmp_path / packing}",
            ]
        )
        train_setting(task, cfg, SETTING, [0, 1], CPU)
        states[packing] = read_checkpoint(kept_paths(cfg.study_dir, SETTING, 1, 1)[0])
    off, on = states["off"], states["on"]
    for k, v in off.model.items():
        assert torch.allclose(v, on.model[k], atol=1e-5), k
    for a, b in zip(off.optimizer, on.optimizer):
        assert torch.allclose(a["exp_avg_sq"], b["exp_avg_sq"], rtol=1e-3, atol=1e-9)


# ----------------------------------------------------------------------------- refusals


def _refused(cfg, task) -> str:
    with pytest.raises(UserError) as e:
        check_start_state(cfg, task, [cfg])
    assert "\n" not in str(e.value)
    return str(e.value)


def test_refusals_name_the_problem_and_the_fix(original, tmp_path):
    cfg0, task, _, results = original
    state, _ = kept_paths(cfg0.study_dir, SETTING, 0, 2)
    assert "no such file" in _refused(_from(original, "start.checkpoint=/nonexistent/x.pt"), task)
    msg = _refused(_from(original, "model.hidden_size=12"), task)
    assert "does not fit the model" in msg and "model.hidden_size=8" in msg and "[32, 8]" in msg
    msg = _refused(_from(original, "optimizer=sgd"), task)
    assert "Adam's" in msg and "start.optimizer=fresh" in msg
    _from(original, "optimizer=sgd", "start.optimizer=fresh")  # accepted with a fresh optimizer
    check_start_state(_from(original, "optimizer=sgd", "start.optimizer=fresh"), task, [cfg0])
    msg = _refused(_from(original, "start.setting={lr:0.5,clip:null}", "grid.lr=[0.01,0.1]"), task)
    assert "not in the grid" in msg and "grid.lr='[0.01,0.1,0.5]'" in msg
    msg = _refused(_from(original, "checkpoint.keep_epochs=[2]", "epochs=3"), task)
    assert "3 to 5" in msg
    plain = tmp_path / "plain.pt"
    torch.save(read_checkpoint(state).model, plain)
    msg = _refused(_from(original, f"start.checkpoint={plain}"), task)
    assert msg.startswith("start.epoch: say after which epoch")
    nan = tmp_path / "nan.pt"
    weights = dict(read_checkpoint(state).model)
    weights["head.bias"] = torch.full_like(weights["head.bias"], math.nan)
    torch.save(weights, nan)
    assert "NaN/inf" in _refused(_from(original, f"start.checkpoint={nan}", "start.epoch=2"), task)
    with pytest.raises(UserError, match="no kept state"):
        check_start_state(
            load_config(
                [
                    *BASE,
                    f"results_dir={results}",
                    "study.name=x",
                    "start.from_run=lr0.3-clipnone-bs64/seed-0@2",
                ]
            ),
            task,
            [cfg0],
        )


def test_a_lightning_style_checkpoint_with_a_prefix_is_read(original, tmp_path):
    cfg0, task, _, _ = original
    ckpt = read_checkpoint(kept_paths(cfg0.study_dir, SETTING, 0, 2)[0])
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in ckpt.model.items()}, "epoch": 1}, path)
    cfg = _from(original, f"start.checkpoint={path}", "start.epoch=2")
    check_start_state(cfg, task, [cfg])
    group = SeedGroup(task, SettingSpec.build(cfg, SETTING, [0]), CPU)
    load_start(cfg).apply(group)
    assert torch.equal(group.trainers[0].model.head.bias, ckpt.model["head.bias"])
    assert cfg.start.sha256 and len(cfg.start.sha256) == 64


# ----------------------------------------------------------------------------- reading the tables


def _record(seed: int, acc: list[float], sd: float | None = 0.5) -> dict:
    r = RunRecord(seed=seed)
    for a in acc:
        r.append(
            {
                "train_loss": 1.0,
                "val_loss": 2.0 - a,
                "val_acc": a,
                "pred_top_frac": 0.2,
                "val_loss_sd": sd if sd is not None else math.nan,
            }
        )
    return decode_record(encode_record(r))


def test_a_run_that_loses_in_its_first_epoch_what_the_checkpoint_knew_collapsed():
    """From a checkpoint at 0.95, a run at chance from its first epoch on lost what it knew: with
    the checkpoint's scores before its epochs it is a collapse at epoch N+1; without them it would
    be a run that never learned."""
    start = {
        "epoch": 900,
        "row": {
            "val_acc": 0.95,
            "val_loss": 0.2,
            "train_loss": 0.1,
            "pred_top_frac": 0.1,
            "val_loss_sd": 0.5,
        },
    }
    runs = [({"lr": 1.0, "clip": None, "batch_size": 32}, _record(0, [0.1] * 8), 0)]
    plain = build_tables(runs, 0.1, DetectConfig(), n_val=2000)
    assert plain.runs.loc[0, "outcome"] == "never_learned"
    tables = build_tables(with_start_row(runs, start), 0.1, DetectConfig(), n_val=2000)
    shift_epochs(tables, start)
    row = tables.runs.iloc[0]
    assert bool(row["collapsed"]) and row["collapse_epoch"] == 901
    # the calls saw the checkpoint's scores; the run's own best is its own epochs' best
    assert row["best_epoch"] == 901 and row["best_acc"] == pytest.approx(0.1)
    assert row["epochs_run"] == 8
    assert tables.curves["epoch"].tolist() == list(range(901, 909))


def test_a_stable_run_from_a_checkpoint_counts_epochs_on_from_n():
    start = {"epoch": 30, "row": {"val_acc": 0.5, "val_loss": 1.0, "train_loss": 1.0}}
    acc = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9]
    runs = [({"lr": 0.1, "clip": None, "batch_size": 32}, _record(0, acc), 0)]
    tables = build_tables(with_start_row(runs, start), 0.1, DetectConfig(), n_val=2000)
    shift_epochs(tables, start)
    row = tables.runs.iloc[0]
    assert not bool(row["collapsed"]) and row["best_epoch"] == 36
    assert tables.curves["epoch"].min() == 31


def test_the_verdict_line_puts_the_original_setting_first():
    rows = []
    for lr, clip, k in [(0.003, None, 0), (0.01, None, 4), (0.01, 1.0, 1)]:
        rows.append({"lr": lr, "clip": clip, "batch_size": 32, "n_runs": 5, "n_collapsed": k})

    class T:
        summary = pd.DataFrame(rows)
        axes = ["lr", "clip", "batch_size"]

    text = from_epoch_text(T, {"epoch": 900, "setting": {"lr": 0.01, "clip": None}})
    assert text == (
        "From epoch 900, the original lr 0.01 with no clipping collapses in 4 of 5 data orders; "
        "lr 0.003 in 0 of 5; clipping at 1 in 1 of 5."
    )
    unknown = from_epoch_text(T, {"epoch": 900})
    assert unknown.startswith(
        "From epoch 900, lr 0.003 with no clipping collapses in 0 of 5 data orders;"
    )
    assert np.isfinite(len(unknown))


# ----------------------------------------------------------------------------- the real CLI

START = Path(__file__).parent / "data" / "start"
FROM_CHECKPOINT = [
    "model.hidden_size=4",
    "model.layers=1",
    "epochs=6",
    "seeds=2",
    "grid.lr=[0.05,0.2,0.8]",
    "grid.clip=[null,1.0]",
    "grid.batch_size=[128]",
    "workers=2",
    "checkpoint_every=1",
    "study.name=k",
    f"start.checkpoint={START / 'digits-lstm4-sgd.pt'}",
    "start.epoch=40",
    "start.setting={lr:0.2,clip:null}",
]
VOLATILE = ["seconds", "trial"]


def _trial_states(results: Path) -> dict[str, int]:
    db = results / "lrsweep.db"
    if not db.exists():
        return {}
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        rows = con.execute("SELECT state, count(*) FROM trials GROUP BY state").fetchall()
        con.close()
    except sqlite3.Error:
        return {}
    return dict(rows)


@pytest.mark.slow
def test_kill9_mid_sweep_from_a_checkpoint_then_the_same_command_equals_an_uninterrupted_one(
    tmp_path,
):
    reference = tmp_path / "reference"
    p = run_cli("run", *FROM_CHECKPOINT, f"results_dir={reference}")
    assert p.returncode == 0, p.stderr
    expected = pd.read_csv(reference / "k" / "runs.csv").drop(columns=VOLATILE)
    assert expected["best_epoch"].min() >= 41 and expected["epochs_run"].max() == 6
    curves = pd.read_parquet(reference / "k" / "curves.parquet")
    assert sorted(curves["epoch"].unique()) == list(range(41, 47))

    killed = tmp_path / "killed"
    proc = start_cli("run", *FROM_CHECKPOINT, f"results_dir={killed}", cwd=ROOT)
    end = time.monotonic() + 240
    while time.monotonic() < end and proc.poll() is None:
        running = _trial_states(killed).get("RUNNING", 0) >= 1
        if running and any((killed / "k" / "checkpoints").glob("*.pt")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be killed mid-trial"
    kill_process_tree(proc)
    assert _trial_states(killed).get("COMPLETE", 0) < 6
    p = run_cli("run", *FROM_CHECKPOINT, f"results_dir={killed}")  # the same command
    assert p.returncode == 0, p.stderr
    resumed = pd.read_csv(killed / "k" / "runs.csv").drop(columns=VOLATILE)
    pd.testing.assert_frame_equal(resumed, expected)
    pd.testing.assert_frame_equal(pd.read_parquet(killed / "k" / "curves.parquet"), curves)
    verdict = (killed / "k" / "verdict.txt").read_text()
    assert "saved after epoch 40: epochs count on from 41" in verdict
    assert "From epoch 40, the original lr 0.2 with no clipping collapses in" in verdict


@pytest.mark.slow
def test_keep_then_from_run_through_the_cli_and_another_checkpoint_is_refused(tmp_path):
    base = [
        "model.hidden_size=4",
        "model.layers=1",
        "seeds=1",
        "grid.clip=[null]",
        "grid.batch_size=[128]",
        "workers=1",
    ]
    p = run_cli(
        "run",
        *base,
        "epochs=3",
        "grid.lr=[0.1]",
        "checkpoint.keep_epochs=[2]",
        "study.name=orig",
        f"results_dir={tmp_path}",
    )
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "orig" / "kept").is_dir()
    from_run = [
        *base,
        "epochs=2",
        "grid.lr=[0.03,0.1]",
        "start.from_run=lr0.1-clipnone-bs128/seed-0@2",
        "study.name=cont",
    ]
    p = run_cli("run", *from_run, f"results_dir={tmp_path}")
    assert p.returncode == 0, p.stderr
    runs = pd.read_csv(tmp_path / "cont" / "runs.csv")
    assert set(runs["epochs_run"]) == {2} and runs["best_epoch"].min() >= 2
    verdict = (tmp_path / "cont" / "verdict.txt").read_text()
    assert "started from the state lrsweep kept as lr0.1-clipnone-bs128/seed-0@2" in verdict
    assert "From epoch 2, the original lr 0.1 collapses in" in verdict
    page = (tmp_path / "cont" / "report.html").read_text()
    assert "saved after epoch 2" in page
    assert (tmp_path / "cont" / "figures" / "start_curves.png").is_file()
    assert "From the checkpoint" in page and "figures/start_curves.png" in page
    other = [
        *from_run[:-2],
        f"start.checkpoint={START / 'digits-lstm4-sgd.pt'}",
        "start.epoch=2",
        "study.name=cont",
    ]
    p = run_cli("run", *other, f"results_dir={tmp_path}")
    assert p.returncode == 2 and p.stderr.startswith(
        "error: start.checkpoint: study 'cont' trained every run from a checkpoint"
    )


def test_the_original_runs_log_gives_the_history_the_calls_see(tmp_path):
    """start.log (a user's training): the original's last epochs before N join the calls, so an
    accuracy-only run (no val_loss_sd) that drops at once from epoch N is a confirmed collapse;
    its best and the summary come from its own epochs."""
    from sweep.trainers.original_log import original_log

    log = tmp_path / "original.csv"
    rows = [f"{e},{min(0.2 + 0.1 * e, 0.97)},{0.3}" for e in range(30)]  # Keras: epochs from 0
    log.write_text("epoch,val_accuracy,val_loss\n" + "\n".join(rows) + "\n")
    cfg = load_config([f"start.checkpoint={log}", "start.epoch=30", f"start.log={log}"])
    original = original_log(cfg)
    assert len(original["curves"]["val_acc"]) == 30 and len(original["history"]) == 5
    start = {"epoch": 30, "row": original["row"], "history": original["history"]}
    runs = [
        (
            {"lr": 2.0, "clip": None, "batch_size": 32},
            _record(0, [0.11, 0.09, 0.1, 0.12], sd=None),
            0,
        )
    ]
    tables = build_tables(with_start_row(runs, start), 0.1, DetectConfig(), n_val=360)
    shift_epochs(tables, start)
    row = tables.runs.iloc[0]
    assert bool(row["collapsed"]) and row["collapse_epoch"] == 31
    assert row["best_epoch"] == 34 and row["best_acc"] == pytest.approx(0.12)
    assert tables.summary.loc[0, "mean_best_acc"] == pytest.approx(0.12)
    cfg = load_config([f"start.checkpoint={log}", "start.epoch=40", f"start.log={log}"])
    with pytest.raises(
        UserError, match="holds 30 epochs, but the checkpoint was saved after epoch 40"
    ):
        original_log(cfg)


def test_the_step_schedule_holds_before_lr_then_the_settings_lr():
    from sweep.training.optim import lr_at

    cfg = load_config(["schedule=step", "schedule.at_step=3", "schedule.before_lr=0.05"])
    assert [lr_at(cfg.schedule, s, 10, 2.0) for s in range(5)] == [0.05, 0.05, 0.05, 2.0, 2.0]
    with pytest.raises(UserError, match="schedule.before_lr: must be > 0"):
        load_config(["schedule=step", "schedule.before_lr=0"])


def _fit_without_init(setting, seed, epochs, report):
    pass


def test_a_notebook_function_that_cannot_start_from_the_checkpoint_is_refused_first(tmp_path):
    import sweep

    with pytest.raises(UserError, match="takes no init_checkpoint parameter"):
        sweep.run_sweep(
            _fit_without_init,
            {"lr": [0.1], "clip": [None]},
            overrides=[f"start.checkpoint={START / 'digits-lstm4-weights.pt'}", "start.epoch=3"],
            n_val=100,
            chance=0.1,
            results_dir=str(tmp_path),
        )
    assert not list(tmp_path.iterdir())  # nothing written
