"""COCO RLE counts from outside, checked with bounded work: the run lengths of a compressed counts
string are decoded with numpy (no per-character Python loop), the input is refused when it is
longer than any H x W mask can need, and the result is re-encoded canonically by pycocotools, so
padding (zero-length runs, over-long number encodings) is never stored."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def max_runs(height: int, width: int) -> int:
    """Runs an H x W mask can have: one per pixel, plus a leading empty run."""
    return height * width + 1


def max_chars_per_run(height: int, width: int) -> int:
    """Characters of one delta-coded run length: 5 bits each, sign included, |delta| <= H*W."""
    bits = (height * width).bit_length() + 1
    return -(-bits // 5)


def max_counts_length(height: int, width: int) -> int:
    """The longest compressed counts string an H x W mask can need."""
    return max_runs(height, width) * max_chars_per_run(height, width)


def compressed_runs(counts: str, height: int, width: int) -> np.ndarray:
    """Run lengths (int64) of a COCO compressed counts string for an H x W mask; ValueError saying
    what is wrong. Work is linear in ``len(counts)``, which is capped first."""
    limit = max_counts_length(height, width)
    if len(counts) > limit:
        raise ValueError(
            f"compressed RLE counts are {len(counts)} characters; "
            f"a {height}x{width} mask needs at most {limit}"
        )
    codes = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    if codes.size == 0:
        raise ValueError("compressed RLE counts are empty")
    if codes.min() < 0 or codes.max() >= 64:
        raise ValueError("compressed RLE counts contain characters outside the COCO alphabet")
    ends = np.flatnonzero((codes & 0x20) == 0)  # the last character of each number
    if ends.size == 0 or ends[-1] != codes.size - 1:
        raise ValueError("compressed RLE counts end in the middle of a number")
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > max_chars_per_run(height, width):
        raise ValueError("compressed RLE counts hold a number larger than the mask")
    values = np.zeros(ends.size, dtype=np.int64)
    for position in range(int(lengths.max())):  # a handful of passes: the longest number's characters
        present = lengths > position
        values[present] |= (codes[starts[present] + position] & 0x1F) << (5 * position)
    negative = (codes[ends] & 0x10) != 0
    values[negative] -= np.left_shift(np.int64(1), 5 * lengths[negative])
    # Runs after the second are deltas from the run two before (pycocotools' rleFrString).
    runs = values.copy()
    if runs.size > 3:
        runs[3::2] = np.cumsum(values[3::2]) + values[1]
    if runs.size > 4:
        runs[4::2] = np.cumsum(values[4::2]) + values[2]
    check_runs(runs, height, width)
    return runs


def check_runs(runs: np.ndarray, height: int, width: int) -> None:
    if runs.size > max_runs(height, width):
        limit = max_runs(height, width)
        raise ValueError(f"RLE has {runs.size} runs; a {height}x{width} mask has at most {limit}")
    if runs.size and runs.min() < 0:
        raise ValueError("RLE counts decode to a negative run length")
    total = int(runs.sum())
    if total != height * width:
        raise ValueError(f"RLE counts add up to {total} pixels, the size says {height * width}")


def canonical_counts(runs: np.ndarray, height: int, width: int) -> str:
    """Checked run lengths → pycocotools' compressed string of the same mask (zero-length runs
    merged away): the column-major mask is rebuilt with one ``np.repeat`` and encoded in C."""
    values = (np.arange(runs.size) % 2).astype(np.uint8)
    column_major = np.repeat(values, runs).reshape(width, height)
    encoded = mask_utils.encode(column_major.T)  # the transpose is Fortran-ordered H x W, no copy
    return encoded["counts"].decode("ascii")
