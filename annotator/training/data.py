"""What a training run learns from and is judged on: accepted masks of a project's ``train``-split
images (training) and ``val``-split images (the gate), read with the embeddings stored for the
encoder the model runs, so training never runs the image encoder in decoder mode."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet

from annotator.images.models import Embedding, Image, Split
from annotator.masks.models import Mask, MaskSource, MaskStatus
from annotator.projects.models import Project
from annotator.training.config import TrainingSettings
from annotator.training.models import ModelVersion

log = logging.getLogger(__name__)

HUMAN_SOURCES = (MaskSource.MANUAL, MaskSource.SEMI)


@dataclass
class Item:
    """One (mask, image side) pair: the stored embedding in decoder mode, the pixels in full mode."""

    mask_id: int
    image_id: int
    mask: np.ndarray  # bool (H, W), the image's size
    embedding: Any = None  # float32 (1, C, h, w) tensor
    input_size: tuple[int, int] | None = None
    pixels: np.ndarray | None = None  # uint8 (H, W, 3)


@dataclass
class Selection:
    items: list[Item] = field(default_factory=list)
    available: int = 0  # masks that qualified before the bound and the embedding check
    skipped: Counter = field(default_factory=Counter)  # reason -> masks

    def report(self) -> dict[str, Any]:
        return {"masks": len(self.items), "available": self.available, "skipped": dict(self.skipped)}


def training_masks(project: Project, config: TrainingSettings) -> QuerySet[Mask]:
    """Accepted masks of train-split images: the human ones, plus confident automatic ones when the
    project lets them in."""
    wanted = Q(source__in=HUMAN_SOURCES)
    if config.include_auto:
        wanted |= Q(
            source=MaskSource.AUTO,
            predicted_iou__gte=config.auto_min_iou,
            stability_score__gte=config.auto_min_stability,
        )
    return Mask.objects.filter(wanted, project=project, status=MaskStatus.ACCEPTED, image__split=Split.TRAIN)


def validation_masks(project: Project) -> QuerySet[Mask]:
    """The gate's ground truth: masks people accepted on held-out (val-split) images."""
    return Mask.objects.filter(
        project=project, status=MaskStatus.ACCEPTED, source__in=HUMAN_SOURCES, image__split=Split.VAL
    )


def usable_count(masks: QuerySet[Mask], encoder_version_id: int | None, mode: str) -> int:
    """How many of ``masks`` a run could read: in decoder mode only those with a stored embedding."""
    if mode == "decoder" and encoder_version_id is not None:
        masks = masks.filter(image__embeddings__model_version_id=encoder_version_id)
    return masks.count()


def select(
    masks: QuerySet[Mask], version: ModelVersion, *, mode: str, limit: int, embed_missing: bool = True
) -> Selection:
    """Read up to ``limit`` of ``masks`` (newest first) with their image side.

    Decoder mode: a mask whose image has no stored embedding for the version's encoder is skipped
    (and its embedding queued, so the next run has it); an unreadable embedding is computed again
    here, or skipped with the reason when that fails too.
    """
    selection = Selection(available=masks.count())
    rows = list(masks.order_by("-accepted_at", "-id").values_list("id", "image_id", "segmentation")[:limit])
    by_image: dict[int, list[tuple[int, Any]]] = {}
    for mask_id, image_id, rle in rows:
        by_image.setdefault(image_id, []).append((mask_id, rle))
    images = Image.objects.in_bulk(list(by_image))
    encoder = version.embedding_version_id
    stored = {
        e.image_id: e for e in Embedding.objects.filter(image_id__in=list(by_image), model_version_id=encoder)
    }
    missing: list[int] = []
    for image_id in sorted(by_image):
        masks_here = by_image[image_id]
        image = images.get(image_id)
        if image is None:
            selection.skipped["image deleted while selecting"] += len(masks_here)
            continue
        side: dict[str, Any] = {}
        if mode == "decoder":
            loaded, reason = _embedding(image, stored.get(image_id), version)
            if loaded is None:
                selection.skipped[reason] += len(masks_here)
                if reason.startswith("no stored embedding"):
                    missing.append(image_id)
                continue
            side = {"embedding": loaded[0], "input_size": loaded[1]}
        else:
            pixels, reason = _pixels(image)
            if pixels is None:
                selection.skipped[reason] += len(masks_here)
                continue
            side = {"pixels": pixels}
        for mask_id, rle in masks_here:
            decoded, reason = _decode(rle, image)
            if decoded is None:
                selection.skipped[reason] += 1
                continue
            selection.items.append(Item(mask_id=mask_id, image_id=image_id, mask=decoded, **side))
    if missing and embed_missing:
        _queue_embeddings(missing, version.pk)
    return selection


def _embedding(
    image: Image, row: Embedding | None, version: ModelVersion
) -> tuple[tuple[Any, tuple[int, int]] | None, str]:
    from annotator.images.embeddings import load_stored

    if row is None:
        return None, "no stored embedding for the model's encoder (queued on embed)"
    stored = load_stored(image, version)  # an unreadable one is dropped there ...
    if stored is None:
        return _recompute(image, version)  # ... and computed again here
    if stored.input_size is None:
        return None, "stored embedding lacks its input size"
    return (stored.tensor, stored.input_size), ""


def _recompute(image: Image, version: ModelVersion) -> tuple[tuple[Any, tuple[int, int]] | None, str]:
    """Compute the embedding again in this process (the worker has the model loaded); skipped
    with the reason when that fails too."""
    from annotator.images.embeddings import EmbeddingInProgress, ensure_embedding, load_stored

    try:
        ensure_embedding(image.pk, version.pk)
        stored = load_stored(image, version)
    except EmbeddingInProgress:
        return None, "unreadable embedding; being computed again by another process"
    except (OSError, ValueError) as exc:
        return None, f"unreadable embedding, recomputing failed: {type(exc).__name__}"
    if stored is None or stored.input_size is None:
        return None, "unreadable embedding, and it could not be computed again"
    log.info("train: the unreadable embedding of image %s was computed again", image.pk)
    return (stored.tensor, stored.input_size), ""


def _pixels(image: Image) -> tuple[np.ndarray | None, str]:
    from engine.images import read_image

    try:
        with image.file.open("rb") as fileobj:
            pixels = read_image(fileobj.read(), max_pixels=settings.MASKMILL_MAX_IMAGE_PIXELS)
    except (OSError, ValueError) as exc:
        return None, f"image file unreadable: {type(exc).__name__}"
    if pixels.shape[:2] != (image.height, image.width):
        return None, "image file no longer matches its recorded size"
    return pixels, ""


def _decode(rle: Any, image: Image) -> tuple[np.ndarray | None, str]:
    from engine.masks import decode_rle

    try:
        mask = decode_rle(rle).astype(bool)
    except (TypeError, ValueError, KeyError) as exc:
        return None, f"mask RLE unreadable: {type(exc).__name__}"
    if mask.shape != (image.height, image.width):
        return None, "mask size differs from its image"
    if not mask.any():
        return None, "empty mask"
    return mask, ""


def _queue_embeddings(image_ids: list[int], version_id: int) -> None:
    from annotator.images.tasks import embed

    def send() -> None:
        for image_id in image_ids[:1000]:  # bounded; the next run queues the rest
            embed.delay(image_id, version_id)

    transaction.on_commit(send)
