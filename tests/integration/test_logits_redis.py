"""Logits handles through the real Redis (``MASKMILL_TEST_REDIS_URL``, 127.0.0.1:6379/15): two
stores with empty memories and a real second process resolve each other's handles bit-exact;
another user's or image's handle is not found; keys carry the TTL and each user keeps a bounded
number. Every test writes under its own key prefix and removes it afterwards."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from annotator.annotation.logits import LogitsEntry, LogitsStore, RedisLogits
from tests.annotator.annotation.test_logits_handles import awkward_entry, run_second_process, same_bits
from tests.integration.services import REDIS_URL, gate, redis_unavailable

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_logits():
    gate(redis_unavailable())
    store = RedisLogits(REDIS_URL, prefix=f"maskmill-test-logits-{uuid.uuid4().hex}:", ttl=3600, per_user=4)
    yield store
    store.clear()
    assert not list(store.client.scan_iter(match=f"{store.prefix}*"))


def test_two_processes_resolve_each_others_handles_through_redis(redis_logits):
    first, second = LogitsStore(shared=redis_logits), LogitsStore(shared=redis_logits)
    entry = awkward_entry()
    handle = first.put(7, entry)
    found = second.get(7, handle, image_id=5)
    assert found is not None and same_bits(entry, found)
    reply = awkward_entry(seed=1)
    found = first.get(7, second.put(7, reply), image_id=5)
    assert found is not None and same_bits(reply, found)

    assert second.get(8, handle, image_id=5) is None  # another user
    assert LogitsStore(shared=redis_logits).get(7, handle, image_id=6) is None  # another image


def test_keys_expire_and_each_user_keeps_the_newest(redis_logits):
    store = LogitsStore(per_user=4, shared=redis_logits)
    handles = [store.put(7, awkward_entry(seed=s, channels=1)) for s in range(6)]
    client, prefix = redis_logits.client, redis_logits.prefix
    fresh = LogitsStore(shared=redis_logits)
    found = [fresh.get(7, h, image_id=5) is not None for h in handles]
    assert found == [False, False, True, True, True, True]
    assert sorted(k.decode() for k in client.scan_iter(match=f"{prefix}u7:lg-*")) == sorted(
        f"{prefix}u7:{h}" for h in handles[2:]
    )
    assert 0 < client.ttl(f"{prefix}u7:{handles[-1]}") <= 3600
    assert 0 < client.ttl(f"{prefix}u7:index") <= 3600
    client.pexpire(f"{prefix}u7:{handles[-1]}", 1)  # its hour is over
    time.sleep(0.05)
    assert LogitsStore(shared=redis_logits).get(7, handles[-1], image_id=5) is None


SECOND_PROCESS = """
import sys
import numpy as np
from annotator.annotation.logits import LogitsEntry, LogitsStore, RedisLogits
store = LogitsStore(shared=RedisLogits(sys.argv[1], prefix=sys.argv[2]))
found = store.get(7, sys.argv[3], image_id=5)
print("found", None if found is None else found.low_res.tobytes().hex()[:64], found and found.low_res.dtype)
low = np.full((1, 256, 256), -3.25, np.float32)
print("handle", store.put(7, LogitsEntry(5, "mv3", low, np.array([0.5], np.float32))))
"""


def test_a_real_second_process_resolves_the_handle_through_redis(redis_logits):
    store = LogitsStore(shared=redis_logits)
    entry = awkward_entry()
    handle = store.put(7, entry)
    lines = run_second_process(SECOND_PROCESS, REDIS_URL, redis_logits.prefix, handle)
    assert lines["found"] == f"{entry.low_res.tobytes().hex()[:64]} float32"
    theirs = store.get(7, lines["handle"], image_id=5)
    assert theirs is not None
    np.testing.assert_array_equal(theirs.low_res, np.full((1, 256, 256), -3.25, np.float32))
    assert isinstance(theirs, LogitsEntry)
