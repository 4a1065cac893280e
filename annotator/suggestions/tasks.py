"""Celery tasks of label suggestions (queue ``train``). Thin: the work is in services and find."""

from __future__ import annotations

import logging

from celery import shared_task

from annotator.jobs import TRANSIENT_ERRORS

log = logging.getLogger(__name__)

TASK_OPTIONS = dict(acks_late=True, reject_on_worker_lost=True, autoretry_for=TRANSIENT_ERRORS, max_retries=3)


@shared_task(name="annotator.suggestions.tasks.train_label_head", **TASK_OPTIONS)
def train_label_head_task(project_id: int) -> int | None:
    """Train (and gate) the project's label head; the new head's id, None when the data cannot
    train one yet (the reason is logged; the dashboard shows it)."""
    from django.core.cache import cache

    from annotator.projects.models import Project
    from annotator.suggestions.models import HeadTrigger
    from annotator.suggestions.services import retrain_key, train_head
    from engine.labels import LabelHeadError

    try:
        project = Project.objects.filter(pk=project_id).first()
        if project is None:
            return None
        return train_head(project, HeadTrigger.LABELLED_MASKS).pk
    except LabelHeadError as exc:
        log.info("label head of project %s not trained: %s", project_id, exc)
        return None
    finally:
        cache.delete(retrain_key(project_id))


@shared_task(name="annotator.suggestions.tasks.find_label", **TASK_OPTIONS)
def find_label_task(label_id: int, image_ids: list[int]) -> dict:
    """Find the label on each image in turn (a re-delivered task proposes nothing twice: masks
    already on an image are skipped as duplicates)."""
    from annotator.suggestions.find import find_in_images

    return find_in_images(label_id, image_ids)
