"""A user's own training as the trainer: config, placeholders, checks before any write, the
process-group supervisor, GPU visibility, and the Python API's overrides (fast unit tests; the
end-to-end runs are in test_trainer_runs.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sweep.analysis.reading import short_reason
from sweep.api import sweep_overrides
from sweep.config import load_config
from sweep.config.compose import quote_free_text
from sweep.config.identity import comparable_part
from sweep.core.errors import UserError
from sweep.trainers.checks import check_trainer, source_hash
from sweep.trainers.command import SUPERVISOR, visible_devices
from sweep.trainers.external import header_line, output_reason
from sweep.trainers.function import call_arguments
from sweep.trainers.placeholders import render, run_environment, run_values, unknown_placeholders
from sweep.trainers.runs import RunPaths, setting_folder

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
COMMAND = ["trainer=command", "trainer.n_val=200", "trainer.chance=0.25"]
FUNCTION = ["trainer=function", "trainer.n_val=10", "trainer.chance=0.5"]


def command_cfg(tmp_path, command, *more):
    return load_config([*COMMAND, f"trainer.command={command}", f"results_dir={tmp_path}", *more])


# --------------------------------------------------------------------------- config


def test_a_command_as_the_shell_leaves_it_is_quoted_for_hydra():
    raw = "python train.py --lr {lr} --name 'a b' --home ${HOME} x\\'y"
    assert quote_free_text(f"trainer.command={raw}").startswith("trainer.command='")
    cfg = load_config([*COMMAND, f"trainer.command={raw}"])
    assert cfg.trainer.command == raw
    assert (
        load_config([*COMMAND, f"trainer.command='{'python t.py'}'"]).trainer.command
        == "python t.py"
    )


def test_accuracy_calls_need_n_val_and_chance_before_anything_runs():
    acc = ["trainer=command", "trainer.command=python t.py", "trainer.metric=acc"]
    with pytest.raises(UserError, match=r"trainer.n_val: the accuracy calls \(metric=acc\) test"):
        load_config([*acc, "trainer.chance=0.1"])
    with pytest.raises(UserError, match=r"trainer.chance: .*guessing"):
        load_config([*acc, "trainer.n_val=40"])
    # calls from the loss need neither (metric=auto reads the loss when they are not given)
    cfg = load_config(["trainer=command", "trainer.command=python t.py"])
    assert cfg.trainer.metric == "auto" and cfg.trainer.n_val is None
    with pytest.raises(UserError, match=r"trainer.metric: must be one of auto, acc, loss"):
        load_config(["trainer=command", "trainer.command=python t.py", "trainer.metric=mse"])
    with pytest.raises(UserError, match=r"trainer.chance_loss: must be a number > 0"):
        load_config(["trainer=command", "trainer.command=python t.py", "trainer.chance_loss=-1"])
    with pytest.raises(UserError, match=r"trainer.n_val: must be a whole number >= 1 or log"):
        load_config(
            [
                "trainer=command",
                "trainer.command=python t.py",
                "trainer.n_val=0",
                "trainer.chance=0.1",
            ]
        )
    cfg = load_config(
        [
            "trainer=command",
            "trainer.command=python t.py",
            "trainer.n_val=log",
            "trainer.chance=log",
        ]
    )
    assert cfg.trainer.n_val == "log"


def test_extra_axes_of_a_users_training_are_its_own_parameters():
    cfg = load_config(
        [*COMMAND, "trainer.command=python t.py --dropout {dropout}", "+grid.dropout=[0,0.3]"]
    )
    assert cfg.grid.free == ("dropout",)
    assert {s["dropout"] for s in cfg.grid.settings()} == {0, 0.3}
    with pytest.raises(UserError, match="grid.dropout: not a config key"):
        load_config(["+grid.dropout=[0,0.3]"])  # the built-in trainer has no such key


def test_the_command_or_function_fixes_what_results_mean_and_lrsweeps_model_does_not():
    a = comparable_part(load_config([*COMMAND, "trainer.command=python a.py"]))
    b = comparable_part(
        load_config([*COMMAND, "trainer.command=python a.py", "model.hidden_size=8"])
    )
    c = comparable_part(load_config([*COMMAND, "trainer.command=python b.py"]))
    d = comparable_part(
        load_config([*COMMAND, "trainer.command=python a.py", "trainer.timeout_minutes=5"])
    )
    assert a == b == d and a != c
    assert "model.hidden_size" not in a and a["trainer.command"] == "python a.py"
    assert "trainer.name" not in comparable_part(
        load_config([])
    )  # built-in studies record no trainer keys


def test_default_study_names_say_what_trains():
    assert (
        load_config([*COMMAND, "trainer.command=python examples/train.py --lr {lr}"]).study.name
        == "train-command"
    )
    fn = load_config(
        [
            "trainer=function",
            "trainer._target_=mytrain.fit",
            "trainer.n_val=10",
            "trainer.chance=0.5",
        ]
    )
    assert fn.study.name == "fit-function"


def test_grid_lr_auto_and_find_need_the_builtin_trainer():
    with pytest.raises(UserError, match="grid.lr=auto: the range test trains lrsweep's own model"):
        load_config([*COMMAND, "trainer.command=python t.py", "grid.lr=auto"])


# --------------------------------------------------------------------------- placeholders


def test_placeholders_render_every_value_and_shell_quote_paths(tmp_path):
    setting = {"lr": 3e-05, "clip": None, "batch_size": 32, "model.dropout": 0.25}
    values = run_values(setting, 2, 10, tmp_path / "a b" / "m.csv", tmp_path / "r", tmp_path / "c")
    line = render(
        "t --lr {lr} --clip {clip} --bs {batch_size} --s {seed} --e {epochs} --d {dropout} "
        "--d2 {model.dropout} --log {metrics} {{x}} ${HOME}",
        values,
    )
    assert "--lr 3e-05 --clip none --bs 32 --s 2 --e 10 --d 0.25 --d2 0.25" in line
    assert f"--log '{tmp_path}/a b/m.csv'" in line and "{x} ${HOME}" in line
    env = run_environment(values, setting)
    assert (
        env["LRSWEEP_LR"] == "3e-05"
        and env["LRSWEEP_CLIP"] == "none"
        and env["LRSWEEP_MODEL_DROPOUT"] == "0.25"
    )
    assert '"lr": 3e-05' in env["LRSWEEP_SETTING"]
    assert unknown_placeholders("--lr {lrr} {lr} {{no}} ${HOME}", values) == ["lrr"]


def test_setting_folders_are_readable_and_tell_settings_apart(tmp_path):
    a = setting_folder({"lr": 0.1, "clip": None, "batch_size": 32})
    b = setting_folder({"lr": 0.1, "clip": None, "batch_size": 32, "dropout": 0.3})
    assert a.startswith("lr0.1-clipnone-bs32-") and a != b
    paths = RunPaths.of(tmp_path, {"lr": 0.1, "clip": 1.0, "batch_size": 8}, 3)
    assert paths.run_dir.name == "seed-3" and paths.prepare() is False
    (paths.checkpoint_dir / "last.ckpt").write_text("x")
    assert paths.prepare() is True  # something to resume from
    paths.clear()
    assert not paths.checkpoint_dir.exists() and paths.run_dir.exists()


# --------------------------------------------------------------------------- checks before any write


def test_an_unknown_placeholder_is_named_with_the_valid_ones(tmp_path):
    with pytest.raises(
        UserError,
        match=r"trainer.command: unknown placeholder \{lrr\}; the placeholders are \{lr\}",
    ):
        check_trainer(command_cfg(tmp_path, f"python {DATA / 'fake_train.py'} --lr {{lrr}}"))


def test_a_command_that_cannot_start_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"cannot start 'pyhton': no such program"):
        check_trainer(command_cfg(tmp_path, "pyhton train.py --lr {lr}"))
    with pytest.raises(UserError, match=r"the script nowhere/train.py does not exist"):
        check_trainer(command_cfg(tmp_path, "python nowhere/train.py --lr {lr}"))
    with pytest.raises(UserError, match=r"cannot read the command line"):
        check_trainer(command_cfg(tmp_path, "python 't.py --lr {lr}"))
    assert (
        check_trainer(
            command_cfg(
                tmp_path,
                f"FOO=1 {sys.executable} {DATA / 'fake_train.py'} --lr {{lr}} --clip {{clip}}",
            )
        )
        == []
    )


def test_an_axis_the_command_does_not_use_is_a_warning(tmp_path):
    notes = check_trainer(
        command_cfg(
            tmp_path,
            f"python {DATA / 'fake_train.py'} --lr {{lr}} --clip {{clip}}",
            "+grid.dropout=[0,1]",
        )
    )
    assert notes == [
        "grid axis dropout is not in trainer.command; the command can read it from $LRSWEEP_DROPOUT"
    ]


def test_a_swept_axis_of_lrsweeps_that_the_command_does_not_mention_is_refused(tmp_path):
    """The default grid.clip has two values: a command without {clip} would run every lr twice
    with the same command line, and say nothing. It is refused before anything runs."""
    script = f"python {DATA / 'fake_train.py'} --lr {{lr}}"
    with pytest.raises(UserError) as e:
        check_trainer(command_cfg(tmp_path, script))
    assert str(e.value) == (
        "trainer.command: grid.clip has 2 values (none, 1.0), but the command has no {clip}, so "
        "each would run the same command line; pass it (e.g. --clip {clip}, the word none for no "
        "clipping), or sweep one value (grid.clip='[null]')"
    )
    with pytest.raises(UserError, match=r"grid.batch_size has 2 values \(32, 64\)"):
        check_trainer(command_cfg(tmp_path, script + " --clip {clip}", "grid.batch_size=[32,64]"))
    with pytest.raises(UserError, match=r"grid.lr has 5 values .* no \{lr\}"):
        check_trainer(command_cfg(tmp_path, f"python {DATA / 'fake_train.py'} --clip {{clip}}"))
    # a single value needs no placeholder; the environment variable in the command counts
    assert check_trainer(command_cfg(tmp_path, script, "grid.clip=[null]")) == []
    assert check_trainer(command_cfg(tmp_path, script + " --clip $LRSWEEP_CLIP")) == []
    assert check_trainer(command_cfg(tmp_path, script + " --clip ${LRSWEEP_CLIP}")) == []


def fit_ok(setting, seed, epochs, report, checkpoint_dir):
    pass


def fit_kwargs(setting, report, **kwargs):
    pass


def fit_no_report(setting, seed):
    pass


def fit_needs_more(setting, report, data_path):
    pass


def test_function_signatures_are_checked():
    assert call_arguments(fit_ok, {}) == ["setting", "seed", "epochs", "report", "checkpoint_dir"]
    assert len(call_arguments(fit_kwargs, {"hidden": 3})) == 9  # all, init_checkpoint too
    with pytest.raises(TypeError, match="takes no report parameter"):
        call_arguments(fit_no_report, {})
    with pytest.raises(TypeError, match="data_path has no default"):
        call_arguments(fit_needs_more, {})
    assert call_arguments(fit_needs_more, {"data_path": "x"}) == ["setting", "report"]
    with pytest.raises(TypeError, match="passes hidden, which it does not take"):
        call_arguments(fit_ok, {"hidden": 3})


def test_the_trainer_options_state_no_default_of_their_own():
    """Every default lives once in the schema: configs/trainer/*.yaml only choose it (function.yaml
    set n_val, chance, timeout_minutes and columns itself, and lacked the keys added since, so
    trainer.metric=acc needed a +)."""
    import dataclasses

    import yaml

    from sweep.config.trainers import TARGET_OPTIONS, TargetTrainer

    for option in sorted((ROOT / "configs" / "trainer").glob("*.yaml")):
        node = yaml.safe_load(option.read_text())
        assert set(node) <= {"defaults", "name"}, (option.name, node)
        assert node["defaults"][0] == f"base_{option.stem}"
    cfg = load_config(
        [
            *FUNCTION,
            "trainer._target_=mytrain.fit",
            "trainer.metric=acc",
            "trainer.timeout_minutes=5",
        ]
    )
    assert cfg.trainer.metric == "acc" and cfg.trainer.timeout_minutes == 5
    schema = {f.name: f for f in dataclasses.fields(TargetTrainer)}
    for key in TARGET_OPTIONS:
        if key not in ("metric", "timeout_minutes", "n_val", "chance"):
            f = schema[key]
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            assert getattr(cfg.trainer, key) == default, key


def test_a_function_trainer_is_checked_and_its_source_fixes_the_study(tmp_path, monkeypatch):
    (tmp_path / "mytrain.py").write_text("def fit(setting, seed, report):\n    pass\n\nNOT = 3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    base = ["trainer=function", "trainer.n_val=10", "trainer.chance=0.5"]
    cfg = load_config([*base, "trainer._target_=mytrain.fit"])
    assert check_trainer(cfg) == [] and cfg.trainer.source == source_hash(__import__("mytrain").fit)
    assert "trainer.source" in comparable_part(cfg)
    with pytest.raises(UserError, match=r"trainer._target_: mytrain.NOT is a int, not a function"):
        check_trainer(load_config([*base, "trainer._target_=mytrain.NOT"]))
    with pytest.raises(UserError, match=r"trainer._target_: cannot import 'nomodule.fit'"):
        check_trainer(load_config([*base, "trainer._target_=nomodule.fit"]))
    with pytest.raises(UserError, match=r"has the wrong signature: the config passes hidden"):
        check_trainer(load_config([*base, "trainer._target_=mytrain.fit", "+trainer.hidden=3"]))
    cfg.trainer.source = "0" * 16
    with pytest.raises(UserError, match="the code of mytrain.fit changed"):
        check_trainer(cfg)


def test_a_failure_reason_quotes_the_scripts_own_last_lines_not_lrsweeps_header(tmp_path):
    err, out = tmp_path / "stderr.log", tmp_path / "stdout.log"
    err.write_text(
        header_line("2026-12-06 03:14:30", "python train.py --lr 0.1")
        + "an old attempt's error\n"
        + header_line("2026-12-06 03:20:00", "python train.py --lr 0.1")
        + 'Traceback (most recent call last):\n  File "train.py", line 3, in <module>\n'
        + "RuntimeError: shapes do not match\n\n"
    )
    out.write_text(header_line("2026-12-06 03:20:00", "python train.py --lr 0.1") + "epoch 1\n")
    reason = output_reason("exit status 1", tmp_path)
    assert reason == (
        "exit status 1: RuntimeError: shapes do not match (stderr.log ends: Traceback (most recent "
        'call last): | File "train.py", line 3, in <module> | RuntimeError: shapes do not match)'
    )
    assert short_reason(reason, 200) == "exit status 1: RuntimeError: shapes do not match"
    assert short_reason(reason, 30) == "exit status 1: RuntimeError..."
    # nothing of its own on stderr in this attempt: its stdout's last line; nothing at all: the status
    err.write_text(header_line("2026-12-06 03:20:00", "python train.py"))
    assert output_reason("exit status 3", tmp_path) == "exit status 3: epoch 1"
    out.unlink()
    assert output_reason("killed by signal 9 (SIGKILL)", tmp_path) == "killed by signal 9 (SIGKILL)"
    function_reason = 'raised ValueError: bad (traceback ends: File "f.py" | ValueError: bad)'
    assert short_reason(function_reason, 100) == "raised ValueError: bad"


# --------------------------------------------------------------------------- processes and GPUs


def test_each_worker_runs_see_only_its_own_gpu():
    assert visible_devices("cuda:1", None) == "1"
    assert visible_devices("cuda:1", "3,5") == "5"  # a Slurm job that sees GPUs 3 and 5
    assert visible_devices("cuda:0", "3,5") == "3"
    assert visible_devices("cpu", "0,1") == ""


def _group_processes(pgid: int) -> list[int]:
    """The live processes of a process group (zombies left for the container's init to reap
    are dead: they hold no memory and run nothing)."""
    out = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return out


def test_the_supervisor_ends_the_whole_group_when_stopped(tmp_path):
    pids = tmp_path / "pids"
    script = (
        f"{sys.executable} {DATA / 'fake_train.py'} --lr 0.1 --log {tmp_path / 'm.csv'} "
        f"--hang-at 1 --child --pids {pids}"
    )
    proc = subprocess.Popen(
        [sys.executable, "-I", SUPERVISOR, "1", "--", "/bin/sh", "-c", script],
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while (not pids.exists() or len(pids.read_text().split()) < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    started = [int(p) for p in pids.read_text().split()]
    assert len(_group_processes(proc.pid)) >= 3  # supervisor, the script, its grandchild (and sh)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=20)
    time.sleep(0.2)
    assert [
        p
        for p in started
        if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ] == []
    assert _group_processes(proc.pid) == []


def test_the_supervisor_passes_the_exit_status_and_cleans_up_what_the_command_left(tmp_path):
    pid_file = tmp_path / "background.pid"
    code = subprocess.run(
        [
            sys.executable,
            "-I",
            SUPERVISOR,
            "1",
            "--",
            "/bin/sh",
            "-c",
            f"sleep 300 & echo $! > {pid_file}; exit 3",
        ],
        start_new_session=True,
        timeout=30,
    ).returncode
    assert code == 3
    background = int(pid_file.read_text())  # this test's own background process, by its pid

    def alive() -> bool:
        try:
            return psutil.Process(background).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 5  # a SIGKILL is delivered when the process next runs: on a
    while (
        alive() and time.monotonic() < deadline
    ):  # loaded machine that is after the supervisor's exit
        time.sleep(0.05)
    assert not alive()


# --------------------------------------------------------------------------- the Python API


def test_the_python_api_writes_what_the_command_line_would_say():
    def fit(setting, seed, report):
        pass

    out = sweep_overrides(
        fit,
        {"lr": [0.001, 0.1], "clip": [None, 1.0], "dropout": [0, 0.3]},
        ["study.name=x"],
        seeds=3,
        n_val=500,
        chance=0.1,
    )
    assert out[:2] == [
        "trainer=function",
        '''trainer._target_="test_trainers.test_the_python_api_writes_what_the_command_line_would_say.<locals>.fit"''',
    ]
    assert (
        "trainer.n_val=500" in out
        and "grid.clip=[null,1.0]" in out
        and "+grid.dropout=[0,0.3]" in out
    )
    assert out[-2:] == ["seeds=3", "study.name=x"]
    assert sweep_overrides("python t.py --lr {lr}", n_val=4, chance=0.5)[:2] == [
        "trainer=command",
        "trainer.command=python t.py --lr {lr}",
    ]
    with pytest.raises(UserError, match="only for your own training"):
        sweep_overrides(None, n_val=4)
