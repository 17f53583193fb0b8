import math

import torch

from sweep.config import load_config
from sweep.tasks import build_task
from sweep.training import EPOCH_COLUMNS, train_setting

CPU = torch.device("cpu")


def _train(overrides, setting, seeds=(0,)):
    cfg = load_config(overrides)
    task = build_task(cfg.task)
    return train_setting(task, cfg, setting, list(seeds), CPU)


def test_same_config_and_seed_give_identical_curves():
    ov = ["model.hidden_size=16", "epochs=3"]
    s = {"lr": 0.3, "clip": 1.0, "batch_size": 64}
    for packing in ("off", "on"):
        a = _train(ov + [f"packing={packing}"], s, seeds=[0, 1])
        b = _train(ov + [f"packing={packing}"], s, seeds=[0, 1])
        assert a[0].curves == b[0].curves and a[1].curves == b[1].curves  # bit for bit
        assert a[0].curves != a[1].curves  # different seeds differ


def test_separate_seed_does_not_depend_on_the_others_trained_with_it():
    ov = ["model.hidden_size=16", "epochs=3", "packing=off"]
    s = {"lr": 0.3, "clip": 1.0, "batch_size": 64}
    assert _train(ov, s, seeds=[0, 1])[1].curves == _train(ov, s, seeds=[1])[0].curves


def test_dropout_stream_is_per_seed():
    ov = ["model.hidden_size=16", "model.layers=2", "model.dropout=0.3", "epochs=2"]
    s = {"lr": 0.1, "clip": None, "batch_size": 64}
    assert _train(ov, s, seeds=[0, 2])[1].curves == _train(ov, s, seeds=[2])[0].curves


def test_record_has_every_epoch_and_column_and_learns():
    recs = _train(["model.hidden_size=32", "epochs=4"], {"lr": 0.3, "clip": None, "batch_size": 32})
    r = recs[0]
    assert r.epochs_run == 4 and r.nonfinite is None
    groups = {
        f"grad_norm_{stat}/{g}" for stat in ("mean", "max") for g in ("rnn.l0", "rnn.l1", "head")
    }
    signals = {
        "update_ratio",
        "sat_frac",
        "crit_lr",
        "logit_lse",
    }  # issue 26 (tests/test_signals.py)
    signals |= {f"update_ratio/{g}" for g in ("rnn.l0", "rnn.l1", "head")}
    signals |= {"sat_frac/rnn.l0", "sat_frac/rnn.l1"}
    assert (
        set(r.curves) == set(EPOCH_COLUMNS) | groups | signals
    )  # the contract's columns, each layer's norms and the signals of why a run collapsed
    assert all(len(v) == 4 for v in r.curves.values())
    assert r.curves["val_acc"][-1] > 0.5  # digits is learnable in a few epochs
    assert r.curves["train_loss"][-1] < r.curves["train_loss"][0]
    assert r.curves["clip_fraction"] == [0.0] * 4  # no clipping configured
    assert all(0 < p <= 1 for p in r.curves["pred_top_frac"])


def test_clip_fraction_and_norm_statistics_are_consistent():
    r = _train(["model.hidden_size=16", "epochs=2"], {"lr": 0.3, "clip": 0.05, "batch_size": 64})[0]
    for e in range(2):
        assert r.curves["grad_norm_mean"][e] <= r.curves["grad_norm_max"][e]
        assert r.curves["grad_norm_p90"][e] <= r.curves["grad_norm_max"][e]
    assert r.curves["clip_fraction"][0] > 0.5  # a tiny threshold clips most steps


def test_nonfinite_seed_stops_at_once_and_keeps_nan():
    # An enormous LR on a regression task overflows within the first epoch.
    recs = _train(
        [
            "task=adding",
            "task.length=10",
            "task.n_train=512",
            "task.n_val=64",
            "model.hidden_size=8",
            "epochs=5",
            "optimizer.momentum=0",
        ],
        {"lr": 1e30, "clip": None, "batch_size": 64},
    )
    r = recs[0]
    assert r.nonfinite in ("loss", "gradient", "parameters")
    assert r.nonfinite_epoch == r.epochs_run < 5  # stopped, no later epochs
    assert math.isnan(r.curves["val_acc"][-1]) and math.isnan(r.curves["val_loss"][-1])


def test_gru_and_bidirectional_multilayer_train():
    ov = [
        "model=gru",
        "model.layers=2",
        "model.bidirectional=true",
        "model.hidden_size=8",
        "epochs=2",
    ]
    r = _train(ov, {"lr": 0.3, "clip": 1.0, "batch_size": 64})[0]
    assert r.epochs_run == 2 and all(math.isfinite(v) for v in r.curves["val_acc"])


def test_variable_length_padding_does_not_change_outputs():
    from sweep.training.models import build_model

    cfg = load_config(
        ["task=adding", "task.length=10", "task.n_train=64", "task.n_val=16", "model.hidden_size=8"]
    )
    task = build_task(cfg.task)
    net = build_model(cfg.model, task, seed=0).eval()
    x, lengths = task.x_val[:4], task.lengths_val[:4]
    padded = torch.cat([x, torch.randn(4, 5, 2)], dim=1)  # garbage after each sequence's end
    with torch.no_grad():
        a = net(x, lengths)
        b = net(padded, lengths)
    assert torch.allclose(a, b)
