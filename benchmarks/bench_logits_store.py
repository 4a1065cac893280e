"""What sharing a logits handle across web processes costs a click: put and get of one answer's
(3, 256, 256) float32 low-res logits through the shared store (files under a folder; Redis when one
answers), each get from a store whose process memory is empty (another gunicorn worker's view),
next to the memory-only path. Prints medians and p95 in milliseconds.

    python benchmarks/bench_logits_store.py [--redis redis://127.0.0.1:6379/15] [--dir /tmp/x] [-n 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotator.annotation.logits import (
    FileLogits,
    LogitsEntry,
    LogitsStore,
    RedisLogits,
    decode_entry,
    encode_entry,
)


def timed(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return times


def summary(name: str, times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"{name:<34} median {statistics.median(times):7.3f} ms   p95 {p95:7.3f} ms"


def measure(name: str, shared, repeats: int) -> None:
    rng = np.random.default_rng(0)
    entry = LogitsEntry(
        image_id=1,
        model_key="mv1",
        low_res=(rng.standard_normal((3, 256, 256)) * 8).astype(np.float32),
        scores=rng.random(3).astype(np.float32),
    )
    writer = LogitsStore(per_user=16, shared=shared)
    reader = LogitsStore(per_user=16, shared=shared)  # another process: nothing in its memory
    handles: list[str] = []
    puts = timed(lambda: handles.append(writer.put(7, entry)), repeats)

    def cold_get() -> None:
        reader.forget_memory()
        found = reader.get(7, handles[-1], 1)
        assert found is not None and np.array_equal(found.low_res, entry.low_res)

    warm = timed(lambda: writer.get(7, handles[-1], 1), repeats)
    print(summary(f"{name}: put", puts))
    if shared is not None:  # memory alone: another process finds nothing
        print(summary(f"{name}: get, other process", timed(cold_get, repeats)))
    print(summary(f"{name}: get, same process", warm))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--dir", default=None, help="folder of the file store (default: a temporary one)")
    parser.add_argument("-n", "--repeats", type=int, default=300)
    args = parser.parse_args()

    rng = np.random.default_rng(1)
    low_res = rng.standard_normal((3, 256, 256)).astype(np.float32)
    entry = LogitsEntry(1, "mv1", low_res, np.ones(3, np.float32))
    data = encode_entry(entry)
    print(f"entry: {len(data)} bytes")
    print(summary("encode", timed(lambda: encode_entry(entry), args.repeats)))
    print(summary("decode", timed(lambda: decode_entry(data), args.repeats)))
    measure("memory only", None, args.repeats)
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        measure("file", FileLogits(folder, per_user=16), args.repeats)
    try:
        redis_store = RedisLogits(args.redis, prefix=f"maskmill-bench-{uuid.uuid4().hex}:", per_user=16)
        redis_store.client.ping()
    except Exception as exc:
        print(f"redis: not measured ({type(exc).__name__}: {exc})")
        return
    try:
        measure("redis", redis_store, args.repeats)
    finally:
        redis_store.clear()


if __name__ == "__main__":
    main()
