"""Celery tasks of the stages (queue ``generate``). Thin: the exactly-once logic is in ``items``;
the retry policy (which errors, how often, how long) is here.

Late acknowledgement with ``reject_on_worker_lost``: a worker killed mid-task gives its message
back to the broker and another worker takes it; the item's claim/finish transactions make the
second delivery either finish the work or find it done.
"""

from __future__ import annotations

import logging
import os

from celery import Task, shared_task
from django.conf import settings

from annotator.jobs import TRANSIENT_ERRORS
from annotator.stages import items

log = logging.getLogger(__name__)

TIME_LIMIT = settings.MASKMILL_GENERATE_TIME_LIMIT


class GenerateItemTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """Retries exhausted (or a hard time limit): the item fails with the reason, the run goes on."""
        item_id = args[0] if args else kwargs.get("item_id")
        try:
            items.fail_item(
                item_id, f"gave up after {self.request.retries} retries: {type(exc).__name__}: {exc}"
            )
        except Exception:  # the database may still be away; resume_run picks the item up later
            log.exception("generate: could not mark item %s failed", item_id)


@shared_task(
    bind=True,
    base=GenerateItemTask,
    name="annotator.stages.tasks.generate_item",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=TIME_LIMIT,
    soft_time_limit=max(TIME_LIMIT - 30, 30),
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=settings.MASKMILL_GENERATE_MAX_RETRIES,
)
def generate_item(self, item_id: int) -> str:
    """Generate and store the masks of one GenerationItem; returns the outcome."""
    return items.process_item(item_id, worker=f"{self.request.hostname}:{os.getpid()}")


@shared_task(name="annotator.stages.tasks.sweep_lost_work", acks_late=False, ignore_result=True)
def sweep_lost_work() -> dict:
    """Celery beat's periodic sweep: work whose broker messages were lost is queued again."""
    from annotator.stages.sweep import sweep

    return sweep().as_dict()
