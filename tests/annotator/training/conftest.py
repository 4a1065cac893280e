"""A project ready to train: a tiny seeded SAM configured as its model, train- and val-split
images of a bright disk with accepted masks, and their embeddings stored (as the embed task
leaves them)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.annotator.annotation_fixtures import add_picture, disk_mask, disk_picture
from tests.tiny_models import TINY_CONFIG, save_tiny_checkpoint

WIDTH, HEIGHT = 96, 72
FAST = {
    "steps": 3,
    "batch": 2,
    "min_masks": 4,
    "max_clicks": 5,
    "promotion_margin": -1.0,
    "point_rounds": 1,
    "mask_rounds": 0,
}


@pytest.fixture
def tiny_model(settings, tmp_path):
    import engine.training  # noqa: F401  (part of the project: an ImportError fails)
    from annotator.annotation import services
    from annotator.training.services import forget_loaded_models

    settings.MASKMILL_MODEL_STORE = str(tmp_path / "models")
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt")
    settings.MASKMILL_MODEL_TYPE = "custom"
    settings.MASKMILL_CHECKPOINT = str(checkpoint)
    settings.MASKMILL_MODEL_CONFIG = json.loads(json.dumps(TINY_CONFIG))
    settings.MASKMILL_DEVICE = "cpu"
    forget_loaded_models()
    services.reset_caches()
    yield checkpoint
    forget_loaded_models()
    services.reset_caches()


def add_disk_image(project, seed: int, split: str = "train", accepted: bool = True, embed: bool = True):
    """An image with one disk and, when ``accepted``, its accepted manual mask."""
    from django.utils import timezone

    from annotator.images.embeddings import ensure_embedding
    from annotator.images.models import Image
    from annotator.masks.models import Mask, MaskSource, MaskStatus
    from engine.masks import encode_rle, rle_area, rle_to_bbox

    rng = np.random.default_rng(seed)
    center = (int(rng.integers(30, WIDTH - 30)), int(rng.integers(25, HEIGHT - 25)))
    radius = int(rng.integers(12, 20))
    image = add_picture(project, disk_picture(WIDTH, HEIGHT, center, radius, seed=seed), name=f"d{seed}.png")
    Image.objects.filter(pk=image.pk).update(split=split)
    if embed:
        ensure_embedding(image.pk)
    if accepted:
        rle = encode_rle(disk_mask(WIDTH, HEIGHT, center, radius))
        Mask.objects.create(
            project=project, image=image, segmentation=rle, bbox=rle_to_bbox(rle), area=rle_area(rle),
            source=MaskSource.MANUAL, status=MaskStatus.ACCEPTED, accepted_at=timezone.now(),
        )  # fmt: skip
    return image


@pytest.fixture
def trainable(project, tiny_model):
    """``project`` with 6 train and 1 val image (one accepted disk mask each, embeddings stored)
    and training settings that make a run take a second."""
    from annotator.projects.services import update_project

    for seed in range(6):
        add_disk_image(project, seed)
    for seed in range(100, 101):
        add_disk_image(project, seed, split="val")
    update_project(project, settings={**project.settings, "training": dict(FAST)})
    project.refresh_from_db()
    return project
