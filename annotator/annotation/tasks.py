"""Celery tasks of the annotation app (queue ``embed``). Thin: the work is in ``services``."""

from __future__ import annotations

from celery import shared_task

from annotator.images.tasks import EMBED_TASK_OPTIONS


@shared_task(name="annotator.annotation.tasks.embed_once", **EMBED_TASK_OPTIONS)
def embed_once(image_id: int, model_version_id: int) -> int | None:
    """Prefetch / on-demand embedding under the cross-process claim; the Embedding id, or None when
    another process is computing it (its result will be found by the next ``prepare``)."""
    from annotator.annotation.services import ensure_embedding_once

    embedding = ensure_embedding_once(image_id, model_version_id)
    return embedding.pk if embedding is not None else None
