"""Runs the PostgreSQL/Redis/worker layer as its own pytest session (see conftest.py).

It runs whenever the services answer and skips with the reason otherwise; with
``MASKMILL_REQUIRE_SERVICES=1`` (CI) an unreachable service is a failure instead."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.services import DATABASE_URL, REDIS_URL, gate, unavailable

ROOT = Path(__file__).resolve().parents[2]
INNER_PATHS = ["tests/integration/postgres", "tests/annotator/test_models.py"]


@pytest.mark.integration
def test_postgres_redis_worker_layer(tmp_path, request):
    gate(unavailable())
    env = {
        **os.environ,
        "MASKMILL_INTEGRATION_SESSION": "1",
        "DATABASE_URL": DATABASE_URL,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_RESULT_BACKEND": REDIS_URL,
        # This run's queues live under their own keys, so parallel runs on one Redis do not mix.
        "MASKMILL_BROKER_KEY_PREFIX": f"maskmill-test-{os.getpid()}:",
        # The logits handles of interactive annotation go to Redis too (its URL is the broker's).
        "MASKMILL_LOGITS_KEY_PREFIX": f"maskmill-test-{os.getpid()}:logits:",
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
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=480)
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
