"""Celery tasks of the annotation app (queue ``embed``). Thin: the work is in ``services``."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


@shared_task(
    name="annotator.annotation.tasks.embed_once",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=settings.MASKMILL_EMBED_TIME_LIMIT,
    soft_time_limit=max(settings.MASKMILL_EMBED_TIME_LIMIT - 30, 30),
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
)
def embed_once(image_id: int, model_version_id: int) -> int | None:
    """Prefetch / on-demand embedding under the cross-process claim; the Embedding id, or None when
    another process is computing it (its result will be found by the next ``prepare``)."""
    from annotator.annotation.services import ensure_embedding_once

    embedding = ensure_embedding_once(image_id, model_version_id)
    return embedding.pk if embedding is not None else None
