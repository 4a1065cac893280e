"""One mask from a prompt, decoded by the project's model outside an annotator's click: a
rectangle (or clicks) drawn in another tool becomes a mask the same way a click on the annotation
page does, from the same cached embedding (or the classic segmenter without a checkpoint), but with
no logits handle, lease or session, which belong to an annotator's page."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from annotator.annotation.interactive import parse_prompts, rles_from_low_res
from annotator.annotation.services import decoding, prediction
from annotator.images.models import Image
from annotator.projects.models import Project
from annotator.training.services import model_version_for
from engine.masks import decode_rle, encode_rle


class NotReady(Exception):
    """The image's embedding is still being computed after the wait the caller allowed."""


@dataclass(frozen=True)
class Decoded:
    segmentation: dict[str, Any]  # COCO RLE at image size
    score: float
    model: str  # "classic" or the model version's name
    model_version_id: int | None
    suggestions: dict[str, Any] | None = None  # label suggestions of this mask, when asked for


def decode_prompt(
    image: Image,
    *,
    points: Sequence[Sequence[float]] | None = None,
    labels: Sequence[int] | None = None,
    box: Sequence[float] | None = None,
    wait_s: float = 30.0,
    suggest: bool = False,
) -> Decoded:
    """The best mask for the prompts (image pixels; box XYXY). One click is ambiguous, so it is
    decoded with three candidates and the best scored is kept; more prompts ask for one mask.
    PromptError for prompts outside the image; NotReady when the embedding is not there in time.
    ``suggest``: also the project's label suggestions for the mask (``Decoded.suggestions``)."""
    from annotator.suggestions.services import answer_suggestions

    single_click = box is None and points is not None and len(points) == 1
    body: dict[str, Any] = {"multimask": single_click}
    if points:
        body["points"], body["labels"] = [list(p) for p in points], list(labels or [])
    if box is not None:
        body["box"] = list(box)
    prompts = parse_prompts(body, image.width, image.height)
    model_version = model_version_for(image.project)
    if model_version is None:
        masks, scores, _ = prediction._predict_classic(image, prompts, None)
        best = int(np.argmax(scores))
        suggested = (
            answer_suggestions(
                image.project,
                None,
                masks=masks[best : best + 1],
                pixels=prediction.classic_state(image).pixels,
            )
            if suggest
            else None
        )
        return Decoded(encode_rle(masks[best]), float(scores[best]), "classic", None, suggested)
    deadline = time.monotonic() + wait_s
    state = decoding.decode_state(image, model_version)
    while state is None:
        if time.monotonic() > deadline:
            raise NotReady(f"the embedding of image {image.pk} is still being computed; ask again shortly")
        time.sleep(0.05)
        state = decoding.decode_state(image, model_version)
    model, low_res, scores, _, _ = decoding._decode_on_model_thread(model_version, state, prompts, None)
    best = int(np.argmax(scores))
    rle = rles_from_low_res(model, state, low_res[best : best + 1])[0]
    suggested = (
        answer_suggestions(
            image.project, model_version, model=model, state=state, low_res=low_res[best : best + 1]
        )
        if suggest
        else None
    )
    return Decoded(rle, float(scores[best]), str(model_version), model_version.pk, suggested)


def box_to_mask(project: Project, image: Image, box: Sequence[float], *, wait_s: float = 60.0) -> np.ndarray:
    """The project's model's mask for a rectangle ``box`` (XYXY, image pixels) as a boolean H×W
    array (a rectangle drawn in another tool turned into the object it frames)."""
    if image.project_id != project.pk:
        raise ValueError(f"image {image.pk} is not in project {project.pk}")
    return decode_rle(decode_prompt(image, box=box, wait_s=wait_s).segmentation).astype(bool)
