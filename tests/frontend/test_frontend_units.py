"""Run the frontend's JavaScript unit tests (`node --test frontend/tests/`) inside pytest, so
`make test` covers the RLE, geometry, store and save-queue code of the annotation page."""

import shutil
import subprocess
from pathlib import Path

from tests.required import skip_or_fail

FRONTEND_TESTS = Path(__file__).resolve().parents[2] / "frontend" / "tests"


def test_frontend_units_pass_under_node():
    node = shutil.which("node")
    if node is None:
        skip_or_fail("node is not installed (apt-get install nodejs); the frontend unit tests need Node 20+")
    files = sorted(str(p) for p in FRONTEND_TESTS.glob("*.test.mjs"))
    assert files, f"no *.test.mjs files under {FRONTEND_TESTS}"
    result = subprocess.run(
        [node, "--test", "--test-reporter=dot", *files],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=FRONTEND_TESTS.parent,
    )
    assert result.returncode == 0, f"node --test failed:\n{result.stdout[-8000:]}\n{result.stderr[-4000:]}"
