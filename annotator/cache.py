"""Django's cache on the Redis that the broker (and the logits handles) may share."""

from __future__ import annotations

from django.core.cache.backends.redis import RedisCache


class PrefixedRedisCache(RedisCache):
    """``clear()`` deletes this cache's keys only: Django's own flushes the whole Redis database,
    which would take the broker's queues (and another deployment's keys) with it."""

    def clear(self) -> bool:
        client = self._cache.get_client(write=True)
        pattern = self.make_key("*")
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
        return True
