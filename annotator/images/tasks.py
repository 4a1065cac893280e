"""Celery tasks of the images app (queue ``embed``). Thin: the work is in ``embeddings``."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from annotator.images.embeddings import ensure_embedding

TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)

# Every task that computes an embedding: a lost worker's task goes to another, transient
# database/broker errors are retried with backoff, and a stuck encoder is stopped.
EMBED_TASK_OPTIONS = dict(
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


@shared_task(name="annotator.images.tasks.embed", **EMBED_TASK_OPTIONS)
def embed(image_id: int) -> int | None:
    """Compute the image's embedding for its project's model; the Embedding id, or None."""
    embedding = ensure_embedding(image_id)
    return embedding.pk if embedding is not None else None
