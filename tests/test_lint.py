"""The style rules are part of the suite: ruff must be clean, and engine/ must not import Django."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ruff() -> str:
    ruff = Path(sys.executable).parent / "ruff"
    if ruff.exists():
        return str(ruff)
    found = shutil.which("ruff")
    if not found:
        pytest.skip("ruff is not installed (make test installs it)")
    return found


def test_ruff_check_is_clean():
    done = subprocess.run([_ruff(), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_is_clean():
    done = subprocess.run(
        [_ruff(), "format", "--check", "engine", "annotator", "benchmarks", "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_engine_never_imports_django():
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "engine").rglob("*.py")
        if any(
            line.lstrip().startswith(("import django", "from django", "import annotator", "from annotator"))
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []
