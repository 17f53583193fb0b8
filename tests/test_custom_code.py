"""Users' own models, data loaders and config folders (issue 12): the contract, in process.

The user code lives in a temporary folder put on sys.path, as a user's project folder is when
`sweep` runs from it.
"""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch

from sweep.config import comparable_part, load_config
from sweep.core.errors import UserError
from sweep.tasks import build_task
from sweep.training import SeedTrainer, SettingSpec, train_setting
from sweep.training.models import build_model, check_model

CPU = torch.device("cpu")

USER_CODE = '''
import numpy as np
import torch
from torch import nn

CALLS = []


class Net(nn.Module):
    """A GRU and a head; records whether forward received targets."""

    def __init__(self, input_size, output_size, hidden=8):
        super().__init__()
        self.sizes = (input_size, output_size)
        self.body = nn.GRU(input_size, hidden, batch_first=True)
        self.head = nn.Linear(hidden, output_size)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, inputs, lengths=None, targets=None):
        CALLS.append(targets is not None)
        out, _ = self.body(inputs)
        return self.head(out[:, -1]) * self.scale


class NoSizes(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.width = width
        self.lin = nn.Linear(8, 10)

    def forward(self, inputs, lengths=None):
        return self.lin(inputs[:, -1])


def blobs(n=120, steps=6, features=3, seed=0, as_tensors=False, tokens=False, with_val=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    x = rng.normal(size=(n, steps, features)).astype(np.float32) + y[:, None, None]
    out = {"x": x, "y": y}
    if tokens:
        out = {"x": rng.integers(1, 7, size=(n, steps)), "y": y, "vocab_size": 7}
    if with_val:
        out.update(x_val=out["x"][:30], y_val=y[:30])
    if as_tensors:
        out = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in out.items()}
    return out
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's folder: usermod.py and conf/{model,task}/*.yaml; importable like the launch folder."""
    (tmp_path / "usermod.py").write_text(textwrap.dedent(USER_CODE))
    for group, name, text in (
        ("model", "net", "_target_: usermod.Net\nhidden: 8\n"),
        ("model", "nosizes", "_target_: usermod.NoSizes\nwidth: 4\n"),
        ("model", "lstm", "name: lstm\nhidden_size: 5\n"),  # replaces the built-in option
        ("task", "blobs", "_target_: usermod.blobs\nn: 120\nval_fraction: 0.25\n"),
    ):
        (tmp_path / "conf" / group).mkdir(parents=True, exist_ok=True)
        (tmp_path / "conf" / group / f"{name}.yaml").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("usermod", None)
    return tmp_path


def _cfg(project, *overrides):
    return load_config(
        [
            "epochs=2",
            "seeds=2",
            "grid.lr=[0.05]",
            "grid.clip=[null]",
            "grid.batch_size=[16]",
            *overrides,
        ],
        config_dir=str(project / "conf"),
    )


def test_user_options_join_the_groups_and_replace_a_builtin_of_the_same_name(project):
    cfg = _cfg(project, "model=net", "task=blobs")
    assert cfg.model.target == "usermod.Net" and cfg.model.kwargs == {"hidden": 8}
    assert (
        cfg.task.target == "usermod.blobs"
        and cfg.task.kwargs == {"n": 120}
        and cfg.task.val_fraction == 0.25
    )
    assert cfg.study.name == "blobs-Net-sgd"  # the default name tells data and model apart
    assert _cfg(project).model.hidden_size == 5  # conf/model/lstm.yaml replaces the built-in lstm


def test_sizes_are_passed_only_to_a_constructor_that_names_them_and_the_seed_fixes_weights(project):
    cfg = _cfg(project, "model=net", "task=blobs")
    task = build_task(cfg.task)
    a, b, c = (build_model(cfg.model, task, s) for s in (0, 0, 1))
    assert a.sizes == (3, 3)  # 3 features per step, 3 classes
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.body.weight_ih_l0, c.body.weight_ih_l0)
    assert (
        build_model(_cfg(project, "model=nosizes").model, build_task(_cfg(project).task), 0).width
        == 4
    )


def test_targets_reach_forward_in_training_only(project):
    import usermod

    # (signals off: crit_lr's line search reads the training loss, targets included, and the
    # probe pass is another evaluation; tests/test_signals.py covers those calls)
    cfg = _cfg(project, "model=net", "task=blobs", "signals.enabled=false")
    task = build_task(cfg.task)
    usermod.CALLS.clear()
    trainer = SeedTrainer(task, SettingSpec.build(cfg, cfg.grid.settings()[0], [0]), 0, CPU)
    trainer.run_epoch()
    steps = trainer.steps_per_epoch
    assert usermod.CALLS[:steps] == [True] * steps and usermod.CALLS[steps:] == [
        False
    ]  # then one evaluation


def test_a_custom_model_trains_checkpoints_and_records_per_group_gradient_norms(project, tmp_path):
    from sweep.config import config_fingerprint
    from sweep.training import StopRequested
    from sweep.training.checkpoints import Checkpointer

    cfg = _cfg(project, "model=net", "task=blobs", "epochs=3", "packing=on")
    task = build_task(cfg.task)
    setting = cfg.grid.settings()[0]
    straight = train_setting(task, cfg, setting, [0, 1], CPU)
    groups = sorted(c for c in straight[0].curves if c.startswith("grad_norm_max/"))
    assert groups == ["grad_norm_max/(own)", "grad_norm_max/body", "grad_norm_max/head"]
    assert all(len(straight[0].curves[c]) == 3 for c in groups)
    ckpt = Checkpointer(
        tmp_path / "ck", setting, [0, 1], config_fingerprint(cfg), every=1, minutes=0
    )
    with pytest.raises(StopRequested):
        train_setting(task, cfg, setting, [0, 1], CPU, ckpt, should_stop=lambda: True)
    resumed = train_setting(task, cfg, setting, [0, 1], CPU, ckpt)  # never packed: a custom model
    assert [r.curves for r in resumed] == [r.curves for r in straight]


def test_builtin_models_group_embedding_layers_and_head():
    cfg = load_config(
        ["model.hidden_size=4", "model.layers=2", "model.bidirectional=true", "epochs=1"]
    )
    task = build_task(cfg.task)
    (r,) = train_setting(task, cfg, {"lr": 0.1, "clip": 1.0, "batch_size": 256}, [0], CPU)
    assert sorted(c for c in r.curves if c.startswith("grad_norm_mean/")) == [
        "grad_norm_mean/head",
        "grad_norm_mean/rnn.l0",
        "grad_norm_mean/rnn.l1",
    ]
    norms = [r.curves[f"grad_norm_max/{g}"][0] for g in ("rnn.l0", "rnn.l1", "head")]
    assert all(
        0 < n <= r.curves["grad_norm_max"][0] + 1e-6 for n in norms
    )  # parts of the global norm


@pytest.mark.parametrize(
    "options", [{}, {"as_tensors": True}, {"with_val": True}, {"tokens": True}]
)
def test_loader_output_becomes_task_data_like_a_file(project, options):
    extra = [f"+task.{k}={str(v).lower()}" for k, v in options.items()]
    task = build_task(_cfg(project, "task=blobs", *extra).task)
    assert task.kind == "classification" and task.output_dim == 3 and task.name == "blobs"
    assert task.x_train.shape[0] + task.x_val.shape[0] == (150 if options.get("with_val") else 120)
    if options.get("tokens"):
        assert task.vocab_size == 7 and task.x_train.dtype == torch.int64 and task.input_dim == 7
    else:
        assert task.x_train.dtype == torch.float32 and task.input_dim == 3


def test_a_model_with_the_wrong_output_shape_is_refused_before_training(project):
    cfg = _cfg(project, "model=nosizes", "task=blobs")  # 10 outputs, 8 input features expected
    with pytest.raises(
        UserError,
        match=r"^model: forward\(inputs, lengths\) of usermod.NoSizes raised RuntimeError",
    ):
        check_model(cfg.model, build_task(cfg.task))
    digits = _cfg(project, "model=nosizes")
    check_model(digits.model, build_task(digits.task))  # digits: 8 features, 10 classes: fits


def test_changing_a_custom_models_arguments_makes_results_incomparable(project):
    a = comparable_part(_cfg(project, "model=net", "task=blobs"))
    b = comparable_part(_cfg(project, "model=net", "task=blobs", "model.hidden=16"))
    assert a["model._target_"] == "usermod.Net" and a["task._target_"] == "usermod.blobs"
    assert a["model.hidden"] == 8 and b["model.hidden"] == 16


def test_default_study_names_tell_data_files_apart(tmp_path):
    np.savez(tmp_path / "sensors.npz", x=np.zeros((20, 4, 2), np.float32), y=np.arange(20) % 2)
    cfg = load_config(["task=file", f"task.path={tmp_path / 'sensors.npz'}"])
    assert cfg.study.name == "file-sensors-lstm-sgd"
    assert load_config([]).study.name == "digits-lstm-sgd"


@pytest.mark.parametrize(
    "source,says",
    [
        (
            "WIDTH = undefined_width * 2\n",
            "raised NameError: name 'undefined_width' is not defined",
        ),
        ("def fit(:\n", "raised SyntaxError"),
        (
            "import nomodule_xyz_inner\n",
            "raised ModuleNotFoundError: No module named 'nomodule_xyz_inner'",
        ),
        ("RATE = 1 / 0\n", "raised ZeroDivisionError: division by zero"),
    ],
)
def test_a_users_module_that_fails_at_import_is_one_line_naming_it(project, source, says):
    """Any error of the module's own code while it is imported (not only a missing module) is a
    UserError naming the module, the error and its line: one line, exit status 2."""
    from sweep.core.imports import import_target

    (project / "brokenmod.py").write_text("import os\n\n" + source)
    sys.modules.pop("brokenmod", None)
    for key in ("model._target_", "task._target_", "trainer._target_"):
        with pytest.raises(UserError) as e:
            import_target("brokenmod.Thing", key)
        message = str(e.value)
        assert message.startswith(f"{key}: importing brokenmod {says}"), message
        assert "brokenmod.py, line 3" in message and "\n" not in message


def test_a_users_module_that_exits_at_import_is_one_line(project):
    from sweep.core.imports import import_target

    (project / "scriptmod.py").write_text("import sys\nsys.exit(2)\n")
    sys.modules.pop("scriptmod", None)
    with pytest.raises(
        UserError, match=r"trainer._target_: importing scriptmod exited \(sys.exit\(2\)\)"
    ):
        import_target("scriptmod.fit", "trainer._target_")
