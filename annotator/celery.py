"""The Celery app (``annotator.celery:app``). Queues: ``embed`` (image encoder), ``generate``
(automatic masks), ``train``, ``export``; a GPU worker takes the first three, a CPU worker the rest.
Every task is late-acknowledged and re-queued when its worker dies, so the tasks must be idempotent."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")

QUEUES = ("embed", "generate", "train", "export")

app = Celery("annotator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
    task_default_queue="embed",
    task_routes={
        "annotator.images.tasks.*": {"queue": "embed"},
        "annotator.stages.tasks.*": {"queue": "generate"},
        "annotator.training.tasks.*": {"queue": "train"},
        "annotator.suggestions.tasks.*": {"queue": "train"},
        "annotator.exports.tasks.*": {"queue": "export"},
    },
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_track_started=True,
    worker_prefetch_multiplier=1,  # long tasks: a worker holds only what it is running
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    timezone="UTC",
)
app.autodiscover_tasks()
