"""The integration layer skips with a reason when a service does not answer, and fails instead
under MASKMILL_REQUIRE_SERVICES=1 (as in CI). Checked against ports where nothing listens."""

from __future__ import annotations

import socket

import pytest

from tests.integration.test_layer import gate, unavailable


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # released on close: nothing listens there now


def test_an_unreachable_database_is_named():
    reason = unavailable(
        f"postgres://postgres:secret@127.0.0.1:{closed_port()}/test", "redis://127.0.0.1:1/0"
    )
    assert reason is not None and reason.startswith("PostgreSQL at postgres://postgres:***@127.0.0.1:")
    assert "secret" not in reason


def test_an_unreachable_redis_is_named():
    from tests.integration.test_layer import DATABASE_URL

    reason = unavailable(DATABASE_URL, f"redis://127.0.0.1:{closed_port()}/0")
    if reason is not None and reason.startswith("PostgreSQL"):
        pytest.skip(f"PostgreSQL itself is down here: {reason}")
    assert reason is not None and reason.startswith("Redis at redis://127.0.0.1:")


def test_missing_services_skip_or_fail_when_required():
    with pytest.raises(pytest.skip.Exception, match="integration layer not run: Redis is down"):
        gate("Redis is down", required=False)
    with pytest.raises(pytest.fail.Exception, match="MASKMILL_REQUIRE_SERVICES=1"):
        gate("Redis is down", required=True)
    gate(None, required=True)  # services answer: nothing happens
