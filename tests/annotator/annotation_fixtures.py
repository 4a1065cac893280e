"""Helpers for the annotation app's tests: images with a clear object, and a tiny seeded SAM
checkpoint configured as the project's model."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage


def disk_picture(
    width: int = 160, height: int = 120, center=(80, 60), radius: int = 30, seed: int = 0
) -> bytes:
    """A PNG: a bright red disk on a dark, slightly noisy background (what a click should segment)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(20, 50, size=(height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    inside = (xx - center[0]) ** 2 + (yy - center[1]) ** 2 <= radius**2
    pixels[inside] = (220, 40, 40)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def disk_mask(width: int = 160, height: int = 120, center=(80, 60), radius: int = 30) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return (xx - center[0]) ** 2 + (yy - center[1]) ** 2 <= radius**2


def add_picture(project, data: bytes, name: str = "disk.png"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from annotator.images.services import ingest_files

    result = ingest_files(project, [SimpleUploadedFile(name, data, content_type="image/png")], None)
    assert result.created, result.as_dict()
    return result.created[0]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def tiny_sam_checkpoint(directory, seed: int = 0):
    """(config, checkpoint path) of a small custom SAM with seeded random weights."""
    import torch

    from engine.sam import build_sam
    from tests.reference_models import SMALL_CONFIG

    config = dict(SMALL_CONFIG)
    torch.manual_seed(seed)
    model = build_sam("custom", config=config)
    path = directory / f"tiny-sam-{seed}.pth"
    torch.save(model.state_dict(), path)
    return config, str(path)


@pytest.fixture
def tiny_sam(settings, tmp_path):
    """Configure a tiny custom SAM (seeded weights, saved checkpoint) as the platform's model."""
    from annotator.annotation import services
    from annotator.training.services import forget_loaded_models

    config, path = tiny_sam_checkpoint(tmp_path)
    settings.MASKMILL_MODEL_TYPE = "custom"
    settings.MASKMILL_MODEL_CONFIG = config
    settings.MASKMILL_CHECKPOINT = path
    forget_loaded_models()
    services.reset_caches()
    yield config
    forget_loaded_models()
    services.reset_caches()


def need_classic():
    """The classic segmenter is part of the engine: importing it must work (an ImportError fails)."""
    import engine.classic  # noqa: F401
