"""Shared fixtures: small configs that train in a second on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweep.config import load_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """In-process training tests use one thread: tiny models only lose time to thread sync,
    and CI's two cores are shared with the CLI subprocesses of other tests."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_overrides(tmp_path):
    """Overrides for a tiny digits sweep writing into a temporary results folder."""
    return [
        "task=digits", "model.hidden_size=16", "epochs=3", "seeds=2",
        "grid.lr=[0.1,1.0]", "grid.clip=[null,1.0]", "grid.batch_size=[64]",
        f"results_dir={tmp_path / 'results'}", "study.name=tiny", "workers=1",
    ]


@pytest.fixture
def tiny_cfg(tiny_overrides):
    return load_config(tiny_overrides)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `sweep` CLI (python -m sweep) and capture its output."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "sweep", *args], cwd=cwd or ROOT, capture_output=True, text=True,
        timeout=timeout, env=full_env,
    )


REQUIRE_SERVICES = os.environ.get("LRSWEEP_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip a test whose service is missing, except in CI where every service must be there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (LRSWEEP_REQUIRE_SERVICES=1: CI must provide it)")
    pytest.skip(reason)


@pytest.fixture
def postgres_url():
    """URL of a real PostgreSQL database (LRSWEEP_TEST_POSTGRES_URL, started by .ci/run)."""
    url = os.environ.get("LRSWEEP_TEST_POSTGRES_URL")
    if not url:
        skip_or_fail("no PostgreSQL server: set LRSWEEP_TEST_POSTGRES_URL")
    return url


def kill_process_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a `sweep` process and every worker it started, at the same moment."""
    import signal

    import psutil

    family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
