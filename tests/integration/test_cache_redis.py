"""Django's cache on a shared Redis: clearing it (as the tests do between tests) removes its own
keys only, never the broker's queues or other keys of the same database."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.services import REDIS_URL, gate, redis_unavailable

pytestmark = pytest.mark.integration


def test_clear_keeps_the_other_keys_of_the_database():
    gate(redis_unavailable())
    import redis

    from annotator.cache import PrefixedRedisCache

    prefix = f"maskmill-cache-test-{uuid.uuid4().hex[:8]}"
    cache = PrefixedRedisCache(REDIS_URL, {"KEY_PREFIX": prefix})
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=3)
    neighbour = f"{prefix}-not-the-cache:queue"
    try:
        client.set(neighbour, b"a broker message")
        for index in range(1200):  # more than one delete batch
            cache.set(f"k{index}", index, timeout=60)
        assert cache.get("k7") == 7
        assert cache.clear() is True
        assert cache.get("k7") is None and cache.get("k1199") is None
        assert client.get(neighbour) == b"a broker message"
    finally:
        client.delete(neighbour)
        cache.clear()
