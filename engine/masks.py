"""Mask formats and geometry. A mask is encoded one way: COCO RLE through pycocotools, with the
counts as a UTF-8 string so it goes into JSON and databases as is. Boxes are XYWH."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

RLE = dict[str, Any]  # {"size": [h, w], "counts": str}


def encode_rle(mask: np.ndarray) -> RLE:
    """HxW boolean/0-1 mask → COCO compressed RLE with string counts."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: RLE) -> np.ndarray:
    """COCO RLE (compressed string or uncompressed list counts) → HxW bool mask."""
    return mask_utils.decode(_to_coco(rle)).astype(bool)


def rle_area(rle: RLE) -> int:
    return int(mask_utils.area(_to_coco(rle)))


def rle_to_bbox(rle: RLE) -> list[float]:
    """XYWH box of the mask (width = x_max - x_min + 1 in pixels, as pycocotools and SA-1B)."""
    return [float(v) for v in mask_utils.toBbox(_to_coco(rle))]


def validate_rle(rle: Any, height: int | None = None, width: int | None = None) -> RLE:
    """Check an RLE from outside (API, import) and return it normalised to string counts.

    Raises ValueError saying what is wrong: wrong shape of the object, size not matching the image,
    counts that do not add up to h*w.
    """
    if not isinstance(rle, dict) or set(rle) - {"size", "counts"} or not {"size", "counts"} <= set(rle):
        raise ValueError('RLE must be an object with exactly the keys "size" and "counts"')
    size = rle["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ValueError('RLE "size" must be [height, width] with positive integers')
    if height is not None and width is not None and list(size) != [height, width]:
        raise ValueError(f"RLE size {list(size)} does not match the image size [{height}, {width}]")
    h, w = size
    counts = rle["counts"]
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise ValueError("uncompressed RLE counts must be non-negative integers")
        if sum(counts) != h * w:
            raise ValueError(f"RLE counts add up to {sum(counts)} pixels, the size says {h * w}")
        compressed = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        return {"size": [h, w], "counts": compressed["counts"].decode("ascii")}
    if not isinstance(counts, str) or not counts or not counts.isascii():
        raise ValueError("compressed RLE counts must be a non-empty ASCII string")
    if any(not (48 <= ord(c) < 48 + 64) for c in counts):
        raise ValueError("compressed RLE counts contain characters outside the COCO alphabet")
    total = _compressed_total(counts)
    if total != h * w:
        raise ValueError(f"RLE counts add up to {total} pixels, the size says {h * w}")
    return {"size": [h, w], "counts": counts}


def _compressed_total(counts: str) -> int:
    """Sum of run lengths in a COCO compressed counts string (LEB128-like, delta-coded)."""
    runs: list[int] = []
    p = 0
    while p < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if p >= len(counts):
                raise ValueError("compressed RLE counts end in the middle of a number")
            c = ord(counts[p]) - 48
            value |= (c & 0x1F) << (5 * shift)
            more = bool(c & 0x20)
            p += 1
            shift += 1
            if not more and (c & 0x10):
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise ValueError("compressed RLE counts decode to a negative run length")
        runs.append(value)
    return sum(runs)


def _to_coco(rle: RLE) -> dict[str, Any]:
    counts = rle["counts"]
    h, w = rle["size"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
