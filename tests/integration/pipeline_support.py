"""A cheap, deterministic, real mask generator for the pipeline tests, and images it finds
objects in. It honours the MaskGenerator record contract (COCO RLE, XYWH bbox, scores, prompt
point, crop box), so the platform code under test is the same as with the model; the tests point
``MASKMILL_MASK_GENERATOR`` at ``components_generator`` when engine.automatic is not available
(or to keep a fault-injection run short)."""

from __future__ import annotations

import io
import os
import time
from typing import Any

import cv2
import numpy as np
from PIL import Image as PILImage

from engine.masks import encode_rle, rle_to_bbox


def shapes_image(seed: int, width: int = 96, height: int = 72) -> np.ndarray:
    """A dark image with 2-5 bright non-touching rectangles (how many depends on the seed)."""
    rng = np.random.default_rng(seed)
    pixels = np.full((height, width, 3), 20, dtype=np.uint8)
    count = 2 + seed % 4
    cell_w = width // count
    for i in range(count):
        x0 = i * cell_w + 2 + int(rng.integers(0, 3))
        y0 = 4 + int(rng.integers(0, height // 3))
        w = max(cell_w - 8, 4)
        h = int(rng.integers(8, height - y0 - 2))
        pixels[y0 : y0 + h, x0 : x0 + w] = rng.integers(150, 255, size=3, dtype=np.uint8)
    return pixels


def shapes_png(seed: int, width: int = 96, height: int = 72) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(shapes_image(seed, width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def expected_mask_count(seed: int) -> int:
    return 2 + seed % 4


class ComponentsGenerator:
    """Bright connected components as masks. ``MASKMILL_TEST_GENERATE_DELAY`` seconds of sleep
    stand in for the model's time, so a test can kill a worker while a task is running."""

    def __init__(self, min_area: int = 10) -> None:
        self.min_area = min_area

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        delay = float(os.environ.get("MASKMILL_TEST_GENERATE_DELAY", "0"))
        if delay:
            time.sleep(delay)
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        count, labels, stats, centroids = cv2.connectedComponentsWithStats((gray > 100).astype(np.uint8), 4)
        height, width = gray.shape
        records = []
        for index in range(1, count):
            if stats[index, cv2.CC_STAT_AREA] < self.min_area:
                continue
            rle = encode_rle(labels == index)
            records.append(
                {
                    "segmentation": rle,
                    "area": int(stats[index, cv2.CC_STAT_AREA]),
                    "bbox": rle_to_bbox(rle),
                    "predicted_iou": 0.9,
                    "point_coords": [[float(centroids[index][0]), float(centroids[index][1])]],
                    "stability_score": 0.98,
                    "crop_box": [0, 0, width, height],
                }
            )
        return records


def components_generator(model_version: Any, params: dict[str, Any]) -> ComponentsGenerator:
    return ComponentsGenerator()


class _Slowed:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        delay = float(os.environ.get("MASKMILL_TEST_GENERATE_DELAY", "0"))
        if delay:
            time.sleep(delay)
        return self.inner.generate(image)


def slow_engine_generator(model_version: Any, params: dict[str, Any]) -> _Slowed:
    """The real engine generator (annotator's default factory), after the same test delay."""
    from annotator.stages.generation import engine_mask_generator

    return _Slowed(engine_mask_generator(model_version, params))


TINY_SAM_CONFIG = {
    "image_size": 128,
    "patch_size": 16,
    "encoder_embed_dim": 32,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_global_attn_indexes": [1],
    "encoder_window_size": 4,
    "prompt_embed_dim": 32,
    "decoder_mlp_dim": 64,
    "decoder_num_heads": 2,
    "iou_head_hidden_dim": 32,
}
# Random weights: thresholds lowered so masks survive, a sparse grid so a task stays cheap.
LOW_THRESHOLDS = {
    "points_per_side": 4,
    "points_per_batch": 16,
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
    "min_mask_region_area": 0,
}


def engine_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("engine.automatic", "engine.sam"))


def save_tiny_checkpoint(path: Any, seed: int = 0) -> None:
    """A random ``custom`` SAM checkpoint, so every worker process loads the same weights."""
    import torch
    from engine.sam import build_sam

    torch.manual_seed(seed)
    torch.save(build_sam("custom", config=TINY_SAM_CONFIG).state_dict(), path)
