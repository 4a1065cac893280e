"""Fixtures of the exports tests: a project whose images carry masks of every status, source and
label (and none), the export folder in the test's temporary directory."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


@pytest.fixture(autouse=True)
def _export_dir(settings, tmp_path):
    settings.MASKMILL_EXPORT_DIR = tmp_path / "exports"


def picture(seed: int, width: int, height: int, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format=fmt, quality=90)
    return buffer.getvalue()


def shapes(seed: int, width: int, height: int, count: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for index in range(count):
        mask = np.zeros((height, width), np.uint8)
        center = (int(rng.integers(8, width - 8)), int(rng.integers(8, height - 8)))
        cv2.circle(mask, center, int(rng.integers(4, min(width, height) // 3)), 1, -1)
        if index % 2:
            cv2.circle(mask, center, 2, 0, -1)
        out.append(mask.astype(bool))
    return out


def ingest(project, name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from annotator.images.services import ingest_files

    result = ingest_files(project, [SimpleUploadedFile(name, data)], None)
    assert result.created, result.as_dict()
    return result.created[0]


IMAGES = [("a.png", 80, 60, "PNG"), ("b.jpg", 96, 64, "JPEG"), ("c.png", 50, 70, "PNG")]


@pytest.fixture
def filled(project, users):
    """``project`` (labels cat, dog) with three images; per image 4 accepted masks (cat, dog, none,
    cat), one proposed auto mask and one rejected one."""
    from annotator.masks.services import create_mask
    from engine.masks import encode_rle

    labels = {label.name: label for label in project.labels.all()}
    images = []
    for seed, (name, width, height, fmt) in enumerate(IMAGES):
        image = ingest(project, name, picture(seed, width, height, fmt))
        images.append(image)
        for index, mask in enumerate(shapes(seed, width, height)):
            label = [labels["cat"], labels["dog"], None, labels["cat"]][index]
            scored = index > 0  # the first mask of each image is hand-drawn: no scores, no prompt
            create_mask(
                image, segmentation=encode_rle(mask), annotator=users["annotator"], label=label,
                status="accepted", predicted_iou=0.9 if scored else None,
                stability_score=0.95 if scored else None, point_coords=[[5.0, 6.0]] if scored else None,
                crop_box=[0, 0, width, height] if scored else None, source="manual" if index < 2 else "semi",
            )  # fmt: skip
        extra = np.zeros((height, width), bool)
        extra[2:10, 2:10] = True
        create_mask(image, segmentation=encode_rle(extra), annotator=None, status="proposed", source="auto",
                    predicted_iou=0.7, stability_score=0.8)  # fmt: skip
        rejected = np.zeros((height, width), bool)
        rejected[20:30, 20:30] = True
        create_mask(image, segmentation=encode_rle(rejected), annotator=None, status="rejected")
    return project, images


@pytest.fixture
def twin(users, filled):
    """A second project with the same images (same file names), no masks: where imports go."""
    from annotator.projects.services import create_project

    other = create_project(name="Twin", creator=users["manager"])
    for seed, (name, width, height, fmt) in enumerate(IMAGES):
        ingest(other, name, picture(seed, width, height, fmt))
    return other
