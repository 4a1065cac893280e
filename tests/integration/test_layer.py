"""Runs the PostgreSQL/Redis/worker layer as its own pytest session (see conftest.py).

It runs whenever the services answer and skips with the reason otherwise; with
``MASKMILL_REQUIRE_SERVICES=1`` (CI) an unreachable service is a failure instead."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATABASE_URL = os.environ.get("MASKMILL_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MASKMILL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRED = os.environ.get("MASKMILL_REQUIRE_SERVICES") == "1"
INNER_PATHS = ["tests/integration/postgres", "tests/annotator/test_models.py"]


def unavailable(database_url: str = DATABASE_URL, redis_url: str = REDIS_URL) -> str | None:
    """Why the services cannot be used, or None when both answer."""
    try:
        import psycopg

        psycopg.connect(database_url, connect_timeout=3).close()
    except Exception as exc:
        return f"PostgreSQL at {_safe(database_url)} does not answer ({exc.__class__.__name__}: {exc})"
    try:
        import redis

        redis.Redis.from_url(redis_url, socket_timeout=3, socket_connect_timeout=3).ping()
    except Exception as exc:
        return f"Redis at {_safe(redis_url)} does not answer ({exc.__class__.__name__}: {exc})"
    return None


def gate(reason: str | None, required: bool = REQUIRED) -> None:
    """Skip (or, when the services are required, fail) with the reason they cannot be used."""
    if reason is None:
        return
    message = (
        f"integration layer not run: {reason}. Set MASKMILL_TEST_DATABASE_URL / MASKMILL_TEST_REDIS_URL."
    )
    if required:
        pytest.fail(f"{message} (MASKMILL_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def _safe(url: str) -> str:
    parts = urlsplit(url)
    return url.replace(parts.password, "***") if parts.password else url


@pytest.mark.integration
def test_postgres_redis_worker_layer(tmp_path, request):
    reason = unavailable()
    if reason:
        message = (
            f"integration layer not run: {reason}. Set MASKMILL_TEST_DATABASE_URL / MASKMILL_TEST_REDIS_URL."
        )
        if REQUIRED:
            pytest.fail(f"{message} (MASKMILL_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    env = {
        **os.environ,
        "MASKMILL_INTEGRATION_SESSION": "1",
        "DATABASE_URL": DATABASE_URL,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_RESULT_BACKEND": REDIS_URL,
        # This run's queues live under their own keys, so parallel runs on one Redis do not mix.
        "MASKMILL_BROKER_KEY_PREFIX": f"maskmill-test-{os.getpid()}:",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "MASKMILL_VAR_DIR": str(tmp_path / "var"),
    }
    request.addfinalizer(lambda: _drop_keys(env["MASKMILL_BROKER_KEY_PREFIX"]))
    junit = tmp_path / "junit.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        *INNER_PATHS,
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    summary = re.findall(r"^=*\s*(\d+ (?:passed|failed).*?)\s*=*$", output, re.M)
    print(f"integration session: {summary[-1] if summary else 'no summary'}")
    print(output[-3000:])
    assert done.returncode == 0, f"the integration session failed:\n{output[-8000:]}"


def _drop_keys(prefix: str) -> None:
    """Remove this run's queues and bindings from the shared Redis."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=3)
    keys = list(client.scan_iter(match=f"{prefix}*", count=500))
    if keys:
        client.delete(*keys)
