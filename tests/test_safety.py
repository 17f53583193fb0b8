"""Safe by construction (issue 6): data files and checkpoints are never unpickled, credentials
never leave the storage URL, the HTML report escapes what configs, paths and data say, and result
files are replaced atomically (a failure or a kill mid-write leaves the previous file intact).
"""

from __future__ import annotations

import ast
import errno
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT, run_cli

from sweep.core.errors import UserError

TINY = [
    "model.hidden_size=4",
    "model.layers=1",
    "epochs=1",
    "seeds=1",
    "grid.lr=[0.1]",
    "grid.clip=[null]",
    "workers=1",
]


class Trap:
    """Unpickling this object creates the file `marker` (any code could run instead)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# --------------------------------------------------------------------------- no unpickling


def _load_calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == "load"
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == name
    ]


def test_every_np_load_and_torch_load_in_the_package_refuses_pickles():
    """Structural check: every call names the safe option explicitly."""
    found = 0
    for path in (ROOT / "sweep").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for module, keyword, safe in (
            ("np", "allow_pickle", False),
            ("torch", "weights_only", True),
        ):
            for call in _load_calls(tree, module):
                found += 1
                given = {k.arg: k.value for k in call.keywords}
                assert keyword in given, (
                    f"{path.name}:{call.lineno}: {module}.load without {keyword}={safe}"
                )
                value = given[keyword]
                assert isinstance(value, ast.Constant) and value.value is safe, (
                    f"{path.name}:{call.lineno}"
                )
    assert found >= 3  # the data reader, checkpoints, the task cache


def test_a_pickled_object_array_in_an_npz_is_refused_not_executed(tmp_path):
    from sweep.config import FileTask
    from sweep.tasks import build_task

    marker = tmp_path / "pwned"
    data = tmp_path / "evil.npz"
    x = np.empty(4, dtype=object)
    x[:] = [Trap(marker)] * 4
    np.savez(data, x=x, y=np.arange(4) % 2)  # np.savez pickles object arrays
    with pytest.raises(UserError, match=r"task.path: .*evil.npz") as info:
        build_task(FileTask(path=str(data)))
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_a_checkpoint_holding_a_pickled_object_is_ignored_not_executed(tmp_path, capsys):
    from sweep.training.checkpoints import FORMAT, Checkpointer

    marker = tmp_path / "pwned"
    ckpt = Checkpointer(
        tmp_path / "checkpoints", {"lr": 0.1, "clip": None, "batch_size": 8}, [0], "fp", 1, 0
    )
    ckpt.path.parent.mkdir(parents=True)
    torch.save({"format": FORMAT, "key": ckpt.key, "epoch": 1, "state": Trap(marker)}, ckpt.path)
    assert ckpt.load() is None  # the trial starts from epoch 0 instead
    assert not marker.exists()
    assert "ignoring unreadable checkpoint" in capsys.readouterr().err


def test_a_task_cache_holding_a_pickled_object_is_ignored_not_executed(tmp_path):
    from sweep.tasks.data import load_task

    marker = tmp_path / "pwned"
    torch.save({"name": Trap(marker)}, tmp_path / "task.pt")
    assert load_task(tmp_path / "task.pt") is None  # the worker builds the data itself
    assert not marker.exists()


# --------------------------------------------------------------------------- credentials


def _all_bytes(folder: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in folder.rglob("*") if p.is_file()]


@pytest.mark.slow
@pytest.mark.postgres
def test_a_storage_password_is_never_printed_stored_or_written(postgres_url, tmp_path):
    import optuna

    password = urlsplit(postgres_url).password
    assert password, "the test database URL must carry a password for this test to mean anything"
    results = tmp_path / "results"
    name = f"secret-{uuid.uuid4().hex[:8]}"
    common = [f"study.storage={postgres_url}", f"study.name={name}", f"results_dir={results}"]
    try:
        outputs = [run_cli("run", *TINY, "grid.batch_size=[256]", *common)]
        assert outputs[0].returncode == 0, outputs[0].stderr
        outputs.append(run_cli("status", *common))
        outputs.append(run_cli("report", *common))
        outputs.append(run_cli("run", "--cfg", "job", *common))
        outputs.append(run_cli("run", *TINY, *common, "model=gru"))  # refused: incomparable
        assert [p.returncode for p in outputs] == [0, 0, 0, 0, 2]
        for p in outputs:
            assert password not in p.stdout and password not in p.stderr
        assert "***@" in outputs[1].stdout  # status shows the storage, redacted
        assert (results / name / "report.html").exists()
        for path, content in _all_bytes(results):
            assert password.encode() not in content, path
        study = optuna.load_study(study_name=name, storage=postgres_url)
        attrs = repr(study.user_attrs) + "".join(repr(t.user_attrs) for t in study.get_trials())
        assert password not in attrs
    finally:
        try:
            optuna.delete_study(study_name=name, storage=postgres_url)
        except KeyError:
            pass


def test_an_unreachable_storage_with_a_password_is_reported_without_it(tmp_path):
    url = "postgresql://alice:s3cr3t-pa/ss@127.0.0.1:1/db"  # a '/' in the password, unescaped
    for command in ("run", "status", "report", "worker"):
        p = run_cli(command, f"study.storage={url}", f"results_dir={tmp_path}", "study.name=x")
        assert p.returncode == 2, p.stderr
        assert "s3cr3t" not in p.stderr + p.stdout
        assert "postgresql://alice:***@127.0.0.1:1/db" in p.stderr


@pytest.mark.parametrize(
    "password", ["ab'cd", 'ab"cd', "a'b@c'd", "x\"y'z"], ids=["quote", "double", "mixed", "both"]
)
@pytest.mark.parametrize("command", ["status", "report", "run"])
def test_a_password_with_quotes_is_hidden_in_the_cannot_parse_error(password, command, capsys):
    """A password holding a quote makes the override unparsable for Hydra; the message quoting
    the override shows *** for it (in-process: the CLI's own printing is what is tested)."""
    from sweep.cli import execute

    assert execute([command, f"study.storage=postgresql://u:{password}@host/x"]) == 2
    out = capsys.readouterr()
    assert password not in out.out + out.err, out.err
    assert "postgresql://u:***@host/x" in out.err, out.err


@pytest.mark.parametrize("how", ["--debug", "HYDRA_FULL_ERROR=1"])
@pytest.mark.parametrize(
    "args",
    [
        ["report", "study.storage=postgresql://u:secret@h/db<x"],  # an override Hydra cannot parse
        [
            "status",
            "study.storage=postgresql://u:secret@127.0.0.1:1/db",
        ],  # a server that is not there
        ["run", "--cfg", "job", "study.storage=postgresql://u:secret@h/db"],
    ],
)
def test_a_traceback_asked_for_hides_the_password_too(args, how, capsys, monkeypatch):
    """--debug and HYDRA_FULL_ERROR=1 print a traceback before the one-line error: both are
    redacted (in-process: the CLI's own printing is what is tested)."""
    from sweep.cli import execute

    if how == "--debug":
        args = [*args, "--debug"]
    else:
        monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    execute(list(args))
    out = capsys.readouterr()
    assert "secret" not in out.out + out.err
    if args[0] != "run":
        assert "Traceback (most recent call last)" in out.err and "u:***@" in out.err


def test_a_bugs_traceback_hides_the_password(capsys, monkeypatch):
    import sweep.cli as cli

    def broken(argv):
        raise RuntimeError("could not connect to postgresql://u:secret@db/x")

    monkeypatch.setattr(cli, "dispatch", broken)
    assert cli.execute(["status"]) == cli.EXIT_BUG
    err = capsys.readouterr().err
    assert (
        "secret" not in err and "RuntimeError: could not connect to postgresql://u:***@db/x" in err
    )


@pytest.mark.parametrize(
    "url,shown",
    [
        ("postgresql://user:secret@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("postgresql://user:se/cr@et@host/db", "postgresql://user:***@host/db"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("postgresql://host/db?user=u&password=secret", "postgresql://host/db?user=u&password=***"),
        ("sqlite:////tmp/a@b/x.db", "sqlite:////tmp/a@b/x.db"),
    ],
)
def test_redact_url_hides_every_form_of_password(url, shown):
    from sweep.core.redact import redact_secrets, redact_url

    assert redact_url(url) == shown
    if "secret" in url:  # also inside any message that quotes the URL
        assert "secret" not in redact_secrets(f"could not parse '{url}' here")


# --------------------------------------------------------------------------- the HTML report


@pytest.fixture(scope="module")
def hostile_sweep(tmp_path_factory):
    """A tiny finished sweep whose study name, data path and class labels are HTML."""
    root = tmp_path_factory.mktemp("hostile")
    folder = root / "d<i>"
    folder.mkdir()
    labels = ["<img src=x onerror=alert(1)>", "ok"]
    rows = [
        {"seq": s, "step": t, "f": float(s % 3 + t), "label": labels[s % 2]}
        for s in range(40)
        for t in range(4)
    ]
    pd.DataFrame(rows).to_csv(folder / "seqs.csv", index=False)
    results = root / "results"
    p = run_cli(
        "run",
        *TINY,
        "grid.batch_size=[8]",
        "task=file",
        f"task.path='{folder / 'seqs.csv'}'",
        "study.name='x<script>'",
        f"results_dir={results}",
    )
    assert p.returncode == 0, p.stderr
    return results, "x<script>"


@pytest.mark.slow
@pytest.mark.xdist_group("hostile-sweep")
def test_the_report_escapes_names_paths_and_labels(hostile_sweep):
    results, name = hostile_sweep
    html = (results / name / "report.html").read_text(encoding="utf-8")
    assert "x&lt;script&gt;" in html  # shown, escaped ...
    for raw in ("x<script>", "<img src=x", "d<i>"):  # ... never raw
        assert raw not in html, raw
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "d&lt;i&gt;" in html
    assert "<script>x" not in html


# --------------------------------------------------------------------------- atomic result files


def _tmp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def _half_then_fail(original):
    """A writer that writes half of what it should, then hits a full disk."""

    def write(self, *args, **kwargs):
        text = args[0] if args and isinstance(args[0], str) else None
        if text is not None:
            original(self, text[: len(text) // 2], **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    return write


@pytest.mark.slow
@pytest.mark.xdist_group("hostile-sweep")
def test_a_write_that_fails_halfway_leaves_the_previous_results_intact(hostile_sweep, monkeypatch):
    from sweep.report.write import write_results
    from sweep.store.storage import open_storage
    from sweep.store.studies import load_study

    results, name = hostile_sweep
    study = load_study(open_storage(f"sqlite:///{results / 'lrsweep.db'}", create=False), name)
    out = results / name
    good = {
        f: (out / f).read_bytes() for f in ("runs.csv", "summary.csv", "verdict.txt", "report.html")
    }

    def csv_half_then_full_disk(df, path, *args, **kwargs):
        Path(path).write_text(df.to_string()[:100], encoding="utf-8")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    with monkeypatch.context() as m:
        m.setattr(pd.DataFrame, "to_csv", csv_half_then_full_disk)
        with pytest.raises(
            UserError, match="results_dir: cannot write .*No space left on device.*sweep report"
        ):
            write_results(study, str(results))
    with (
        monkeypatch.context() as m
    ):  # the tables succeed, the text files (verdict.txt, report.html) fail
        m.setattr(Path, "write_text", _half_then_fail(Path.write_text))
        with pytest.raises(
            UserError, match=r"(verdict\.txt|report\.html).*No space left on device"
        ):
            write_results(study, str(results))
    for f, content in good.items():
        assert (out / f).read_bytes() == content, f
    assert _tmp_files(out) == []
    write_results(study, str(results))  # and the next write works
    assert (out / "report.html").stat().st_size > 0 and _tmp_files(out) == []


WRITER = """
import sys, time
from pathlib import Path
from sweep.core.files import atomic_write

def slow(tmp):
    with open(tmp, "w") as f:
        f.write("half of a new file")
        f.flush()
        print("writing", flush=True)
        time.sleep(60)

atomic_write(Path(sys.argv[1]), slow)
"""


def test_a_writer_killed_midway_leaves_the_previous_file_and_its_leftover_is_cleaned(tmp_path):
    from sweep.core.files import STALE_TMP_SECONDS, write_text

    target = tmp_path / "runs.csv"
    target.write_text("the good file\n")
    p = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout.readline().strip() == "writing"
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert target.read_text() == "the good file\n"
    leftovers = list(tmp_path.glob(".runs.csv.*.tmp"))
    assert len(leftovers) == 1  # a killed process cannot clean up after itself ...
    old = time.time() - STALE_TMP_SECONDS - 60
    os.utime(leftovers[0], (old, old))
    write_text(target, "a newer good file\n")  # ... the next write of the file does
    assert target.read_text() == "a newer good file\n"
    assert list(tmp_path.glob(".runs.csv.*.tmp")) == []
