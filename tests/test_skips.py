"""Tests cannot vanish silently: without Node or Chromium the layers that need them skip with the
reason, and under MASKMILL_REQUIRE_SERVICES=1 (CI) they fail instead; the project's own modules
are imported plainly by the tests, so an ImportError there is an error, never a skip."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.required import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]


def run_pytest(target: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    environment.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", target],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=environment,
    )


def test_skip_or_fail_follows_the_environment():
    with pytest.raises(pytest.skip.Exception, match="no widget"):
        skip_or_fail("no widget", must_run=False)
    with pytest.raises(pytest.fail.Exception, match=r"no widget \(MASKMILL_REQUIRE_SERVICES=1\)"):
        skip_or_fail("no widget", must_run=True)


@pytest.mark.parametrize(("require", "outcome"), [("0", "1 skipped"), ("1", "1 failed")])
def test_without_node_the_frontend_units_skip_or_fail(tmp_path, require, outcome):
    # A PATH where no node can be found; the interpreter is called by its absolute path.
    done = run_pytest(
        "tests/frontend/test_frontend_units.py", PATH=str(tmp_path), MASKMILL_REQUIRE_SERVICES=require
    )
    assert outcome in done.stdout, done.stdout[-3000:]
    assert "node is not installed" in done.stdout


def test_without_chromium_the_browser_tests_fail_when_required(tmp_path):
    # (Skipping is the same call with the other answer; one browser layer run is enough here.)
    done = run_pytest(
        "tests/e2e/test_csp_e2e.py",
        MASKMILL_CHROMIUM=str(tmp_path / "no-chromium-here"),
        MASKMILL_REQUIRE_SERVICES="1",
    )
    assert "1 error" in done.stdout, done.stdout[-3000:]
    assert "Chromium is not installed" in done.stdout and "MASKMILL_REQUIRE_SERVICES=1" in done.stdout


def test_the_tests_import_project_modules_plainly():
    """No importorskip or ImportError-skip of engine.* / annotator.* anywhere in the tests."""
    pattern = re.compile(
        r"importorskip\(\s*[\"'](engine|annotator)\b"
        r"|except ImportError[^\n]*\n[^\n]*pytest\.skip\([^\n]*(engine|annotator)"
    )
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").rglob("*.py")
        if path.name != "test_skips.py" and pattern.search(path.read_text())
    ]
    assert offenders == []
