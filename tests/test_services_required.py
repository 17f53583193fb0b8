"""CI (.ci/run sets LRSWEEP_REQUIRE_SERVICES=1) must not skip a test for a missing service: a
skipif whose reason names Chromium or PostgreSQL fails there instead (an error at the test's
setup, as `skip_or_fail` does for the PostgreSQL fixture); elsewhere it skips."""

from __future__ import annotations

import textwrap

from conftest import inner_pytest

NEEDS = textwrap.dedent("""
    from pathlib import Path

    import pytest

    CHROMIUM = Path("/nonexistent/chromium")


    @pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium at /nonexistent/chromium")
    def test_renders_in_a_browser():
        pass


    @pytest.mark.skipif(True, reason="not on this platform")
    def test_skipped_for_another_reason():
        pass
""")


def _pytest(tmp_path, require: bool) -> str:
    (tmp_path / "test_needs.py").write_text(NEEDS)
    return inner_pytest(tmp_path, "-q", "-rfs", "test_needs.py", require=require).stdout


def test_a_test_skipped_for_a_missing_browser_fails_when_ci_requires_services(tmp_path):
    out = _pytest(tmp_path, require=True)
    assert "1 skipped, 1 error" in out, out  # fails at its setup: the run exits non-zero
    assert "needs headless Chromium at /nonexistent/chromium (LRSWEEP_REQUIRE_SERVICES=1" in out


def test_it_skips_where_services_are_not_required(tmp_path):
    out = _pytest(tmp_path, require=False)
    assert "2 skipped" in out and "failed" not in out, out
