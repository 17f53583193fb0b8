"""The integration tier (tests/conftest.py): a plain run leaves out the tests that need Keras,
Lightning, a Jupyter kernel, PostgreSQL, Chromium or the wheel in a fresh venv, and says so;
`--integration` adds them, `-m integration` runs only them, and naming tests runs what was named."""

from __future__ import annotations

import re
import textwrap

import pytest
from conftest import inner_pytest

pytestmark = pytest.mark.slow  # nine pytest sessions in subprocesses

TESTS = textwrap.dedent("""
    import pytest


    def test_plain():
        pass


    @pytest.mark.slow
    def test_slow():
        pass


    @pytest.mark.integration
    def test_keras_example():
        pass


    @pytest.mark.postgres
    def test_on_a_server():
        pass


    @pytest.mark.integration("no_such_framework_xyz")
    def test_with_a_framework_not_installed():
        pass


    @pytest.fixture
    def installed_lrsweep():  # conftest's builds the wheel: this one only has its name
        return None


    def test_with_the_wheel(installed_lrsweep):
        pass
""")


def _ran(tmp_path, *args: str, require: bool = False) -> tuple[set[str], str]:
    """The tests that ran (passed) with `args`, and pytest's output; `require`: as in CI
    (LRSWEEP_REQUIRE_SERVICES=1)."""
    (tmp_path / "test_tiers_demo.py").write_text(TESTS)
    markers = "markers=slow\n integration\n postgres"
    p = inner_pytest(tmp_path, "-o", markers, "-v", "-rs", *args, require=require)
    assert p.returncode in ((0, 1) if require else (0, 5)), p.stdout[-3000:] + p.stderr[-3000:]
    return set(re.findall(r"::(test_\w+) PASSED", p.stdout)), p.stdout


def test_a_plain_run_leaves_the_integration_tier_out_and_says_how_to_run_it(tmp_path):
    ran, out = _ran(tmp_path)
    assert ran == {"test_plain", "test_slow"}
    assert "4 deselected" in out
    assert "python -m pytest --integration runs them too, -m integration only them" in out


def test_integration_adds_the_tier_and_m_integration_runs_only_it(tmp_path):
    every = {"test_plain", "test_slow", "test_keras_example", "test_on_a_server"}
    assert _ran(tmp_path, "--integration")[0] == every | {"test_with_the_wheel"}
    ran, out = _ran(tmp_path, "-m", "integration")  # a service's mark or fixture is the tier too
    assert ran == {"test_keras_example", "test_on_a_server", "test_with_the_wheel"}
    assert "integration tests left out" not in out
    assert _ran(tmp_path, "-m", "not slow")[0] == {"test_plain"}  # the fast part stays fast


def test_named_tests_run_whatever_their_tier(tmp_path):
    assert _ran(tmp_path, "test_tiers_demo.py::test_keras_example")[0] == {"test_keras_example"}
    assert _ran(tmp_path, "-k", "server or plain")[0] == {"test_on_a_server", "test_plain"}


def test_a_framework_the_tier_needs_and_lacks_skips_with_its_install_command_and_fails_in_ci(
    tmp_path,
):
    name = "test_tiers_demo.py::test_with_a_framework_not_installed"
    ran, out = _ran(tmp_path, name)
    assert not ran and "1 skipped" in out
    assert "needs no_such_framework_xyz: pip install -e '.[test,integration]'" in out
    ran, out = _ran(tmp_path, name, require=True)  # CI: the tier must not pass by skipping
    assert not ran and "1 error" in out and "CI must provide it" in out  # fails at its setup
