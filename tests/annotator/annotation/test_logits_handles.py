"""Logits handles resolve in any web process: two stores with empty memories sharing the file store
(and a real second Python process) find each other's handles, bit-exact; handles of another user
or image are not found; entries expire and each user keeps a bounded number. The same checks on
the real Redis are in tests/integration/test_logits_redis.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from annotator.annotation.logits import (
    FileLogits,
    LogitsEntry,
    LogitsStore,
    RedisLogits,
    decode_entry,
    encode_entry,
)
from tests.annotator.annotation_fixtures import add_picture, disk_picture, tiny_sam  # noqa: F401

ROOT = Path(__file__).resolve().parents[3]


def awkward_entry(image_id: int = 5, seed: int = 0, channels: int = 3) -> LogitsEntry:
    """Logits with the values a lossy path would change: -0.0, subnormals, extremes, inf, nan."""
    rng = np.random.default_rng(seed)
    low_res = (rng.standard_normal((channels, 256, 256)) * 20).astype(np.float32)
    flat = low_res.reshape(-1)
    flat[:7] = [-0.0, 1e-45, -1e-42, np.finfo(np.float32).max, np.finfo(np.float32).tiny, np.inf, np.nan]
    return LogitsEntry(image_id, "mv3", low_res, rng.random(channels).astype(np.float32))


def same_bits(a: LogitsEntry, b: LogitsEntry) -> bool:
    return (
        a.image_id == b.image_id
        and a.model_key == b.model_key
        and a.low_res.dtype == b.low_res.dtype == np.float32
        and a.low_res.shape == b.low_res.shape
        and a.low_res.tobytes() == b.low_res.tobytes()
        and a.scores.tobytes() == b.scores.tobytes()
    )


def test_encoding_keeps_float32_logits_bit_exact():
    entry = awkward_entry()
    back = decode_entry(encode_entry(entry))
    assert same_bits(entry, back)
    assert back.low_res.flags.writeable  # torch.as_tensor takes it without a warning
    with pytest.raises(ValueError, match="truncated"):
        decode_entry(encode_entry(entry)[:-10])
    with pytest.raises(ValueError, match="magic"):
        decode_entry(b"something else")


def test_two_processes_resolve_each_others_handles_through_the_file_store(tmp_path):
    shared = FileLogits(tmp_path / "logits")
    first, second = LogitsStore(shared=shared), LogitsStore(shared=shared)
    entry = awkward_entry()
    handle = first.put(7, entry)
    found = second.get(7, handle, image_id=5)  # nothing in second's memory: read from the files
    assert found is not None and same_bits(entry, found)

    reply = awkward_entry(seed=1)
    other_handle = second.put(7, reply)
    found = first.get(7, other_handle, image_id=5)
    assert found is not None and same_bits(reply, found)


def test_handles_are_scoped_to_their_user_and_image(tmp_path):
    shared = FileLogits(tmp_path / "logits")
    first, second = LogitsStore(shared=shared), LogitsStore(shared=shared)
    handle = first.put(7, awkward_entry(image_id=5))
    assert second.get(8, handle, image_id=5) is None  # another user
    assert first.get(8, handle, image_id=5) is None  # ... also where the handle is in memory
    assert second.get(7, handle, image_id=6) is None  # another image
    assert first.get(7, handle, image_id=6) is None
    assert second.get(7, "lg-" + "0" * 24, image_id=5) is None  # never issued
    assert second.get(7, "../../u8/whatever", image_id=5) is None  # not a handle: no path is built
    assert second.get(7, handle, image_id=5) is not None


def test_entries_expire_in_memory_and_in_the_files(tmp_path):
    now = [1000.0]
    shared = FileLogits(tmp_path / "logits", ttl=60)
    store = LogitsStore(ttl=60, shared=shared, clock=lambda: now[0])
    handle = store.put(7, awkward_entry())
    now[0] += 61
    path = tmp_path / "logits" / "u7" / f"{handle}.lg"
    assert path.exists()
    os.utime(path, (time.time() - 61, time.time() - 61))  # the file is as old as the TTL
    assert store.get(7, handle, image_id=5) is None
    assert not path.exists()  # removed by the reader that found it expired


def test_each_user_keeps_the_newest_entries_and_sweeping_removes_expired_ones(tmp_path):
    shared = FileLogits(tmp_path / "logits", per_user=4)
    store = LogitsStore(per_user=4, shared=shared)
    handles = []
    for seed in range(6):
        handles.append(store.put(7, awkward_entry(seed=seed, channels=1)))
        time.sleep(0.002)  # distinct modification times
    fresh = LogitsStore(shared=shared)
    found = [fresh.get(7, h, image_id=5) is not None for h in handles]
    assert found == [False, False, True, True, True, True]
    assert len(list((tmp_path / "logits" / "u7").glob("*.lg"))) == 4

    store.put(9, awkward_entry(channels=1))
    for path in (tmp_path / "logits").rglob("*.lg"):
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    shared.sweep()
    assert not list((tmp_path / "logits").rglob("*.lg"))
    assert not list((tmp_path / "logits").iterdir())  # empty user folders removed too


def test_a_failing_shared_store_costs_the_lookup_not_the_click(tmp_path):
    (tmp_path / "logits").write_text("a file where the folder should be")
    broken = FileLogits(tmp_path / "logits")
    store = LogitsStore(shared=broken)
    handle = store.put(7, awkward_entry())  # no exception
    assert store.get(7, handle, image_id=5) is not None  # memory still serves this process
    assert LogitsStore(shared=broken).get(7, handle, image_id=5) is None

    down = RedisLogits("redis://127.0.0.1:1/0")  # nothing listens on port 1
    store = LogitsStore(shared=down)
    handle = store.put(7, awkward_entry())
    assert store.get(7, handle, image_id=5) is not None
    assert LogitsStore(shared=down).get(7, handle, image_id=5) is None


def run_second_process(script: str, *args: str) -> dict[str, str]:
    """Run ``script`` in a fresh Python process (nothing in memory) → its "key value" lines."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())


SECOND_PROCESS = """
import sys
import numpy as np
from annotator.annotation.logits import FileLogits, LogitsEntry, LogitsStore
store = LogitsStore(shared=FileLogits(sys.argv[1]))
found = store.get(7, sys.argv[2], image_id=5)
print("found", None if found is None else found.low_res.tobytes().hex()[:64], found and found.low_res.dtype)
print("foreign", store.get(8, sys.argv[2], image_id=5))
low = np.arange(256 * 256, dtype=np.float32).reshape(1, 256, 256) / 7
print("handle", store.put(7, LogitsEntry(5, "mv3", low, np.array([0.5], np.float32))))
"""


def test_a_real_second_process_resolves_the_handle_and_answers_with_its_own(tmp_path):
    shared = FileLogits(tmp_path / "logits")
    store = LogitsStore(shared=shared)
    entry = awkward_entry()
    handle = store.put(7, entry)
    lines = run_second_process(SECOND_PROCESS, str(tmp_path / "logits"), handle)
    assert lines["found"] == f"{entry.low_res.tobytes().hex()[:64]} float32"
    assert lines["foreign"] == "None"
    theirs = store.get(7, lines["handle"], image_id=5)  # not in this process's memory
    assert theirs is not None
    expected = np.arange(256 * 256, dtype=np.float32).reshape(1, 256, 256) / 7
    np.testing.assert_array_equal(theirs.low_res, expected)


@pytest.mark.django_db
def test_the_next_click_in_another_process_refines_exactly_as_in_the_same_one(tiny_sam, project, users):  # noqa: F811
    """A handle made by one web process, used by the next click in a process that never saw it
    (its memory is empty): the same logits reach the decoder, so the same masks come back."""
    from annotator.annotation import services
    from annotator.images.embeddings import ensure_embedding

    image = add_picture(project, disk_picture())
    ensure_embedding(image.pk)  # what the embed task stores (its commit never comes in this test)
    annotator = users["annotator"]
    first = services.predict(image, annotator, {"points": [[80, 60]], "labels": [1]})
    follow_up = {"points": [[80, 60], [150, 110]], "labels": [1, 0], "mask_input": first["logits_handle"],
                 "mask_index": 1, "multimask": False}  # fmt: skip
    same_process = services.predict(image, annotator, follow_up)
    services.logits_store.forget_memory()  # what a second gunicorn worker knows
    other_process = services.predict(image, annotator, follow_up)
    assert "notice" not in same_process and "notice" not in other_process
    assert other_process["masks"] == same_process["masks"]
    assert services.logits_store.get(annotator.pk, first["logits_handle"], image.pk) is not None
    without_logits = services.predict(image, annotator, {**follow_up, "mask_input": None})
    assert without_logits["masks"] != same_process["masks"]  # the logits did change the answer
