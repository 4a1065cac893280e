"""The annotation page's RLE (JavaScript, node) next to pycocotools (C) on the same masks, one run.

Usage: .venv/bin/python frontend/bench/rle_bench.py [--repeats 7]
Prints median milliseconds for encode and decode, the JS/C ratio, and checks that both produce
the same counts string.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

HERE = Path(__file__).resolve().parent


def _mask(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w]
    m = np.zeros((h, w), bool)
    for _ in range(20):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.02, 0.2) * min(h, w)
        m ^= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    return m


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is not installed; the frontend benchmark needs Node >= 20")
    print(f"{'size':>11} {'op':>7} {'pycocotools ms':>15} {'js ms':>8} {'js/c':>6}  same")
    for h, w in [(768, 1024), (1500, 2000), (3000, 4000)]:
        m = _mask(h, w)
        fortran = np.asfortranarray(m.astype(np.uint8))
        rle = mask_utils.encode(fortran)
        c_encode = _median_ms(lambda fortran=fortran: mask_utils.encode(fortran), args.repeats)
        c_decode = _median_ms(lambda rle=rle: mask_utils.decode(rle), args.repeats)
        with tempfile.NamedTemporaryFile(suffix=".u8") as f:
            f.write(m.astype(np.uint8).tobytes())  # row-major, as the page holds masks
            f.flush()
            out = subprocess.run(
                [node, str(HERE / "rle_bench.mjs"), f.name, str(h), str(w), str(args.repeats)],
                capture_output=True,
                text=True,
                check=True,
            )
        js = json.loads(out.stdout)
        same = js["counts"] == rle["counts"].decode("ascii")
        # The JS side takes the row-major mask the canvas gives; pycocotools a Fortran-order one.
        for op, c_ms, js_ms in (
            ("encode", c_encode, statistics.median(js["encode_ms"])),
            ("decode", c_decode, statistics.median(js["decode_ms"])),
        ):
            print(f"{h:>5}x{w:<5} {op:>7} {c_ms:>15.2f} {js_ms:>8.2f} {js_ms / c_ms:>6.1f}  {same}")


if __name__ == "__main__":
    main()
