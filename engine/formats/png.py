"""PNG masks: per image an instance PNG (16-bit, 0 = nothing, 1..N = the image's masks in mask-id
order), a semantic PNG (0 = nothing, else the label's index in the palette; 8-bit when the palette
fits, else 16-bit) and a legend JSON tying instance ids to masks and labels.

Overlaps: masks are painted largest first, so a smaller mask lies on top of a larger one it
overlaps (the rule of SA-1B's visualisations); equal areas go by mask id. Encoding is PNG through
OpenCV with a fixed compression level, so the same masks give the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from engine.masks import decode_rle

OVERLAP_RULE = "largest first: a smaller mask is drawn over a larger one; equal areas by mask id"
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 6]


class PngFormatError(ValueError):
    """A PNG that is not one of these mask images."""


@dataclass(frozen=True)
class PngMask:
    mask_id: int
    segmentation: dict[str, Any]
    area: int
    label_index: int  # 0 = no label


def render(masks: list[PngMask], height: int, width: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(instance ids uint16, semantic label indices, legend rows) for one image."""
    if len(masks) > 65535:
        raise ValueError(f"{len(masks)} masks do not fit 16-bit instance ids")
    ordered = sorted(masks, key=lambda m: m.mask_id)
    instance = np.zeros((height, width), dtype=np.uint16)
    semantic = np.zeros((height, width), dtype=np.uint16)
    ids = {m.mask_id: index for index, m in enumerate(ordered, start=1)}
    for mask in sorted(ordered, key=lambda m: (-m.area, m.mask_id)):
        pixels = decode_rle(mask.segmentation)
        instance[pixels] = ids[mask.mask_id]
        semantic[pixels] = mask.label_index
    legend = [
        {"instance": ids[m.mask_id], "mask_id": m.mask_id, "label": m.label_index, "area": m.area}
        for m in ordered
    ]
    return instance, semantic, legend


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG; a 16-bit array whose values fit 8 bits is written as 8-bit only when asked
    by passing a uint8 array."""
    ok, data = cv2.imencode(".png", pixels, _PNG_PARAMS)
    if not ok:
        raise ValueError("OpenCV could not encode the PNG")
    return data.tobytes()


def semantic_dtype(label_count: int) -> type:
    return np.uint8 if label_count < 256 else np.uint16


def decode_png(data: bytes) -> np.ndarray:
    """A mask PNG as its single-channel integer array."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.ndim != 2:
        raise PngFormatError("not a single-channel PNG")
    return pixels


def instance_masks(instance: np.ndarray) -> dict[int, np.ndarray]:
    """The visible pixels of every instance id in an instance PNG."""
    return {int(i): instance == i for i in np.unique(instance) if i != 0}


def legend_json(image: dict[str, Any], rows: list[dict], palette_file: str) -> bytes:
    doc = {"image": image, "instances": rows, "overlap_rule": OVERLAP_RULE, "palette": palette_file}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def palette_json(labels: list[dict[str, Any]]) -> bytes:
    """``labels``: ``{"index", "name", "color"}`` rows; index 0 is always "nothing"."""
    doc = {"labels": [{"index": 0, "name": None, "color": "#000000"}, *labels], "overlap_rule": OVERLAP_RULE}
    return json.dumps(doc, indent=1, ensure_ascii=False).encode("utf-8")
