"""A rectangle made into a mask by the project's segmenter (its SAM model version, else the
weight-free classic one), for imports that bring boxes (Label Studio rectangles). The masks are
the model's, and say so: the caller stores them as model-made with the model's score."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings

from annotator.images.models import Image
from annotator.training.models import ModelVersion
from annotator.training.services import model_version_for, predictor_for
from engine.images import read_image
from engine.masks import encode_rle


@dataclass(frozen=True)
class BoxMask:
    segmentation: dict[str, Any]
    score: float
    model_version: ModelVersion | None  # None: the classic segmenter


def masks_from_boxes(image: Image, boxes: list[np.ndarray]) -> list[BoxMask]:
    """One mask per XYXY pixel box, best of the segmenter's single-mask answer; empty masks are
    refused (ValueError) so an import never stores a mask with no pixels."""
    if not boxes:
        return []
    from annotator.annotation.services import model_thread

    model_version = model_version_for(image.project)
    with image.file.open("rb") as fileobj:
        pixels = read_image(fileobj.read(), max_pixels=settings.MASKMILL_MAX_IMAGE_PIXELS)

    def segment() -> list[tuple[np.ndarray, float]]:
        if model_version is None:
            from engine.classic import ClassicPredictor

            predictor: Any = ClassicPredictor()
        else:
            predictor = predictor_for(model_version)
        predictor.set_image(pixels)
        out = []
        for box in boxes:
            masks, scores, _ = predictor.predict(box=np.asarray(box, np.float32), multimask_output=False)
            out.append((np.asarray(masks[0], bool), float(scores[0])))
        return out

    results = []
    for box, (mask, score) in zip(boxes, model_thread.run(segment), strict=True):
        if not mask.any():
            raise ValueError(f"the segmenter found nothing inside the box {[round(float(v)) for v in box]}")
        results.append(BoxMask(encode_rle(mask), score, model_version))
    return results
