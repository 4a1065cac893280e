"""Answering a click: ``prepare`` (is the image ready to decode?) and ``predict`` (masks for the
prompts, by the project's model on the model thread, or by the weight-free classic segmenter when
the project has none)."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from annotator.annotation.interactive import (
    FIELD_OF_ARGUMENT,
    STORED_MASK_PATTERN,
    ClassicState,
    PromptError,
    Prompts,
    parse_prompts,
    rles_from_low_res,
    select_logits,
)
from annotator.annotation.logits import LogitsEntry
from annotator.annotation.lowres import mask_to_low_res_logits
from annotator.annotation.services.decoding import (
    PREPARING,
    READY,
    _decode_on_model_thread,
    classic_states,
    decode_state,
    logits_store,
)
from annotator.annotation.services.leases import note_activity
from annotator.images.models import Image
from annotator.masks.models import Mask
from annotator.suggestions.services import answer_suggestions, warm_suggestions
from annotator.training.services import model_version_for
from engine.masks import decode_rle, encode_rle
from engine.prompts import PromptValueError


def prepare(image: Image) -> str:
    """``ready`` when a click can be decoded now, else ``preparing`` (computation started)."""
    model_version = model_version_for(image.project)
    warm_suggestions(image.project, model_version)
    if model_version is None:
        classic_state(image)
        return READY
    return READY if decode_state(image, model_version) is not None else PREPARING


def classic_state(image: Image) -> ClassicState:
    """The weight-free segmenter holding this image (kept in a small LRU: reading and converting
    the image is most of its first-click cost)."""

    def build() -> ClassicState:
        from engine.classic import ClassicPredictor
        from engine.images import read_image

        with image.file.open("rb") as fileobj:
            pixels = read_image(fileobj.read(), max_pixels=settings.MASKMILL_MAX_IMAGE_PIXELS)
        predictor = ClassicPredictor()
        predictor.set_image(pixels)
        return ClassicState(
            predictor=predictor, lock=threading.Lock(), nbytes=int(pixels.nbytes * 3), pixels=pixels
        )

    state = classic_states.get_or_create(image.pk, build)
    assert state is not None
    return state


def _stored_mask_logits(image: Image, reference: str) -> np.ndarray:
    mask_id = int(STORED_MASK_PATTERN.match(reference).group(1))
    rle = Mask.objects.filter(pk=mask_id, image_id=image.pk).values_list("segmentation", flat=True).first()
    if rle is None:
        raise PromptError({"mask_input": f"mask {mask_id} is not a mask of image {image.pk}"})
    return mask_to_low_res_logits(decode_rle(rle))


def predict(image: Image, user: AbstractBaseUser, data: Any) -> dict[str, Any]:
    """Masks for the prompts in ``data`` (the predict body), as COCO RLE at image resolution, with a
    handle to their low-res logits for the next round; ``{"state": "preparing"}`` while the image's
    embedding is being computed."""
    prompts = parse_prompts(data, image.width, image.height)
    model_version = model_version_for(image.project)
    model_key = "classic" if model_version is None else f"mv{model_version.pk}"
    notice = None
    mask_logits = None
    if prompts.mask_input is not None:
        if prompts.mask_input.startswith("mask:"):
            mask_logits = _stored_mask_logits(image, prompts.mask_input)
        else:
            entry = logits_store.get(user.pk, prompts.mask_input, image.pk)
            if entry is None or entry.model_key != model_key:
                notice = (
                    "the previous answer's logits have expired (or the model changed): this answer "
                    "uses your clicks without the previous mask"
                )
            else:
                mask_logits = select_logits(entry, prompts.mask_index)
        if mask_logits is None and prompts.points is None and prompts.box is None:
            raise PromptError({"mask_input": notice or "no usable mask prompt and no other prompt"})

    queued = 0.0
    if model_version is None:
        began = time.perf_counter()
        masks, scores, low_res = _predict_classic(image, prompts, mask_logits)
        started = time.perf_counter()
        decoding = started - began
        rles = [encode_rle(m) for m in masks]
        model_name, fallback = "classic", True
        encoded = time.perf_counter()
        pixels = classic_state(image).pixels
        suggestions = answer_suggestions(image.project, None, masks=masks, pixels=pixels)
    else:
        state = decode_state(image, model_version)
        if state is None:
            return {"state": PREPARING}
        model, low_res, scores, queued, decoding = _decode_on_model_thread(
            model_version, state, prompts, mask_logits
        )
        started = time.perf_counter()
        rles = rles_from_low_res(model, state, low_res)
        model_name, fallback = str(model_version), False
        encoded = time.perf_counter()
        suggestions = answer_suggestions(
            image.project, model_version, model=model, state=state, low_res=low_res
        )
    suggested = time.perf_counter()
    handle = logits_store.put(
        user.pk,
        LogitsEntry(
            image_id=image.pk, model_key=model_key, low_res=np.asarray(low_res, np.float32), scores=scores
        ),
    )
    stored = time.perf_counter()
    answer: dict[str, Any] = {
        "masks": [{"segmentation": rle, "score": float(s)} for rle, s in zip(rles, scores)],
        "logits_handle": handle,
        "model": model_name,
        "model_version": None if model_version is None else model_version.pk,
        "fallback": fallback,
        # waiting for earlier clicks, the model, masks at image size as RLE, label suggestions, handle
        "timing_ms": {
            "queue": round(queued * 1000, 2),
            "decode": round(decoding * 1000, 2),
            "masks": round((encoded - started) * 1000, 2),
            "suggest": round((suggested - encoded) * 1000, 2),
            "store": round((stored - suggested) * 1000, 2),
        },
        **suggestions,
    }
    if notice:
        answer["notice"] = notice
    note_activity(image, user, clicks=prompts.clicks)
    return answer


def _predict_classic(
    image: Image, prompts: Prompts, mask_logits: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    state = classic_state(image)
    with state.lock:
        try:
            return state.predictor.predict(
                point_coords=prompts.points,
                point_labels=prompts.labels,
                box=prompts.box,
                mask_input=mask_logits,
                multimask_output=prompts.multimask,
            )
        except PromptValueError as exc:
            raise PromptError({FIELD_OF_ARGUMENT.get(exc.argument, "body"): str(exc)}) from exc
        except ValueError as exc:
            raise PromptError({"body": str(exc)}) from exc
