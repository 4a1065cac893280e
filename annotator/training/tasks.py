"""Celery tasks of training (queue ``train``). Thin: the work is in ``runs``.

Late acknowledgement with ``reject_on_worker_lost``: a worker killed mid-run gives the message
back and the run starts again on the next worker (``runs.execute_run`` finds it running with a
stale heartbeat); a second delivery while the first is alive waits instead of training twice.
"""

from __future__ import annotations

import logging
import os

from celery import shared_task
from django.conf import settings

from annotator.training import runs

log = logging.getLogger(__name__)

TIME_LIMIT = settings.MASKMILL_TRAIN_TIME_LIMIT


@shared_task(
    bind=True,
    name="annotator.training.tasks.train_run",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=TIME_LIMIT,
    soft_time_limit=max(TIME_LIMIT - 60, 60),
    autoretry_for=runs.TRANSIENT_ERRORS,
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
)
def train_run(self, run_id: int) -> str:
    """Train, evaluate and gate one TrainingRun; returns its status."""
    try:
        return runs.execute_run(run_id, worker=f"{self.request.hostname}:{os.getpid()}")
    except runs.RunBusy as busy:
        if self.request.is_eager:
            return "running"
        raise self.retry(countdown=busy.wait, max_retries=self.request.retries + 1) from busy


@shared_task(name="annotator.training.tasks.scheduled_training", acks_late=True, reject_on_worker_lost=True)
def scheduled_training(project_id: int) -> str:
    """What the project's beat schedule sends: ask for a run; say why when there is none."""
    from annotator.training.triggers import scheduled

    return scheduled(project_id)
