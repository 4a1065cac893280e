"""Celery task of exports (queue ``export``). Thin: ``services.run_export`` does the work.

Late acknowledgement with ``reject_on_worker_lost``: a worker killed mid-export gives the message
back and the next delivery continues from the files already written (finished SA-1B shards are
kept); the folder lock keeps a second delivery from writing beside a live run.
"""

from __future__ import annotations

import os

from celery import shared_task
from django.conf import settings

from annotator.exports import services
from annotator.jobs import TRANSIENT_ERRORS

TIME_LIMIT = settings.MASKMILL_EXPORT_TIME_LIMIT


@shared_task(
    bind=True,
    name="annotator.exports.tasks.run_export_task",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=TIME_LIMIT,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=8,
)
def run_export_task(self, export_id: int) -> str:
    export = services.run_export(export_id, worker=f"{self.request.hostname}:{os.getpid()}")
    return export.status
