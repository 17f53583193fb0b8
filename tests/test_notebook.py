"""lrsweep in a real Jupyter kernel (ipykernel, driven by nbclient), as a notebook's user runs it:
the kernel keeps its signal handlers, collects no zombies, can call from a thread, starts no
worker when nothing is left, shows progress while a function trains in-process, and prints no
warning of an import it does not need. Also a plain script: Ctrl-C still works after a sweep."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from kernel import Kernel

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration("nbclient", "ipykernel"),
    pytest.mark.xdist_group("kernel"),
]

# A training function importable by worker processes (the folder is the kernel's working dir).
TOYFIT = textwrap.dedent("""
    import time

    def fit(setting, seed, epochs, report):
        for epoch in range(1, epochs + 1):
            acc = min(0.9, 0.2 + 0.2 * epoch + 0.01 * seed) if setting["lr"] < 1 else 0.1
            report(epoch, val_acc=acc, val_loss=1.0 / epoch, train_loss=1.0 / epoch)
""")

ARGS = 'seeds=2, epochs=2, n_val=100, chance=0.1, workers=1, results_dir="results"'
GRID2 = '{"lr": [0.1, 1.0], "clip": [None], "batch_size": [32]}'
GRID3 = '{"lr": [0.1, 1.0, 3.0], "clip": [None], "batch_size": [32]}'


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    folder = tmp_path_factory.mktemp("notebook")
    (folder / "toyfit.py").write_text(TOYFIT)
    with Kernel(folder) as k:
        k.folder = folder
        out = k.run("import os, signal, threading, psutil\nimport sweep")
        assert not out.error, out
        # The kernel's first sweep (a function of the session: in-process, no worker to start)
        # imports everything lrsweep needs.
        k.first_sweep = k.run(
            "def first_fit(setting, seed, epochs, report):\n"
            "    report(1, val_acc=0.5, val_loss=1.0, train_loss=1.0)\n"
            f"r = sweep.run_sweep(first_fit, grid={GRID2}, seeds=1, epochs=1, n_val=100, "
            "chance=0.1, results_dir='results', overrides=['study.name=first'])"
        )
        assert not k.first_sweep.error, k.first_sweep
        yield k


def test_a_fresh_kernel_prints_no_warning_of_an_import_lrsweep_does_not_need(kernel):
    assert "Warning" not in kernel.first_sweep.stderr, kernel.first_sweep.stderr


def _children(k: Kernel) -> list[str]:
    out = k.run(
        "print([(c.pid, c.status(), ' '.join(c.cmdline()[:4]) or c.name())"
        " for c in psutil.Process().children(recursive=True)])"
    )
    assert not out.error, out
    return eval(out.stdout.strip())


def test_a_sweep_restores_the_kernels_signal_handlers(kernel):
    out = kernel.run(
        "before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))\n"
        f"r = sweep.run_sweep('toyfit.fit', grid={GRID2}, {ARGS}, overrides=['study.name=handlers'])\n"
        "after = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))\n"
        "print('status', r.status, 'same handlers', before == after, after)"
    )
    assert not out.error, out
    assert "status 0 same handlers True" in out.stdout, out.stdout + out.stderr[-2000:]


def test_no_worker_is_left_behind_not_even_a_dismissed_one(kernel):
    # 2 settings done already, 1 more: 2 workers start, one is not needed and is dismissed.
    two = ARGS.replace("workers=1", "workers=2")
    out = kernel.run(
        f"r = sweep.run_sweep('toyfit.fit', grid={GRID3}, {two}, overrides=['study.name=handlers'])\n"
        "print('status', r.status)"
    )
    assert not out.error and "status 0" in out.stdout, out
    assert "2 done, 1 to run" in out.stdout
    assert _children(kernel) == []


def test_a_call_with_nothing_left_starts_no_worker(kernel):
    out = kernel.run(
        "import sweep.launch.launcher as launcher\n"
        "started = []\n"
        "real_spawn = launcher.spawn\n"
        "launcher.spawn = lambda *a, **k: started.append(a) or real_spawn(*a, **k)\n"
        "try:\n"
        f"    r = sweep.run_sweep('toyfit.fit', grid={GRID3}, {ARGS}, overrides=['study.name=handlers'])\n"
        "finally:\n"
        "    launcher.spawn = real_spawn\n"
        "print('status', r.status, 'spawned', len(started))"
    )
    assert not out.error, out
    assert "3 done, 0 to run; 0 worker(s)" in out.stdout
    assert "status 0 spawned 0" in out.stdout, out.stdout
    assert _children(kernel) == []


def test_a_sweep_called_from_another_thread_completes(kernel):
    out = kernel.run(
        "box = {}\n"
        "def work():\n"
        "    try:\n"
        f"        box['status'] = sweep.run_sweep('toyfit.fit', grid={GRID2}, {ARGS}, "
        "overrides=['study.name=thread']).status\n"
        "    except BaseException as e:\n"
        "        box['error'] = repr(e)\n"
        "t = threading.Thread(target=work)\n"
        "t.start(); t.join(300)\n"
        "print('thread', box, t.is_alive())"
    )
    assert not out.error, out
    assert "thread {'status': 0} False" in out.stdout, out.stdout + out.stderr[-2000:]
    assert _children(kernel) == []


def test_a_function_of_the_session_shows_progress_while_it_trains(kernel):
    out = kernel.run(
        "import time\n"
        "def slow_fit(setting, seed, epochs, report):\n"
        "    for epoch in range(1, epochs + 1):\n"
        "        time.sleep(1.2)\n"
        "        report(epoch, val_acc=0.5, val_loss=1.0, train_loss=1.0)\n"
        "    print('fit done', flush=True)\n"
        "r = sweep.run_sweep(slow_fit, grid={'lr': [0.1, 0.2, 0.3], 'clip': [None], "
        "'batch_size': [32]}, seeds=1, epochs=2, n_val=100, chance=0.1, results_dir='results')"
    )
    assert not out.error, out
    streams = out.streams()
    last_fit = max(i for i, (name, text) in enumerate(streams) if "fit done" in text)
    before = "".join(text for name, text in streams[:last_fit] if name == "stderr")
    assert re.search(r"[12]/3 settings done", before), streams


EDITED = """
def edited_fit(setting, seed, epochs, report):{doc}
    for epoch in range(1, epochs + 1):{comment}
        report(epoch, val_acc={acc}, val_loss=1.0, train_loss=1.0)

r = sweep.run_sweep(edited_fit, grid={{'lr': [0.1, 1.0], 'clip': [None], 'batch_size': [32]}},
                    seeds=1, epochs=2, n_val=100, chance=0.1, results_dir='results'{more})
print('status', r.status)
"""


def test_a_comment_keeps_the_study_and_a_changed_function_gets_advice_python_can_follow(kernel):
    first = kernel.run(EDITED.format(doc="", comment="", acc="0.5", more=""))
    assert not first.error and "status 0" in first.stdout, first
    commented = kernel.run(
        EDITED.format(
            doc='\n    """Now with a docstring."""\n',
            comment="  # and a comment",
            acc="0.5",
            more="",
        )
    )
    assert not commented.error, commented
    assert "2 done, 0 to run" in commented.stdout and "status 0" in commented.stdout
    changed = kernel.run(EDITED.format(doc="", comment="", acc="0.6", more=""))
    assert changed.error.startswith("UserError: trainer._target_: the code of"), changed.error
    suggested = re.search(r"overrides=\[('[^']+')\]", changed.error).group(1)
    followed = kernel.run(
        EDITED.format(doc="", comment="", acc="0.6", more=f", overrides=[{suggested}]")
    )
    assert not followed.error and "status 0" in followed.stdout, followed


def test_a_result_shown_inline_carries_its_figures(kernel):
    out = kernel.run("sweep.load_results('first', results_dir='results')")  # the cell's value
    html = next(o["data"]["text/html"] for o in out.outputs if "data" in o)
    assert html.count("src='data:image/png;base64,") == 3, html[:500]


SCRIPT = textwrap.dedent("""
    import signal
    import time
    import sweep

    # Ctrl-C as in a terminal. A harness started in the background (`cmd &`, nohup) passes
    # SIGINT on ignored, and the sweep must give back what it found, whatever that is.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    r = sweep.run_sweep("toyfit.fit", grid={"lr": [0.1], "clip": [None], "batch_size": [32]},
                        seeds=1, epochs=2, n_val=100, chance=0.1, workers=1, results_dir="results")
    print("sweep done", r.status, flush=True)
    for _ in range(300):  # a minute in short sleeps: should the kernel hand the SIGINT to another
        time.sleep(0.2)   # thread of the process, a long sleep of this one would not end early
    print("slept through Ctrl-C", flush=True)
""")


def test_ctrl_c_interrupts_a_script_after_its_sweep(tmp_path):
    (tmp_path / "toyfit.py").write_text(TOYFIT)
    (tmp_path / "script.py").write_text(SCRIPT)
    p = subprocess.Popen(
        [sys.executable, "script.py"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = ""
        deadline = time.monotonic() + 300
        while "sweep done" not in line and time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line and p.poll() is not None:
                break
        assert "sweep done 0" in line, p.stderr.read()[-3000:]
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=90)  # ignored, the script ends by itself after a minute
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert "slept through" not in out, err[-2000:]
    assert p.returncode != 0 and "KeyboardInterrupt" in err, err[-2000:]
