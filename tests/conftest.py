"""Shared fixtures: small configs that train in a second on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# One BLAS and OpenMP thread per test process, set before numpy or torch load them: pytest-xdist
# already runs one process per core, and a second thread in each only contends for the same
# cores (tiny arrays, tiny models), spinning while it waits. The tests' own processes (xdist's,
# the CLI's, example scripts, notebook kernels) inherit it; lrsweep's runs get `threads` anyway.
for _threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

from sweep.config import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# The validity tests of real training (tests/test_autopsy_validity.py, test_autopsy_function.py)
# run fewer seeds in the suite, which must finish in 10 minutes on 2 cores; LRSWEEP_TEST_FULL=1
# runs the samples docs/statistics.md quotes. The thresholds are the same at either size.
FULL_SAMPLES = os.environ.get("LRSWEEP_TEST_FULL") == "1"


# The modules whose tests run longest (30-70 s each: example scripts, kill tests, real worker
# processes) are collected first, so that xdist starts them early and no core idles at the end
# while one of them finishes. Each module's tests stay together (module fixtures are built once).
LONG_FIRST = (
    "test_examples.py",
    "test_loss_examples.py",
    "test_start_examples.py",
    "test_autopsy_validity.py",
    "test_autopsy_function.py",
    "test_start_trainers.py",
    "test_user_project.py",
    "test_trainer_runs.py",
    "test_workers.py",
    "test_queue.py",
    "test_resume.py",
    "test_journal.py",
    "test_start_checkpoint.py",
    "test_dead_workers.py",
)


def _long_first(item) -> int:
    name = item.path.name
    return LONG_FIRST.index(name) if name in LONG_FIRST else len(LONG_FIRST)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


def pytest_configure(config):
    """Under `--dist loadgroup` (pyproject's addopts) pytest-xdist appends a test's group to its
    id, which is how the tests that share an expensive fixture land on one worker. pytest 9.2
    keeps the id where pytest-xdist 3.8 cannot change it: every group is ignored and each such
    fixture built again on each worker. Say so instead of running slowly."""
    config.addinivalue_line(
        "markers", "lrsweep_service_missing(reason): fails in CI, skips elsewhere (conftest)"
    )
    config.pluginmanager.register(IntegrationTier(), "lrsweep-integration-tier")
    if config.getoption("dist", "no") != "loadgroup":
        return
    import xdist

    if _version(pytest.__version__) >= (9, 2) and _version(xdist.__version__) <= (3, 8):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} with pytest-xdist {xdist.__version__} ignores "
            f"xdist_group; install the versions pyproject.toml names: pip install -e '.[test]'"
        )


# The integration tier: tests that need a runtime beyond lrsweep and pytest. Keras and
# Lightning training (the examples at their documented commands, the callbacks), a Jupyter
# kernel, a PostgreSQL server, headless Chromium, the built wheel in a fresh venv. They are a
# third of the suite's CPU (importing Keras costs 9 s of CPU per process, Lightning 7 s), and a
# contributor without the services would only skip some of them. A plain `python -m pytest`
# (the README's test command) leaves them out and says so; `--integration` adds them,
# `-m integration` runs only them (CI runs both: .ci/run). Naming test files or `-k` runs what
# was named, tier or not.
INTEGRATION = "integration"
INTEGRATION_MARKERS = ("postgres", "browser")  # a service: integration by definition
INTEGRATION_FIXTURES = ("postgres_url", "installed_lrsweep")


def pytest_addoption(parser):
    parser.addoption(
        "--integration",
        action="store_true",
        help="also run the integration tests (Keras, Lightning, a Jupyter kernel, PostgreSQL, "
        "Chromium, the wheel in a fresh venv); -m integration runs only them",
    )


class IntegrationTier:
    """Marks the integration tests, and leaves them out of a plain run (registered by
    pytest_configure). Runs first: `-m integration` then sees the marks added here."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, config, items):
        _integration_tier(config, items)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Long modules first (LONG_FIRST); tests skipped for a missing service fail in CI."""
    items.sort(key=_long_first)  # stable: every other order is kept
    _services_required(items)


def is_integration(item) -> bool:
    if any(item.get_closest_marker(name) for name in (INTEGRATION, *INTEGRATION_MARKERS)):
        return True
    return any(name in getattr(item, "fixturenames", ()) for name in INTEGRATION_FIXTURES)


def runs_integration(config) -> bool:
    """Whether this session runs the integration tier: asked for (--integration, a -m that names
    it), or the tests were named (paths or -k)."""
    return bool(
        config.getoption("--integration")
        or INTEGRATION in (config.getoption("markexpr") or "")
        or config.getoption("keyword")
        or config.getoption("file_or_dir")
    )


def _integration_tier(config, items) -> None:
    for item in items:
        if is_integration(item) and not item.get_closest_marker(INTEGRATION):
            item.add_marker(pytest.mark.integration)
    if runs_integration(config):
        return
    left_out = [item for item in items if item.get_closest_marker(INTEGRATION)]
    if left_out:
        items[:] = [item for item in items if not item.get_closest_marker(INTEGRATION)]
        config.hook.pytest_deselected(items=left_out)


def pytest_terminal_summary(terminalreporter, config):
    if not runs_integration(config):
        terminalreporter.write_line(
            "integration tests left out (Keras, Lightning, Jupyter, PostgreSQL, Chromium, the "
            "wheel): python -m pytest --integration runs them too, -m integration only them"
        )


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """In-process training tests use one thread: tiny models only lose time to thread sync,
    and CI's two cores are shared with the CLI subprocesses of other tests. A session that has
    not imported torch (a pytest run inside a test) does not pay 2 s for it here: torch reads
    OMP_NUM_THREADS, set above, when a test imports it."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_overrides(tmp_path):
    """Overrides for a tiny digits sweep writing into a temporary results folder."""
    return [
        "task=digits",
        "model.hidden_size=16",
        "epochs=3",
        "seeds=2",
        "grid.lr=[0.1,1.0]",
        "grid.clip=[null,1.0]",
        "grid.batch_size=[64]",
        f"results_dir={tmp_path / 'results'}",
        "study.name=tiny",
        "workers=1",
    ]


@pytest.fixture
def tiny_cfg(tiny_overrides):
    return load_config(tiny_overrides)


_FORKED: list = []  # this test process's ForkedCli server, started at the first call


def run_cli(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 300,
    env: dict | None = None,
    real: bool = False,
) -> subprocess.CompletedProcess:
    """Run the real `sweep` CLI and capture its output: by default in a process forked from one
    that has imported it already (`forked_cli.ForkedCli`: the same code path as `python -m
    sweep`, its own process, exit status and environment, without paying the interpreter's and
    torch's start-up on every call); `real=True`, or LRSWEEP_TEST_REAL_CLI=1 for the whole
    suite, runs `python -m sweep` itself."""
    full_env = {**os.environ, **(env or {})}
    if _real_cli(real):
        return subprocess.run(
            [sys.executable, "-m", "sweep", *args],
            cwd=cwd or ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
        )
    p = _forked_cli().run(list(args), cwd=cwd or ROOT, env=full_env, full_env=True, timeout=timeout)
    return subprocess.CompletedProcess(
        [sys.executable, "-m", "sweep", *args], p.returncode, p.stdout, p.stderr
    )


def _real_cli(real: bool) -> bool:
    """A call goes to `python -m sweep` itself: asked for, or LRSWEEP_TEST_REAL_CLI=1."""
    return real or os.environ.get("LRSWEEP_TEST_REAL_CLI") == "1"


def _forked_cli():
    from forked_cli import ForkedCli

    if not _FORKED or not _FORKED[0].alive:
        _FORKED[:] = [ForkedCli(cwd=ROOT)]
    return _FORKED[0]


def start_cli(*args: str, cwd: Path | None = None, env: dict | None = None, real: bool = False):
    """Start the real `sweep` CLI and return at once, for a test that interrupts it: a Popen-like
    handle (pid, poll, wait, send_signal, communicate -> (stdout, stderr) text) of a process
    forked from the ForkedCli server, with the same code path, environment and signals as
    `python -m sweep`. `real=True` (or LRSWEEP_TEST_REAL_CLI=1) starts `python -m sweep` itself:
    for a hook that Python loads at start-up (a sitecustomize on PYTHONPATH)."""
    full_env = {**os.environ, **(env or {})}
    if _real_cli(real):
        return subprocess.Popen(
            [sys.executable, "-m", "sweep", *args],
            cwd=cwd or ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
        )
    return _forked_cli().start(list(args), cwd=cwd or ROOT, env=full_env, full_env=True)


REQUIRE_SERVICES = os.environ.get("LRSWEEP_REQUIRE_SERVICES") == "1"
# A skipif whose reason names one of these skips for a missing service: under
# LRSWEEP_REQUIRE_SERVICES=1 (CI, .ci/run) such a test fails instead.
SERVICES = ("Chromium", "PostgreSQL")


def inner_pytest(folder: Path, *args: str, require: bool = False) -> subprocess.CompletedProcess:
    """pytest run in `folder` with this suite's conftest as a plugin and none of pyproject's
    addopts, for a test of the conftest's own rules; `require`: as in CI
    (LRSWEEP_REQUIRE_SERVICES=1), else that variable unset."""
    env = {k: v for k, v in os.environ.items() if k != "LRSWEEP_REQUIRE_SERVICES"}
    if require:
        env["LRSWEEP_REQUIRE_SERVICES"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tests"), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider"]
        + ["-o", "addopts=", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def skip_or_fail(reason: str) -> None:
    """Skip a test whose service is missing, except in CI where every service must be there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (LRSWEEP_REQUIRE_SERVICES=1: CI must provide it)")
    pytest.skip(reason)


def _services_required(items) -> None:
    """Under LRSWEEP_REQUIRE_SERVICES=1, a `skipif` that would skip a test for a missing service
    (its reason names one of SERVICES, e.g. "needs headless Chromium at /usr/bin/chromium")
    makes it fail instead, with that reason (`skip_or_fail` at its setup)."""
    if not REQUIRE_SERVICES:
        return
    for item in items:
        for mark in [m for m in item.own_markers if m.name == "skipif"]:
            reason = str(mark.kwargs.get("reason", ""))
            if mark.args and mark.args[0] is True and any(s in reason for s in SERVICES):
                item.own_markers.remove(mark)
                item.add_marker(pytest.mark.lrsweep_service_missing(reason))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    mark = item.get_closest_marker("lrsweep_service_missing")
    if mark is not None:
        skip_or_fail(mark.args[0])
    _frameworks_installed(item)


def _frameworks_installed(item) -> None:
    """`pytest.mark.integration("keras", ...)`: the frameworks a test trains with, installed by
    the `integration` extra. Missing, the test skips with the command that installs them (in CI
    it fails: the tier must not pass by skipping)."""
    import importlib.util

    mark = item.get_closest_marker(INTEGRATION)
    for module in mark.args if mark is not None else ():
        if importlib.util.find_spec(module) is None:
            skip_or_fail(f"needs {module}: pip install -e '.[test,integration]'")


@pytest.fixture
def postgres_url():
    """URL of a real PostgreSQL database (LRSWEEP_TEST_POSTGRES_URL, started by .ci/run)."""
    url = os.environ.get("LRSWEEP_TEST_POSTGRES_URL")
    if not url:
        skip_or_fail("no PostgreSQL server: set LRSWEEP_TEST_POSTGRES_URL")
    return url


@pytest.fixture(scope="session")
def installed_lrsweep(tmp_path_factory) -> Path:
    """A fresh virtual environment holding lrsweep from its wheel (`pip install .`, not -e) and
    the dependencies of the environment running the tests, whatever that is (a system Python, a
    venv, a conda env): its site-packages folders are listed in a .pth file of the new venv, so
    nothing is downloaded and the wheel's copy of lrsweep is the one imported. Returns the venv's
    bin/ folder. (A venv made with system_site_packages=True from a venv's interpreter would see
    the base interpreter's packages, not the outer venv's.)"""
    import importlib.util
    import site
    import sysconfig
    import venv

    root = tmp_path_factory.mktemp("installed")
    dist = root / "dist"
    # Build with the setuptools at hand when there is one (no download), else in pip's isolation.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            *isolation,
            "-q",
            "-w",
            str(dist),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=False)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    here = [site.getusersitepackages(), *site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    dirs = [d for d in dict.fromkeys(here) if Path(d).is_dir() and Path(d) != ROOT]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # pip must see an empty venv
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--ignore-installed",
            str(next(dist.glob("lrsweep-*.whl"))),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert (bin_dir / "sweep").exists(), p.stdout + p.stderr
    # The dependencies, after the install: pip would otherwise find the outer environment's lrsweep.
    (Path(purelib) / "lrsweep_test_dependencies.pth").write_text("\n".join(dirs) + "\n")
    return bin_dir


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
