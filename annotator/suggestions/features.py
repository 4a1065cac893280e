"""Feature vectors of stored masks, read the way the label head was trained: the stored embedding of
the project's model for SAM-family models, the image's pixels for the classic segmenter."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from annotator.images.embeddings import load_stored
from annotator.images.models import Image
from annotator.masks.models import Mask
from annotator.training.models import ModelVersion
from engine.labels import classic_features, embedding_features
from engine.masks import decode_rle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageFeatures:
    """What one image contributes to a mask's features: its embedding (and the resized size inside
    the model's square frame) or its pixels."""

    embedding: np.ndarray | None = None  # (C, h, w)
    input_size: tuple[int, int] | None = None
    img_size: int = 1024
    pixels: np.ndarray | None = None

    def features(self, mask: np.ndarray) -> np.ndarray:
        if self.embedding is not None:
            return embedding_features(self.embedding, mask, self.input_size, self.img_size)
        return classic_features(self.pixels, mask)


def image_features(image: Image, model_version: ModelVersion | None) -> ImageFeatures | None:
    """The image's features source, or None (with a log line) when its embedding is not stored or
    unreadable: training skips such images, suggestions wait for the embedding."""
    if model_version is None:
        from engine.images import read_image

        try:
            with image.file.open("rb") as fileobj:
                pixels = read_image(fileobj.read(), max_pixels=settings.MASKMILL_MAX_IMAGE_PIXELS)
        except (OSError, ValueError) as exc:
            log.warning("image %s is unreadable for label features: %s", image.pk, exc)
            return None
        return ImageFeatures(pixels=pixels)
    return stored_embedding_features(image, model_version)


def stored_embedding_features(image: Image, model_version: ModelVersion) -> ImageFeatures | None:
    from engine.transforms import preprocess_shape

    stored = load_stored(image, model_version)
    if stored is None:
        return None
    embedding = stored.tensor[0].numpy()
    img_size = 16 * embedding.shape[-1]  # every SAM family: 16-pixel patches over a square frame
    input_size = stored.input_size or preprocess_shape(int(image.height), int(image.width), img_size)
    return ImageFeatures(embedding=embedding, input_size=input_size, img_size=img_size)


def masks_with_features(
    masks: Iterable[Mask], model_version: ModelVersion | None
) -> Iterator[tuple[Mask, np.ndarray]]:
    """(mask, features) for masks ordered by image, reading each image's source once; masks of
    images without a readable source are skipped."""
    current_image, source = None, None
    for mask in masks:
        if mask.image_id != current_image:
            current_image = mask.image_id
            source = image_features(mask.image, model_version)
        if source is None:
            continue
        array = decode_rle(mask.segmentation)
        if array.any():
            yield mask, source.features(array)
