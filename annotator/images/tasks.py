"""Celery tasks of the images app (queue ``embed``). Thin: the work is in ``embeddings``."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from annotator.images.embeddings import EmbeddingInProgress, ensure_embedding
from annotator.jobs import TRANSIENT_ERRORS

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


@shared_task(name="annotator.images.tasks.embed", bind=True, **EMBED_TASK_OPTIONS)
def embed(self, image_id: int, model_version_id: int | None = None) -> int | None:
    """Compute the image's embedding (for its project's model unless a version is given): the one
    task every path queues (ingest, the annotation page's prefetch and on-demand embedding). The
    Embedding id, or None when there is nothing to do.

    When another process is computing it, the task comes back when that claim would expire: by
    then the embedding is stored (found, nothing done), or its claimant died and this task takes
    over, as a redelivered task of a lost worker must.
    """
    try:
        embedding = ensure_embedding(image_id, model_version_id)
    except EmbeddingInProgress as busy:
        if self.request.is_eager:  # in-process (tests, CELERY_TASK_ALWAYS_EAGER): the claimant finishes it
            return None
        wait = max(1.0, (busy.expires_at - timezone.now()).total_seconds() + 1)
        raise self.retry(countdown=wait, max_retries=self.request.retries + 1) from busy
    return embedding.pk if embedding is not None else None
