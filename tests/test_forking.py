"""One fork policy (sweep.core.forking) for every child that runs Python code: the launcher's
workers and the report's figure pool. A figure pool never forks a process with other threads
(a notebook's kernel), and the figures are the same whether drawn by a pool or in-process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import types

import pytest
from conftest import ROOT
from test_plots import synthetic_tables

from sweep.core.forking import fork_unsafe_reason
from sweep.report.figures import FIGURES_PER_PROCESS, write_figures


def test_the_policy_names_why_a_fork_is_unsafe(monkeypatch):
    release = threading.Event()
    other = threading.Thread(target=release.wait, name="kernel-like")
    other.start()
    try:
        assert "other threads run (" in fork_unsafe_reason()
    finally:
        release.set()
        other.join()
    cuda = types.SimpleNamespace(cuda=types.SimpleNamespace(is_initialized=lambda: True))
    monkeypatch.setitem(sys.modules, "torch", cuda)
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert fork_unsafe_reason() == "CUDA is initialised"
    cuda.cuda.is_initialized = lambda: False
    assert fork_unsafe_reason() is None
    assert fork_unsafe_reason(trained_here=True).startswith("this process trained")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert fork_unsafe_reason() == "not Linux (darwin)"


def test_figures_are_never_forked_while_another_thread_runs(tmp_path, monkeypatch):
    tables = synthetic_tables()

    def no_fork():
        raise AssertionError("forked a process that has other threads")

    monkeypatch.setattr(os, "fork", no_fork)
    monkeypatch.setattr("sweep.report.figures.usable_cores", lambda: 4)
    release = threading.Event()
    other = threading.Thread(target=release.wait)  # as a notebook kernel's own threads
    other.start()
    try:
        files = write_figures(tables, tmp_path, max_grid_cells=1)  # one file per setting
    finally:
        release.set()
        other.join()
    # Enough figures for a pool of two or more processes, had there been no other thread.
    assert len(files) >= 2 * FIGURES_PER_PROCESS and all(f.path.is_file() for f in files)


# Draws the same tables with the pool (this fresh process has no other thread) and in-process,
# counting the processes forked; then a tiny sweep's handful of figures, which forks none.
SAME_EITHER_WAY = textwrap.dedent("""
    import os
    import sys
    from pathlib import Path
    sys.path.insert(0, "tests")
    from test_plots import synthetic_tables
    import sweep.report.figures as figures
    from sweep.core.forking import fork_unsafe_reason

    forks = []
    os.register_at_fork(after_in_parent=lambda: forks.append(1))
    out = Path(sys.argv[1])
    tables = synthetic_tables()
    assert fork_unsafe_reason() is None, fork_unsafe_reason()
    figures.usable_cores = lambda: 2
    pooled = figures.write_figures(tables, out / "pool", max_grid_cells=1)
    pool_forks = len(forks)
    figures.usable_cores = lambda: 4
    few = figures.write_figures(tables, out / "few")
    few_forks = len(forks) - pool_forks
    figures.fork_unsafe_reason = lambda *a: "asked not to"
    here = figures.write_figures(tables, out / "here", max_grid_cells=1)
    assert [f.name for f in pooled] == [f.name for f in here]
    different = [f.name for f, g in zip(pooled, here) if f.path.read_bytes() != g.path.read_bytes()]
    print(len(pooled), "figures;", pool_forks, "forks;", len(few), "figures;", few_forks, "forks;",
          "differ:", different)
""")


def test_figures_drawn_by_the_pool_are_the_ones_drawn_in_process(tmp_path):
    p = subprocess.run(
        [sys.executable, "-c", SAME_EITHER_WAY, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip().endswith("differ: []"), p.stdout
    words = p.stdout.split()
    n_pooled, pool_forks, n_few, few_forks = (
        int(words[0]),
        int(words[2]),
        int(words[4]),
        int(words[6]),
    )
    assert n_pooled >= 2 * FIGURES_PER_PROCESS and pool_forks == 2  # drawn by two processes
    assert n_few < 2 * FIGURES_PER_PROCESS and few_forks == 0  # a handful: drawn in-process


@pytest.mark.parametrize("device", ["cpu", "cuda:0"])
def test_workers_ask_the_same_policy(device, monkeypatch):
    from sweep.launch import children

    monkeypatch.delenv(children.ENV_START, raising=False)
    monkeypatch.setattr(children, "fork_unsafe_reason", lambda trained_here=False: "no")
    assert children.start_method(device) == "exec"
    monkeypatch.setattr(children, "fork_unsafe_reason", lambda trained_here=False: None)
    assert children.start_method(device) == ("fork" if device == "cpu" else "exec")
