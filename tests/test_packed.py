"""Packed seeds (one model with stacked weights) against separate training on the CPU."""

import math

import numpy as np
import pytest
import torch

from sweep.config import config_fingerprint, load_config
from sweep.tasks import build_task
from sweep.training import StopRequested, train_setting, use_packing
from sweep.training.checkpoints import Checkpointer
from sweep.training.models import build_model
from sweep.training.packed_net import PackedRecurrentNet, per_seed_norm

CPU = torch.device("cpu")


def _both(overrides, setting, seeds=(0, 1, 2)):
    out = {}
    for packing in ("off", "on"):
        cfg = load_config(overrides + [f"packing={packing}"])
        task = build_task(cfg.task)
        out[packing] = train_setting(task, cfg, setting, list(seeds), CPU)
    return out["off"], out["on"]


def _close(a, b, rtol=2e-3, atol=2e-4):
    assert (
        a.seed == b.seed and a.nonfinite == b.nonfinite and a.nonfinite_epoch == b.nonfinite_epoch
    )
    for col in a.curves:
        x, y = np.asarray(a.curves[col]), np.asarray(b.curves[col])
        assert x.shape == y.shape, col
        # Accuracies count items: a float-level difference may flip one prediction near a tie.
        tol = 0.005 if col in ("val_acc", "pred_top_frac") else atol
        assert np.allclose(x, y, rtol=rtol, atol=tol, equal_nan=True), (col, x, y)


CASES = {
    "lstm-2-layers-digits": (
        ["model.hidden_size=16", "epochs=2"],
        {"lr": 0.1, "clip": 1.0, "batch_size": 64},
    ),
    "gru-bidirectional": (
        ["model=gru", "model.bidirectional=true", "model.hidden_size=8", "epochs=2"],
        {"lr": 0.1, "clip": None, "batch_size": 64},
    ),
    "adding-padded-lengths": (
        [
            "task=adding",
            "task.length=10",
            "task.n_train=256",
            "task.n_val=64",
            "model.layers=1",
            "model.hidden_size=8",
            "epochs=2",
        ],
        {"lr": 0.05, "clip": 0.5, "batch_size": 32},
    ),
    "per-step-echo": (
        [
            "task=echo",
            "task.n_train=256",
            "task.n_val=64",
            "model.layers=1",
            "model.hidden_size=8",
            "epochs=2",
            "optimizer=adam",
        ],
        {"lr": 0.01, "clip": 1.0, "batch_size": 32},
    ),
    "vector-regression": (
        [
            "task=vector_sum",
            "task.n_train=256",
            "task.n_val=64",
            "model.layers=1",
            "model.hidden_size=8",
            "epochs=2",
            "optimizer=rmsprop",
        ],
        {"lr": 0.003, "clip": None, "batch_size": 32},
    ),
    "forget-bias-l2-weight-decay": (
        [
            "model.hidden_size=8",
            "model.forget_bias=1.0",
            "optimizer.l2=0.001",
            "optimizer.weight_decay=0.0001",
            "epochs=2",
        ],
        {"lr": 0.1, "clip": 1.0, "batch_size": 64},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_packed_seeds_match_separate_training(case):
    overrides, setting = CASES[case]
    separate, packed = _both(overrides, setting)
    for a, b in zip(separate, packed):
        _close(a, b)


def test_packed_forward_equals_each_seeds_own_network():
    cfg = load_config(["model.hidden_size=8", "model.bidirectional=true"])
    task = build_task(cfg.task)
    nets = [build_model(cfg.model, task, s).eval() for s in (0, 1)]
    pack = PackedRecurrentNet(nets).eval()
    x = task.x_val[:5]
    with torch.no_grad():
        want = torch.stack([n(x) for n in nets])
        got = pack(x.unsqueeze(0).expand(2, -1, -1, -1))
    assert torch.allclose(want, got, atol=1e-5)


def test_per_seed_norm_is_each_slice_global_norm():
    g = [torch.randn(3, 4, 5), torch.randn(3, 1, 2)]
    want = torch.stack([torch.sqrt(g[0][s].pow(2).sum() + g[1][s].pow(2).sum()) for s in range(3)])
    assert torch.allclose(per_seed_norm(g), want)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_nonfinite_seed_leaves_the_pack_and_others_are_unaffected(optimizer):
    from sweep.training import SettingSpec
    from sweep.training.packed import PackedTrainer

    cfg = load_config(["model.hidden_size=16", "epochs=3", "packing=on", f"optimizer={optimizer}"])
    task = build_task(cfg.task)
    setting = {"lr": 0.1 if optimizer == "sgd" else 0.01, "clip": 1.0, "batch_size": 64}
    reference = train_setting(task, cfg, setting, [0, 1, 2], CPU)
    trainer = PackedTrainer(task, SettingSpec.build(cfg, setting, [0, 1, 2]), CPU)
    trainer.run_epoch()
    with torch.no_grad():
        trainer.model.head_w[1].fill_(float("inf"))  # seed 1 blows up in epoch 2
    while not trainer.stopped:
        trainer.run_epoch()
    got = trainer.records_list()
    assert trainer.alive == [0, 2] and trainer.model.head_w.shape[0] == 2  # cut out of the pack
    assert got[1].nonfinite == "loss" and got[1].nonfinite_epoch == 2 and got[1].epochs_run == 2
    assert got[1].curves["val_acc"][0] == reference[1].curves["val_acc"][0]
    assert math.isnan(got[1].curves["val_acc"][1])
    for k in (0, 2):
        _close(reference[k], got[k])  # the others carry on as if nothing happened


def test_packed_checkpoint_resume_is_identical(tmp_path):
    cfg = load_config(["model.hidden_size=16", "epochs=4", "packing=on", "optimizer=adam"])
    task = build_task(cfg.task)
    setting = {"lr": 0.01, "clip": 1.0, "batch_size": 64}
    reference = train_setting(task, cfg, setting, [0, 1], CPU)
    calls = []
    ckpt = Checkpointer(tmp_path, setting, [0, 1], config_fingerprint(cfg), every=1, minutes=0)
    with pytest.raises(StopRequested):
        train_setting(
            task,
            cfg,
            setting,
            [0, 1],
            CPU,
            ckpt,
            should_stop=lambda: calls.append(1) or len(calls) >= 2,
        )
    resumed = train_setting(task, cfg, setting, [0, 1], CPU, ckpt)
    assert [r.curves for r in resumed] == [r.curves for r in reference]


def test_auto_packing_rule():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not use_packing(load_config([]), cpu)  # separate nn.LSTM calls are faster on CPUs
    assert use_packing(load_config(["model.hidden_size=128"]), cuda)
    assert not use_packing(
        load_config(["model.dropout=0.2"]), cuda
    )  # masks would depend on the pack
    assert not use_packing(load_config(["packing=off"]), cuda)
    assert use_packing(load_config(["packing=on"]), cpu)
