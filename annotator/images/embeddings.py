"""Computing, storing and loading image-encoder embeddings: the one entry point for every path that
needs one (the ``embed`` task after ingest, the annotation page's prefetch and on-demand
computation), and the one reader of stored ones (``load_stored``: decoding clicks, automatic
generation, label suggestions).

An embedding is computed once however many processes ask for it at the same moment: the first
takes the claim (an ``EmbeddingClaim`` row, unique per image and model version), the others are
told it is in progress and find it stored when it is done. The claim of a process that died
expires after ``MASKMILL_EMBED_TIME_LIMIT`` and is taken over.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotator.images.models import Embedding, EmbeddingClaim, Image
from annotator.training.models import ModelVersion
from annotator.training.services import model_version_for, predictor_for
from engine.images import read_image

log = logging.getLogger(__name__)


class EmbeddingInProgress(Exception):
    """Another process holds the claim and is computing this embedding now."""

    def __init__(self, image_id: int, model_version_id: int, owner: str, expires_at: datetime) -> None:
        super().__init__(
            f"the embedding of image {image_id} (model version {model_version_id}) is being computed by "
            f"{owner}; its claim runs until {expires_at:%H:%M:%S} UTC"
        )
        self.image_id, self.model_version_id, self.owner, self.expires_at = (
            image_id, model_version_id, owner, expires_at
        )  # fmt: skip


def ensure_embedding(image_id: int, model_version_id: int | None = None) -> Embedding | None:
    """The embedding of the image under ``model_version_id`` (default: its project's model),
    computed and stored once if missing.

    Idempotent: an existing Embedding row is returned untouched, so a retried or duplicated task
    does no work twice. Returns None when there is nothing to do: the image or model version is
    gone, or no model is configured (the classic segmenter needs no embedding). Raises
    EmbeddingInProgress when another process is computing it right now.
    """
    image = Image.objects.select_related("project__active_model_version").filter(pk=image_id).first()
    if image is None:
        log.info("embed: image %s no longer exists; nothing to do", image_id)
        return None
    if model_version_id is None:
        model_version = model_version_for(image.project)
    else:
        model_version = ModelVersion.objects.filter(pk=model_version_id).first()
    if model_version is None:
        log.info("embed: no model configured; the classic segmenter needs no embedding (image %s)", image_id)
        return None
    # Stored under the version whose encoder computes it: versions that share an encoder share it.
    encoder_id = model_version.embedding_version_id
    existing = Embedding.objects.filter(image=image, model_version_id=encoder_id).first()
    if existing is not None:
        return existing
    owner = _owner()
    for _ in range(3):  # bounded: each round another claimant came and went
        if claim_embedding(image.pk, encoder_id, owner):
            break
        claim = EmbeddingClaim.objects.filter(image=image, model_version_id=encoder_id).first()
        if claim is not None:
            raise EmbeddingInProgress(image.pk, encoder_id, claim.owner, claim.expires_at)
        stored = Embedding.objects.filter(image=image, model_version_id=encoder_id).first()
        if stored is not None:  # the claimant finished between our try and our look
            return stored
        # ... or let go without storing it (it failed): claim it again.
    else:
        raise EmbeddingInProgress(image.pk, encoder_id, "another process", timezone.now())
    try:
        # Whoever held the claim before us may have stored it just before letting go.
        stored = Embedding.objects.filter(image=image, model_version_id=encoder_id).first()
        return stored if stored is not None else compute_embedding(image, model_version)
    finally:
        EmbeddingClaim.objects.filter(image=image, model_version_id=encoder_id, owner=owner).delete()


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:200]


def claim_embedding(image_id: int, model_version_id: int, owner: str) -> bool:
    """Take the claim on computing this embedding: True for exactly one claimant at a time (a new
    row, or an expired claim taken over with a conditional UPDATE)."""
    now = timezone.now()
    expires = now + timedelta(seconds=settings.MASKMILL_EMBED_TIME_LIMIT)
    try:
        with transaction.atomic():
            EmbeddingClaim.objects.create(
                image_id=image_id, model_version_id=model_version_id, owner=owner, expires_at=expires
            )
        return True
    except IntegrityError:
        taken = EmbeddingClaim.objects.filter(
            image_id=image_id, model_version_id=model_version_id, expires_at__lte=now
        ).update(owner=owner, claimed_at=now, expires_at=expires)
        return taken == 1


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
        model_version_id=model_version.embedding_version_id,
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
        return Embedding.objects.get(image=image, model_version_id=model_version.embedding_version_id)
    return embedding


@dataclass(frozen=True)
class StoredEmbedding:
    tensor: Any  # torch float32 (1, C, h, w)
    input_size: tuple[int, int] | None  # the resized image inside the encoder's frame; None on old rows


def load_stored(image: Image, model_version: ModelVersion) -> StoredEmbedding | None:
    """The stored embedding of the image under this model (filed under the version whose encoder
    it runs, shared by the versions that changed only the decoder), or None when there is none.

    A row whose file is lost or unreadable is deleted (its file follows once that commits, see
    ``images.signals``), so the next ``ensure_embedding`` computes it again instead of every reader
    tripping over it.
    """
    from engine.embeddings import load_embedding

    row = Embedding.objects.filter(
        image_id=image.pk, model_version_id=model_version.embedding_version_id
    ).first()
    if row is None:
        return None
    try:
        with row.file.open("rb") as fileobj:
            tensor = load_embedding(fileobj)
    except (OSError, ValueError) as exc:
        log.warning(
            "embedding %s of image %s is unreadable (%s); it will be computed again", row.pk, image.pk, exc
        )
        row.delete()
        return None
    input_size = (int(row.input_size[0]), int(row.input_size[1])) if row.input_size else None
    return StoredEmbedding(tensor=tensor, input_size=input_size)
