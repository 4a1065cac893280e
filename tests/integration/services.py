"""Where the integration layer's real services are, and the one rule for when it runs: whenever
they answer; skipped with the reason otherwise; a failure instead of a skip when
``MASKMILL_REQUIRE_SERVICES=1`` (CI)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from tests.required import required, skip_or_fail

DATABASE_URL = os.environ.get("MASKMILL_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MASKMILL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRED = required()


def unavailable(database_url: str = DATABASE_URL, redis_url: str = REDIS_URL) -> str | None:
    """Why the services cannot be used, or None when both answer."""
    try:
        import psycopg

        psycopg.connect(database_url, connect_timeout=3).close()
    except Exception as exc:
        return f"PostgreSQL at {safe_url(database_url)} does not answer ({exc.__class__.__name__}: {exc})"
    return redis_unavailable(redis_url)


def redis_unavailable(redis_url: str = REDIS_URL) -> str | None:
    """Why Redis cannot be used, or None when it answers (for tests that need only Redis)."""
    try:
        import redis

        redis.Redis.from_url(redis_url, socket_timeout=3, socket_connect_timeout=3).ping()
    except Exception as exc:
        return f"Redis at {safe_url(redis_url)} does not answer ({exc.__class__.__name__}: {exc})"
    return None


def gate(reason: str | None, required: bool = REQUIRED) -> None:
    """Skip (or, when the services are required, fail) with the reason they cannot be used."""
    if reason is None:
        return
    message = (
        f"integration layer not run: {reason}. Set MASKMILL_TEST_DATABASE_URL / MASKMILL_TEST_REDIS_URL."
    )
    skip_or_fail(message, required)


def safe_url(url: str) -> str:
    parts = urlsplit(url)
    return url.replace(parts.password, "***") if parts.password else url
