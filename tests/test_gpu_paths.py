"""The CUDA-only branches, run on the CPU (issue 15): each test fails on the code before its fix.

The branches are made reachable by parameters (the non-finite check interval), injected
stand-ins for `torch.cuda` (RNG states, precision flags) and pure functions of the device string
and GPU count (which worker trains where).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import sweep.training.packed as packed_module
from sweep.config import load_config
from sweep.core.devices import (
    device_for_worker,
    is_device_string,
    plan_worker_devices,
    worker_count,
)
from sweep.tasks import build_task
from sweep.tasks.data import TaskData
from sweep.training import SeedTrainer, SettingSpec, train_setting
from sweep.training.accelerator import FP32_PRECISION, SeedRng, configure_device, derived_seed
from sweep.training.packed import PackedTrainer
from sweep.training.packed_net import PackedRecurrentNet

CPU = torch.device("cpu")
DIGITS = ["model.hidden_size=8", "model.layers=1", "epochs=3"]
SETTING = {"lr": 0.1, "clip": 1.0, "batch_size": 64}  # digits: 22 steps per epoch


# --------------------------------------------------------------------------- 1 + 6: non-finite between checks


class InfNormAt:
    """Wraps the packed per-seed gradient norm: at call `at` (1-based) seed slot `seed_slot`'s norm
    becomes inf and its gradients are zeroed, which is what clipping does with an inf norm
    (coef = clip / inf)."""

    def __init__(self, fn, at: int, seed_slot: int) -> None:
        self.fn, self.at, self.slot, self.calls = fn, at, seed_slot, 0

    def __call__(self, *args, **kwargs):
        norm = self.fn(*args, **kwargs)
        self.calls += 1
        if self.calls == self.at:
            for g in args[0]:  # stacked gradients [S, ...]
                g[self.slot].zero_()
            norm = norm.clone()
            norm[self.slot] = math.inf
        return norm


def test_packed_seed_with_inf_between_two_checks_is_cut_at_that_step(monkeypatch):
    cfg = load_config(DIGITS + ["packing=on"])
    task = build_task(cfg.task)
    monkeypatch.setattr(
        packed_module, "per_seed_norm", InfNormAt(packed_module.per_seed_norm, at=4, seed_slot=1)
    )
    records = train_setting(task, cfg, SETTING, [0, 1, 2], CPU, check_every=16)
    bad = records[1]
    assert bad.nonfinite == "gradient" and bad.nonfinite_epoch == 1
    assert bad.epochs_run == 1 and bad.steps == 4  # not trained on after the blow-up
    assert math.isnan(bad.curves["val_acc"][0])
    assert [r.epochs_run for r in (records[0], records[2])] == [3, 3]
    assert records[0].nonfinite is None and records[2].nonfinite is None


def test_separate_seed_with_inf_between_two_checks_counts_steps_to_the_first_bad_one(monkeypatch):
    cfg = load_config(DIGITS + ["packing=off"])
    task = build_task(cfg.task)
    from sweep.training.gradients import ParamGroups

    original = ParamGroups.clip
    calls = []

    def inf_at_step_4(self, clip):
        norm, per_group = original(self, clip)
        calls.append(1)
        if len(calls) == 4:  # what clipping does with an inf norm: gradients times 0
            torch._foreach_mul_([p.grad for p in self.params if p.grad is not None], 0.0)
            return torch.full_like(norm, math.inf), per_group
        return norm, per_group

    monkeypatch.setattr(ParamGroups, "clip", inf_at_step_4)
    (record,) = train_setting(task, cfg, SETTING, [0], CPU, check_every=16)
    assert record.nonfinite == "gradient" and record.nonfinite_epoch == 1
    assert record.steps == 4 and record.epochs_run == 1


@pytest.mark.parametrize("packing", ["off", "on"])
def test_check_interval_does_not_change_a_clean_run(packing):
    cfg = load_config(DIGITS + [f"packing={packing}"])
    task = build_task(cfg.task)
    every_step = train_setting(task, cfg, SETTING, [0, 1], CPU, check_every=1)
    every_16 = train_setting(task, cfg, SETTING, [0, 1], CPU, check_every=16)
    assert [r.curves for r in every_step] == [r.curves for r in every_16]
    assert [r.steps for r in every_step] == [r.steps for r in every_16] == [66, 66]


# --------------------------------------------------------------------------- 2: checkpoints across devices


class FakeCuda:
    """A stand-in for torch.cuda on a machine without a GPU: one RNG state per device index."""

    def __init__(self) -> None:
        self.states: dict[int, torch.Tensor] = {}
        self.current = 0
        self.seeded: list[int] = []
        self.set_device_calls: list[torch.device] = []

    def _index(self, device) -> int:
        return torch.device(device).index or 0

    def get_rng_state(self, device="cuda") -> torch.Tensor:
        return self.states.setdefault(
            self._index(device), torch.zeros(16, dtype=torch.uint8)
        ).clone()

    def set_rng_state(self, state, device="cuda") -> None:
        self.states[self._index(device)] = state.clone()

    def manual_seed(self, seed: int) -> None:
        self.seeded.append(seed)
        self.states[self.current] = torch.tensor(
            list((seed % 2**64).to_bytes(8, "little")) * 2, dtype=torch.uint8
        )

    def set_device(self, device) -> None:
        self.set_device_calls.append(device)
        self.current = self._index(device)

    def get_device_name(self, device) -> str:
        return "Fake GPU"


def _no_cuda(*args, **kwargs):
    raise AssertionError("Torch not compiled with CUDA enabled")


def test_checkpoint_written_on_a_gpu_resumes_on_a_cpu(monkeypatch):
    cfg = load_config(
        ["model.hidden_size=8", "model.layers=2", "model.dropout=0.3", "epochs=2", "packing=off"]
    )
    task = build_task(cfg.task)
    setting = {"lr": 0.1, "clip": None, "batch_size": 64}
    straight = SeedTrainer(task, SettingSpec.build(cfg, setting, [0]), 0, CPU)
    straight.run_epoch()
    state = copy.deepcopy(straight.state_dict())  # what a checkpoint file holds
    straight.run_epoch()
    # What a GPU host writes: the same state plus its CUDA generator.
    state["rng_state"] = dict(state["rng_state"], cuda=torch.arange(16, dtype=torch.uint8))
    for name in ("get_rng_state", "set_rng_state", "manual_seed"):
        monkeypatch.setattr(torch.cuda, name, _no_cuda)
    resumed = SeedTrainer(task, SettingSpec.build(cfg, setting, [0]), 0, CPU)
    resumed.load_state_dict(state)
    resumed.run_epoch()
    assert resumed.record.curves == straight.record.curves  # the CPU's dropout stream is intact
    assert "cuda" not in resumed.state_dict()["rng_state"]


def test_packed_checkpoint_with_cuda_rng_state_resumes_on_a_cpu(monkeypatch):
    cfg = load_config(DIGITS + ["packing=on", "epochs=2"])
    task = build_task(cfg.task)
    pack = PackedTrainer(task, SettingSpec.build(cfg, SETTING, [0, 1]), CPU)
    pack.run_epoch()
    state = copy.deepcopy(pack.state_dict())
    state["rng_state"] = dict(state["rng_state"], cuda=torch.arange(16, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "get_rng_state", _no_cuda)
    again = PackedTrainer(task, SettingSpec.build(cfg, SETTING, [0, 1]), CPU)
    again.load_state_dict(state)
    again.run_epoch()
    assert [r.epochs_run for r in again.records_list()] == [2, 2]


def test_cpu_checkpoint_resumed_on_a_gpu_gets_a_repeatable_cuda_stream():
    gpu = torch.device("cuda", 0)
    cpu_state = SeedRng(3, CPU).state_dict()
    assert set(cpu_state) == {"cpu"}
    streams = []
    for _ in range(2):
        fake = FakeCuda()
        rng = SeedRng(3, gpu, cuda=fake)
        assert fake.seeded == [3]  # a fresh run on a GPU seeds its CUDA stream with the seed
        rng.load_state_dict(cpu_state, step=120)
        assert fake.seeded[-1] == derived_seed(3, 120)
        streams.append(rng.state_dict()["cuda"])
    assert torch.equal(streams[0], streams[1])
    assert derived_seed(3, 120) != derived_seed(3, 121) != derived_seed(4, 120)


def test_seed_rng_swaps_cuda_state_in_and_out_around_an_epoch():
    fake = FakeCuda()
    gpu = torch.device("cuda", 0)
    rng = SeedRng(5, gpu, cuda=fake)
    outside = torch.full((16,), 9, dtype=torch.uint8)
    fake.set_rng_state(outside, gpu)
    with rng.active():
        assert torch.equal(fake.get_rng_state(gpu), rng.state["cuda"])
        fake.set_rng_state(torch.full((16,), 1, dtype=torch.uint8), gpu)  # the epoch draws
    assert torch.equal(rng.state["cuda"], torch.full((16,), 1, dtype=torch.uint8))
    assert torch.equal(fake.get_rng_state(gpu), outside)


def test_checkpoint_resume_continues_in_the_mode_it_started_in(tmp_path):
    from sweep.config import config_fingerprint
    from sweep.training import StopRequested
    from sweep.training.checkpoints import Checkpointer

    cfg = load_config(DIGITS + ["packing=on"])
    task = build_task(cfg.task)
    ckpt = Checkpointer(tmp_path, SETTING, [0, 1], config_fingerprint(cfg), every=1, minutes=0)
    with pytest.raises(StopRequested):
        train_setting(task, cfg, SETTING, [0, 1], CPU, ckpt, should_stop=lambda: True)
    assert ckpt.load()["mode"] == "packed"
    # Resumed where packing=auto would train separately (a CPU host): still packed.
    resumed = train_setting(
        task, load_config(DIGITS + ["packing=auto"]), SETTING, [0, 1], CPU, ckpt
    )
    straight = train_setting(task, cfg, SETTING, [0, 1], CPU)
    assert [r.curves for r in resumed] == [r.curves for r in straight]


# --------------------------------------------------------------------------- 3 + 8: devices of workers


def test_a_named_gpu_gets_one_worker_with_workers_auto():
    assert plan_worker_devices("cuda:1", n_cuda=4, workers="auto", n_settings=10, cores=16) == [
        "cuda:1"
    ]
    assert (
        plan_worker_devices("cuda:1", n_cuda=4, workers=3, n_settings=10, cores=16)
        == ["cuda:1"] * 3
    )
    assert plan_worker_devices("cuda", n_cuda=4, workers="auto", n_settings=10, cores=16) == [
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:3",
    ]
    assert plan_worker_devices("auto", n_cuda=2, workers=3, n_settings=10, cores=16) == [
        "cuda:0",
        "cuda:1",
        "cuda:0",
    ]
    assert (
        plan_worker_devices("auto", n_cuda=0, workers="auto", n_settings=5, cores=16) == ["cpu"] * 5
    )
    assert (
        plan_worker_devices("cpu", n_cuda=4, workers="auto", n_settings=50, cores=3) == ["cpu"] * 3
    )
    assert worker_count("cuda", n_cuda=8, workers="auto", n_settings=2, cores=16) == 2
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        device_for_worker("cuda", 0, 0)


def test_launcher_starts_one_worker_on_the_named_gpu(monkeypatch, tmp_path):
    import sweep.launch.launcher as launcher
    from sweep.core.errors import UserError

    started = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(
        launcher,
        "spawn",
        lambda index, device, threads, method: started.append((device, method)) or _Dummy(),
    )

    def stop_here(cfg, *rest):
        raise UserError("stop after planning")

    monkeypatch.setattr(launcher, "prepare", stop_here)
    cfg = load_config(["device=cuda:1", f"results_dir={tmp_path}"])
    with pytest.raises(UserError, match="stop after planning"):
        launcher.launch(cfg)
    assert started == [("cuda:1", "exec")]  # a GPU worker: a fresh interpreter, never forked


class _Dummy:
    """A worker process that was never started."""

    class stdin:
        @staticmethod
        def close() -> None:
            pass

    def kill(self) -> None:
        pass

    def wait(self, timeout: float | None = None) -> int:
        return 0


@pytest.mark.parametrize(
    "text", ["cuda:01", "cuda:00", "cuda: 1", "cuda:-1", "cuda:+1", "CUDA", "cuda:1 ", "gpu", ""]
)
def test_device_strings_torch_refuses_are_refused(text):
    assert not is_device_string(text)


def test_every_accepted_device_string_is_one_torch_accepts():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.from_regex(r"(cpu|cuda|auto)(:[0-9+\- ]{0,3})?", fullmatch=True))
    def check(text):
        if is_device_string(text) and text != "auto":
            torch.device(text)  # raises for anything torch's own parser refuses

    check()


# --------------------------------------------------------------------------- 4: host reads in the step loop


class HostReads(TorchDispatchMode):
    """Counts operators that copy a value to the host (`.item()`, `bool(t)`, `.tolist()` of a
    scalar, `nonzero`): on a GPU each one waits for the queued work."""

    SYNCING = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.equal.default"}

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func) in self.SYNCING:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "task_args",
    [
        ["task=adding", "task.length=10", "task.n_train=640", "task.n_val=64"],  # lengths (padded)
        ["task=echo", "task.n_train=640", "task.n_val=64"],  # per-step targets
    ],
)
def test_separate_step_loop_reads_the_host_once_per_check(task_args):
    cfg = load_config(
        task_args + ["model.hidden_size=8", "model.layers=1", "optimizer=sgd", "epochs=1"]
    )
    task = build_task(cfg.task)
    trainer = SeedTrainer(
        task,
        SettingSpec.build(cfg, {"lr": 0.01, "clip": 1.0, "batch_size": 20}, [0]),
        0,
        CPU,
        check_every=16,
    )
    assert trainer.host_lengths is None  # a forward model reads lengths where the data are
    steps = trainer.steps_per_epoch  # 32
    calls = {"cpu": 0}
    original_cpu = torch.Tensor.cpu

    def counting_cpu(self, *a, **k):
        calls["cpu"] += 1
        return original_cpu(self, *a, **k)

    torch.Tensor.cpu = counting_cpu
    try:
        with HostReads() as reads:
            trainer._train_epoch()
    finally:
        torch.Tensor.cpu = original_cpu
    # One read per 16 steps, plus the end-of-epoch summary (nonzero + its values).
    assert reads.count <= steps // 16 + 3, reads.count
    assert calls["cpu"] == 0


def test_bidirectional_model_keeps_a_host_copy_of_the_lengths_for_packing():
    cfg = load_config(
        [
            "task=adding",
            "task.length=10",
            "task.n_train=64",
            "task.n_val=32",
            "model.hidden_size=4",
            "model.layers=1",
            "model.bidirectional=true",
            "epochs=1",
        ]
    )
    task = build_task(cfg.task)
    trainer = SeedTrainer(
        task, SettingSpec.build(cfg, {"lr": 0.01, "clip": None, "batch_size": 16}, [0]), 0, CPU
    )
    assert trainer.host_lengths is not None
    trainer.run_epoch()
    assert trainer.record.epochs_run == 1


# --------------------------------------------------------------------------- 5: precision


class _Flags:
    def __init__(self) -> None:
        self.fp32_precision = "tf32"


class FakeBackends:
    def __init__(self) -> None:
        self.cuda = type("Cuda", (), {"matmul": _Flags()})()
        self.cudnn = type("Cudnn", (), {"rnn": _Flags(), "benchmark": False})()


def test_cuda_worker_uses_full_fp32_in_matmuls_and_cudnn_rnns():
    backends, fake = FakeBackends(), FakeCuda()
    text = configure_device(torch.device("cuda", 2), cuda=fake, backends=backends)
    assert backends.cuda.matmul.fp32_precision == FP32_PRECISION == "ieee"
    assert backends.cudnn.rnn.fp32_precision == "ieee"
    assert backends.cudnn.benchmark is False  # tunes convolutions only; lrsweep has none
    assert fake.set_device_calls == [torch.device("cuda", 2)]
    assert "cuda:2" in text and "ieee" in text
    with pytest.raises(ValueError, match="explicit index"):
        configure_device(torch.device("cuda"), cuda=fake, backends=backends)


def test_real_torch_flags_are_settable_here_and_cpu_needs_none():
    before = torch.backends.cudnn.rnn.fp32_precision
    try:
        configure_device(torch.device("cuda", 0), cuda=FakeCuda())
        assert torch.backends.cudnn.rnn.fp32_precision == "ieee"
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    finally:
        torch.backends.cudnn.rnn.fp32_precision = before
    assert configure_device(CPU) == "cpu"


# --------------------------------------------------------------------------- 7: deterministic embedding


def _token_task() -> TaskData:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 50, (64, 12), generator=g)
    y = torch.randint(0, 2, (64,), generator=g)
    return TaskData(
        name="tokens",
        kind="classification",
        x_train=x,
        y_train=y,
        x_val=x[:16],
        y_val=y[:16],
        output_dim=2,
        vocab_size=50,
    )


class OpNames(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def test_packed_embedding_backward_is_an_embedding_backward_not_a_scatter_add():
    from sweep.training.models import build_model

    cfg = load_config(["model.hidden_size=4", "model.layers=1", "model.embedding_dim=3"])
    task = _token_task()
    nets = [build_model(cfg.model, task, s) for s in (0, 1)]
    pack = PackedRecurrentNet(nets)
    x = task.x_train[:8].unsqueeze(0).expand(2, -1, -1)
    with OpNames() as ops:
        pack(x).sum().backward()
    assert "aten.embedding_dense_backward" in ops.names
    assert not {"aten.gather", "aten.scatter_add", "aten.scatter_add_"} & ops.names
    with torch.no_grad():  # and the lookup is still each seed's own table
        want = torch.stack([n(task.x_train[:8]) for n in nets])
        assert torch.allclose(pack(x), want, atol=1e-5)
