"""Computing and storing image-encoder embeddings (the work behind the ``embed`` task)."""

from __future__ import annotations

import io
import logging
import time

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from annotator.images.models import Embedding, Image
from annotator.training.models import ModelVersion
from annotator.training.services import model_version_for, predictor_for
from engine.images import read_image

log = logging.getLogger(__name__)


def ensure_embedding(image_id: int) -> Embedding | None:
    """The embedding of the image under its project's model, computed and stored if missing.

    Idempotent: an existing Embedding row for (image, model version) is returned untouched, so a
    retried or duplicated task does no work twice. Returns None when there is nothing to do: the
    image is gone, or no model is configured (the classic segmenter needs no embedding).
    """
    image = Image.objects.select_related("project__active_model_version").filter(pk=image_id).first()
    if image is None:
        log.info("embed: image %s no longer exists; nothing to do", image_id)
        return None
    model_version = model_version_for(image.project)
    if model_version is None:
        log.info("embed: no model configured; the classic segmenter needs no embedding (image %s)", image_id)
        return None
    existing = Embedding.objects.filter(image=image, model_version=model_version).first()
    if existing is not None:
        return existing
    return compute_embedding(image, model_version)


def compute_embedding(image: Image, model_version: ModelVersion) -> Embedding:
    import torch

    from engine.embeddings import save_embedding

    started = time.perf_counter()
    with image.file.open("rb") as fileobj:
        pixels = read_image(fileobj.read(), max_pixels=settings.MASKMILL_MAX_IMAGE_PIXELS)
    predictor = predictor_for(model_version)
    with torch.inference_mode():
        predictor.set_image(pixels)
        tensor = predictor.get_image_embedding()
    input_size = [int(v) for v in predictor.input_size]
    buffer = io.BytesIO()
    save_embedding(buffer, tensor)
    embedding = Embedding(
        image=image,
        model_version=model_version,
        dtype="float16",
        shape=[int(v) for v in tensor.shape],
        input_size=input_size,
        seconds=time.perf_counter() - started,
    )
    embedding.file.save("embedding.npy", ContentFile(buffer.getvalue()), save=False)
    try:
        with transaction.atomic():
            embedding.save()
    except IntegrityError:
        # A concurrent task stored it first: keep theirs, drop our copy of the file.
        embedding.file.delete(save=False)
        return Embedding.objects.get(image=image, model_version=model_version)
    return embedding
