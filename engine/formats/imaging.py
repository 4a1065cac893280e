"""What an export does to pixels: shrink an image so its shortest side is at most N pixels (masks
resampled to the same size, so every mask still decodes on the image it ships with, as SA-1B's
released masks match its downsampled images), JPEG encoding, and the privacy pass that blurs faces
(and optionally licence plates) found by the Haar cascades that OpenCV ships (``cv2.data``: no
download at run time)."""

from __future__ import annotations

import functools
from typing import Any

import cv2
import numpy as np

from engine.masks import decode_rle, encode_rle

JPEG_QUALITY = 95
CASCADES = {
    "face": ("haarcascade_frontalface_default.xml", "haarcascade_profileface.xml"),
    "plate": ("haarcascade_russian_plate_number.xml",),
}


def target_size(height: int, width: int, max_short_side: int | None) -> tuple[int, int]:
    """(height, width) after shrinking so the shorter side is at most ``max_short_side``."""
    if not max_short_side or min(height, width) <= max_short_side:
        return height, width
    scale = max_short_side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    if pixels.shape[:2] == (height, width):
        return pixels
    return cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)


def resize_rle(rle: dict[str, Any], height: int, width: int) -> dict[str, Any]:
    """A mask at another size: area-averaged then thresholded at one half (nearest neighbour
    would drop thin parts at random when shrinking)."""
    if list(rle["size"]) == [height, width]:
        return rle
    mask = decode_rle(rle).astype(np.float32)
    return encode_rle(cv2.resize(mask, (width, height), interpolation=cv2.INTER_AREA) >= 0.5)


def encode_jpeg(pixels_rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(pixels_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("OpenCV could not encode the JPEG")
    return data.tobytes()


@functools.cache
def _cascade(name: str) -> cv2.CascadeClassifier:
    classifier = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    if classifier.empty():
        raise RuntimeError(f"OpenCV's cascade {name} is missing from {cv2.data.haarcascades}")
    return classifier


def detect(pixels_rgb: np.ndarray, kinds: tuple[str, ...] = ("face",)) -> list[dict[str, Any]]:
    """Regions to blur: ``{"kind", "box": [x, y, w, h]}``, in a fixed order."""
    grey = cv2.equalizeHist(cv2.cvtColor(pixels_rgb, cv2.COLOR_RGB2GRAY))
    min_side = max(12, min(grey.shape) // 60)
    regions = []
    for kind in kinds:
        for name in CASCADES[kind]:
            found = _cascade(name).detectMultiScale(
                grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side)
            )
            regions += [{"kind": kind, "box": [int(v) for v in box]} for box in found]
    return sorted(regions, key=lambda r: (r["kind"], r["box"]))


def blur_regions(pixels_rgb: np.ndarray, regions: list[dict[str, Any]]) -> np.ndarray:
    """A copy with each region (grown by a fifth) replaced by a strong Gaussian blur of itself."""
    out = pixels_rgb.copy()
    height, width = out.shape[:2]
    for region in regions:
        x, y, w, h = region["box"]
        pad_x, pad_y = w // 5, h // 5
        x0, y0 = max(0, x - pad_x), max(0, y - pad_y)
        x1, y1 = min(width, x + w + pad_x), min(height, y + h + pad_y)
        if x1 <= x0 or y1 <= y0:
            continue
        patch = out[y0:y1, x0:x1]
        kernel = max(3, (max(x1 - x0, y1 - y0) // 3) | 1)
        out[y0:y1, x0:x1] = cv2.GaussianBlur(patch, (kernel, kernel), 0)
    return out
