"""The signals of why a run collapsed, as lrsweep's own loop records them (issue 26): update
ratios, saturation, the critical step size, the logits' size, and where a NaN started."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from sweep.config import load_config
from sweep.config.targets import TargetModel
from sweep.tasks import build_task
from sweep.training import SeedTrainer, SettingSpec, train_setting
from sweep.training.origin import module_of, trace_origin
from sweep.training.packed import PackedTrainer
from sweep.training.saturation import module_layers, run_layers
from sweep.training.signals import LADDER, critical_lr, ratios

CPU = torch.device("cpu")
TINY = ["model.hidden_size=16", "epochs=3"]
SETTING = {"lr": 0.1, "clip": None, "batch_size": 64}
SIGNALS = ("update_ratio", "sat_frac", "crit_lr", "logit_lse")
TRAINING = ("train_loss", "val_loss", "val_acc", "grad_norm_mean", "grad_norm_max")


def _train(overrides, setting=SETTING, seeds=(0, 1), check_every=None):
    cfg = load_config(TINY + list(overrides))
    return train_setting(
        build_task(cfg.task), cfg, setting, list(seeds), CPU, check_every=check_every
    )


# --------------------------------------------------------------------------- the cell equations


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_rerun_of_a_fused_layer_gives_its_outputs(cell, bidirectional):
    torch.manual_seed(0)
    rnn = cell(5, 7, num_layers=2, batch_first=True, bidirectional=bidirectional)
    x = torch.randn(4, 6, 5)
    out, _ = rnn(x)
    run = run_layers("lstm" if cell is nn.LSTM else "gru", module_layers(rnn), x[None])
    assert torch.allclose(run.outputs[-1][0], out, atol=1e-5)


def test_saturation_counts_gates_and_tanh_units_on_valid_steps_only():
    rnn = nn.LSTM(1, 1, batch_first=True)
    with torch.no_grad():
        for p in rnn.parameters():
            p.zero_()
        rnn.weight_ih_l0.fill_(100.0)  # every gate and the candidate pinned by the input's sign
    x = torch.ones(1, 3, 1)
    mask = torch.tensor([[[True, True, False]]])
    run = run_layers("lstm", module_layers(rnn), x[None], mask)
    # Per valid step: i, f, o (sigmoid ~1), g (tanh ~1) saturated; tanh(c) = tanh(1) then
    # tanh(2) (0.76, 0.96): not saturated.
    assert run.counted[0].tolist() == [10.0]  # 2 valid steps x 5 values
    assert run.saturated[0].tolist() == [8.0]


# --------------------------------------------------------------------------- what training records


@pytest.mark.parametrize("packing", ["off", "on"])
def test_every_run_records_the_signals_each_epoch(packing):
    records = _train([f"packing={packing}"])
    for r in records:
        assert r.epochs_run == 3 and r.nonfinite is None
        for column in (
            *SIGNALS,
            "update_ratio/rnn.l0",
            "update_ratio/head",
            "sat_frac/rnn.l0",
            "sat_frac/rnn.l1",
        ):
            values = r.curves[column]
            assert len(values) == 3 and all(math.isfinite(v) for v in values), (column, values)
        assert all(0 < v < 1 for v in r.curves["update_ratio"])
        assert all(0 <= v <= 1 for v in r.curves["sat_frac"])
        rungs = [SETTING["lr"] * k for k in (*LADDER, 16.0)]
        for v in r.curves["crit_lr"]:
            assert any(v == pytest.approx(rung, rel=1e-6) for rung in rungs), v


def test_packed_seeds_record_the_signals_of_separate_ones():
    separate, packed = _train(["packing=off"]), _train(["packing=on"])
    for a, b in zip(separate, packed):
        for column in ("update_ratio", "update_ratio/rnn.l1", "sat_frac", "logit_lse"):
            assert a.curves[column] == pytest.approx(b.curves[column], rel=1e-3, abs=1e-5), column
        assert a.curves["crit_lr"] == b.curves["crit_lr"]  # a rung of the ladder


@pytest.mark.parametrize("packing", ["off", "on"])
def test_the_signals_do_not_change_training(packing):
    on = _train([f"packing={packing}", "model.layers=2", "model.dropout=0.2"])
    off = _train(
        [f"packing={packing}", "model.layers=2", "model.dropout=0.2", "signals.enabled=false"]
    )
    for a, b in zip(on, off):
        for column in TRAINING:
            assert a.curves[column] == b.curves[column], column
        assert not set(SIGNALS) & set(b.curves)


def test_update_ratio_of_plain_sgd_is_lr_times_gradient_over_weights():
    # One step per epoch: the epoch's update_ratio is that step's ||lr * g|| / ||w||.
    cfg = load_config(["model.hidden_size=8", "model.layers=1", "epochs=1"])
    task = build_task(cfg.task)
    trainer = SeedTrainer(
        task, SettingSpec.build(cfg, {"lr": 0.5, "clip": None, "batch_size": 4096}, [0]), 0, CPU
    )
    w = torch.cat([p.detach().reshape(-1) for p in trainer.params]).clone()
    trainer.run_epoch()
    grad = torch.cat([p.grad.reshape(-1) for p in trainer.params])
    expected = float(0.5 * grad.norm() / w.norm())
    assert trainer.record.curves["update_ratio"][0] == pytest.approx(expected, rel=1e-4)


def test_ratios_are_formed_per_group_from_squared_norms():
    squares = torch.tensor([[[9.0, 16.0], [100.0, 0.0]]])  # 1 step: updates 3, 4; weights 10, 0
    matrix = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    r = ratios(squares, matrix)[0]
    assert r[0].item() == pytest.approx(0.5)  # sqrt(25) / sqrt(100)
    assert r[1].item() == pytest.approx(0.3)
    assert math.isnan(r[2].item())  # a group without weight has no ratio


# --------------------------------------------------------------------------- the critical step size


def test_critical_lr_of_a_quadratic_is_the_first_rung_past_two_over_curvature():
    # L(w) = a/2 w^2 from w0 = 1; a gradient step d = -a w0 raises L iff eta > 2 / a.
    for a, lr in ((3.0, 0.2), (3.0, 1.0), (50.0, 0.01), (0.5, 0.1)):
        w = nn.Parameter(torch.tensor([1.0]))
        before = [w.detach().clone()]
        with torch.no_grad():
            w -= lr * a * w  # the update taken
        crit = critical_lr(lambda w=w, a=a: 0.5 * a * (w * w).sum(), [w], before, lr).item()
        rungs = [lr * k for k in LADDER]
        above = [eta for eta in rungs if eta > 2 / a]
        want = above[0] if above else 16 * lr
        assert crit == pytest.approx(want, rel=1e-6), (a, lr, crit, want)
        assert w.item() == pytest.approx(1.0 - lr * a)  # the weights are put back


# --------------------------------------------------------------------------- where a NaN started


class NaNAt:
    """Writes a NaN into one weight of a layer when epoch `epoch` starts (test-only injection)."""

    def __init__(self, epoch: int, layer: str = "rnn.l1") -> None:
        self.epoch, self.layer = epoch, layer

    def separate(self, trainer):
        if trainer.record.epochs_run == self.epoch - 1:
            k = self.layer[-1]
            with torch.no_grad():
                getattr(trainer.model.rnn, f"weight_hh_l{k}")[2, 1] = math.nan

    def packed(self, trainer):
        if trainer.records[trainer.alive[0]].epochs_run == self.epoch - 1:
            with torch.no_grad():
                getattr(trainer.model, f"w_hh_l{self.layer[-1]}")[0, 1, 2] = math.nan


@pytest.mark.parametrize("check_every", [1, 16])
@pytest.mark.parametrize("layer", ["rnn.l0", "rnn.l1"])
def test_a_nan_written_into_a_layer_is_traced_to_it(monkeypatch, check_every, layer):
    inject = NaNAt(2, layer)
    original = SeedTrainer.run_epoch
    monkeypatch.setattr(
        SeedTrainer, "run_epoch", lambda self: (inject.separate(self), original(self))
    )
    records = _train(["packing=off"], check_every=check_every)
    assert [(r.nonfinite_epoch, r.nonfinite_origin) for r in records] == [(2, layer)] * 2


@pytest.mark.parametrize("check_every", [1, 16])
def test_a_packed_seed_with_a_nan_is_traced_to_its_layer(monkeypatch, check_every):
    inject = NaNAt(2, "rnn.l1")
    original = PackedTrainer.run_epoch
    monkeypatch.setattr(
        PackedTrainer, "run_epoch", lambda self: (inject.packed(self), original(self))
    )
    first, second = _train(["packing=on"], check_every=check_every)
    assert (first.nonfinite_epoch, first.nonfinite_origin) == (2, "rnn.l1")
    assert second.nonfinite is None and second.epochs_run == 3  # the pack goes on without it


def test_a_blow_up_is_traced_to_where_it_started_and_stored():
    from sweep.core.records import encode_record, record_from_stored

    records = _train(
        ["task=adding", "task.n_train=200", "task.n_val=40"],
        {"lr": 10.0, "clip": None, "batch_size": 20},
    )
    assert all(r.nonfinite for r in records)
    assert all(r.nonfinite_origin in {"loss", "head", "rnn.l0", "rnn.l1"} for r in records)
    again = record_from_stored(encode_record(records[0]))
    assert again.nonfinite_origin == records[0].nonfinite_origin


class UserNet(nn.Module):
    """A user's model: an encoder block holding a GRU, and a read-out."""

    def __init__(self, input_size: int, output_size: int) -> None:
        super().__init__()
        self.encoder = nn.ModuleDict({"gru": nn.GRU(input_size, 8, num_layers=2, batch_first=True)})
        self.out = nn.Linear(8, output_size)

    def forward(self, inputs, lengths=None):
        h, _ = self.encoder["gru"](inputs)
        return self.out(h[:, -1])


def test_origin_names_a_users_module_and_layer():
    assert module_of("encoder.gru.weight_hh_l1", builtin=False) == "encoder.gru.l1"
    assert module_of("out.bias", builtin=False) == "out"
    assert module_of("scale", builtin=False) == "(own)"
    assert module_of("rnn.weight_ih_l0_reverse", builtin=True) == "rnn.l0"
    torch.manual_seed(0)
    net = UserNet(3, 2)
    x = 30 * torch.randn(5, 4, 3)  # saturated GRU units: |h| near 1
    with torch.no_grad():  # finite weights whose outputs overflow: 3e38 x sum |h|
        h = net.encoder["gru"](x)[0][0, -1]
        net.out.weight.copy_(3e38 * torch.sign(h).expand_as(net.out.weight))
    assert trace_origin(net, lambda: net(x).sum(), builtin=False) == "out"
    x[0, 0, 0] = math.nan  # a NaN in the data: the GRU's first layer is the first to show it
    assert trace_origin(net, lambda: net(x).sum(), builtin=False) == "encoder.gru.l0"
    with torch.no_grad():
        net.encoder["gru"].bias_hh_l1[0] = math.nan  # weights: named before any forward pass
    assert trace_origin(net, lambda: net(x).sum(), builtin=False) == "encoder.gru.l1"


def test_a_users_model_gets_update_ratios_per_child_and_saturation_per_layer():
    cfg = load_config(["epochs=2"])
    cfg = dataclasses.replace(cfg, model=TargetModel(target="test_signals.UserNet", name="usernet"))
    (record,) = train_setting(
        build_task(cfg.task), cfg, {"lr": 0.1, "clip": None, "batch_size": 64}, [0], CPU
    )
    for column in (
        "update_ratio/encoder",
        "update_ratio/out",
        "sat_frac/encoder.gru.l0",
        "sat_frac/encoder.gru.l1",
        "sat_frac",
        "crit_lr",
        "logit_lse",
    ):
        assert len(record.curves[column]) == 2 and all(
            math.isfinite(v) for v in record.curves[column]
        ), column


# --------------------------------------------------------------------------- a probe that cannot be read


def test_a_probe_the_model_cannot_read_gets_one_line_and_training_goes_on(monkeypatch, capsys):
    import sweep.training.signals as signals

    def broken(*args, **kwargs):
        raise RuntimeError("cuDNN refuses this batch")

    monkeypatch.setattr(signals, "module_saturation", broken)
    monkeypatch.setattr(signals, "_WARNED", set())
    records = _train(["packing=off"], seeds=(0, 1, 2))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: signals: the probe batch"), lines
    assert "cuDNN refuses this batch" in lines[0] and "training goes on" in lines[0]
    for r in records:
        assert r.epochs_run == 3 and r.nonfinite is None
        assert "sat_frac" not in r.curves and "logit_lse" not in r.curves
        assert len(r.curves["update_ratio"]) == 3 and len(r.curves["crit_lr"]) == 3


# --------------------------------------------------------------------------- the GPU rules


@pytest.mark.parametrize("packing", ["off", "on"])
def test_the_signals_add_no_host_read_to_the_step_loop(packing):
    """On a GPU every host read waits for the queued work: the signals read the host once per
    epoch (with the epoch's other numbers), never per step. Counted on the CPU with the CUDA
    check interval (16 steps)."""
    from test_gpu_paths import HostReads

    counts = {}
    for enabled in ("true", "false"):
        cfg = load_config(TINY + [f"packing={packing}", f"signals.enabled={enabled}"])
        task = build_task(cfg.task)
        spec = SettingSpec.build(cfg, {"lr": 0.1, "clip": 1.0, "batch_size": 16}, [0, 1])
        trainer = (
            PackedTrainer(task, spec, CPU, check_every=16)
            if packing == "on"
            else SeedTrainer(task, spec, 0, CPU, check_every=16)
        )
        assert trainer.steps_per_epoch > 64  # many steps: a per-step read would show
        with HostReads() as reads:
            trainer._train_epoch()
        counts[enabled] = reads.count
    assert counts["true"] == counts["false"], counts


def test_a_packed_token_model_reads_the_probe_as_its_seeds_own_networks_do():
    from sweep.tasks.data import TaskData
    from sweep.training.models import build_model
    from sweep.training.packed_net import PackedRecurrentNet
    from sweep.training.signals import Probe, packed_probe_row, probe_row

    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 9, (40, 6), generator=g)
    y = torch.randint(0, 3, (40,), generator=g)
    task = TaskData("tokens", "classification", x, y, x, y, output_dim=3, vocab_size=9)
    cfg = load_config(["model.hidden_size=8", "model.embedding_dim=4"]).model
    nets = [build_model(cfg, task, s) for s in (0, 1)]
    for net in nets:  # larger weights: some saturation to compare
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(4)
    probe = Probe.build(task, 16)
    packed = packed_probe_row(PackedRecurrentNet(nets), probe)
    for k, net in enumerate(nets):
        own = probe_row(net, probe, None)
        assert own["sat_frac"].item() > 0
        for column in ("sat_frac", "sat_frac/rnn.l0", "sat_frac/rnn.l1", "logit_lse"):
            assert packed[column][k].item() == pytest.approx(own[column].item(), abs=1e-5), column


def test_the_kept_weights_fit_their_memory_and_say_when_a_step_is_gone(monkeypatch):
    import sweep.training.signals as signals

    params = [nn.Parameter(torch.zeros(1000))]  # 4 kB
    monkeypatch.setattr(signals, "RING_BYTES", 10_000)
    rec = signals.StepRecorder(params, torch.ones(1, 1), ["all"], window=16, stacked=False)
    assert rec.window == 2  # what 10 kB holds, not the 16 steps of a check's window
    rec.start_epoch(steps=8, members=1, device=CPU)
    for step in range(5):
        rec.before(step)
        with torch.no_grad():
            params[0] += 1.0
        rec.after(step)
    assert rec.before_weights(4)[0][0].item() == 4.0
    assert rec.before_weights(3)[0][0].item() == 3.0
    assert rec.before_weights(2) is None  # overwritten: no replay from the wrong weights


class TeacherForced(nn.Module):
    """A user's model whose forward takes targets= (teacher forcing), noting every call."""

    calls: list[tuple[bool, bool]] = []

    def __init__(self, input_size: int, output_size: int) -> None:
        super().__init__()
        self.rnn = nn.GRU(input_size, 8, batch_first=True)
        self.out = nn.Linear(8, output_size)

    def forward(self, inputs, lengths=None, targets=None):
        TeacherForced.calls.append((self.training, targets is not None))
        return self.out(self.rnn(inputs)[0][:, -1])


def test_crit_lr_reads_the_training_loss_with_its_targets_and_the_probe_reads_without():
    cfg = load_config(["epochs=1"])
    cfg = dataclasses.replace(
        cfg, model=TargetModel(target="test_signals.TeacherForced", name="tf")
    )
    task = build_task(cfg.task)
    trainer = SeedTrainer(
        task, SettingSpec.build(cfg, {"lr": 0.1, "clip": None, "batch_size": 256}, [0]), 0, CPU
    )
    TeacherForced.calls.clear()
    trainer.run_epoch()
    steps = trainer.steps_per_epoch
    assert TeacherForced.calls == (
        [(True, True)] * steps  # training steps: teacher forcing
        + [(False, True)] * 4  # crit_lr: the update's own batch and loss, without dropout
        + [(False, False)] * 2  # the validation pass, then the probe: never targets
    )
