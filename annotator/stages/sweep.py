"""The periodic sweep (celery beat, ``MASKMILL_SWEEP_INTERVAL``) that heals a broker which lost its
messages (Redis restarted without persistence, a purged queue): work the database says is due
but that no message will ever deliver is queued again, so a run always finishes on its own.

What counts as lost, per queue, and only while that queue holds no ready message (a message
still waiting there may be the one for the work, and a long queue is not a loss):

- ``generate``: an item still pending of an unfinished run created more than
  ``MASKMILL_SWEEP_PENDING_SECONDS`` ago, or running since longer than the task's hard time
  limit plus ``MASKMILL_SWEEP_GRACE_SECONDS`` (no live task can still hold it: the time limit
  would have killed it);
- ``embed``: an image older than ``MASKMILL_SWEEP_PENDING_SECONDS`` of a project with a model,
  without an embedding for that model's encoder and without a live claim on computing it.

Re-queued work stays exactly-once: an item's claim/finish transactions and an embedding's claim
make a second delivery finish the work or find it done (see ``items`` and ``images.embeddings``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from annotator.images.models import Embedding, EmbeddingClaim, Image
from annotator.jobs import UNFINISHED, JobStatus
from annotator.projects.models import Project
from annotator.stages.models import GenerationItem

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    items: int = 0
    embeddings: int = 0
    skipped: tuple[str, ...] = ()  # queues not swept: they still hold messages, or could not be asked

    def as_dict(self) -> dict[str, object]:
        return {"items": self.items, "embeddings": self.embeddings, "skipped": list(self.skipped)}


def queue_size(name: str) -> int | None:
    """Ready messages in the broker's queue ``name`` (None when the broker cannot be asked)."""
    from annotator.celery import app

    try:
        with app.connection_for_write() as connection:
            queue = app.amqp.queues[name](connection.default_channel)
            # Declared (with its binding) first: a broker restarted empty has neither, and a
            # message sent to an unbound queue's exchange would be dropped.
            queue.declare()
            return int(queue.queue_declare().message_count)  # not passive: Redis has no empty queues
    except Exception:
        log.warning("sweep: could not ask the broker for the size of queue %r", name, exc_info=True)
        return None


def lost_items(now=None) -> list[int]:
    now = now or timezone.now()
    pending_cutoff = now - timedelta(seconds=settings.MASKMILL_SWEEP_PENDING_SECONDS)
    running_cutoff = now - timedelta(
        seconds=settings.MASKMILL_GENERATE_TIME_LIMIT + settings.MASKMILL_SWEEP_GRACE_SECONDS
    )
    stalled = Q(status=JobStatus.PENDING, run__created_at__lt=pending_cutoff) | Q(
        status=JobStatus.RUNNING, started_at__lt=running_cutoff
    )
    return list(
        GenerationItem.objects.filter(stalled, run__status__in=UNFINISHED)
        .order_by("id")
        .values_list("pk", flat=True)[: settings.MASKMILL_SWEEP_BATCH]
    )


def images_missing_embeddings(now=None) -> list[int]:
    from annotator.training.services import model_version_for

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.MASKMILL_SWEEP_PENDING_SECONDS)
    wanted: list[int] = []
    for project in Project.objects.filter(images__created_at__lt=cutoff).distinct().order_by("id"):
        model_version = model_version_for(project)
        encoder_id = model_version.embedding_version_id if model_version is not None else None
        if encoder_id is None:
            continue  # the classic segmenter needs no embedding
        stored = Embedding.objects.filter(model_version_id=encoder_id).values("image_id")
        live = EmbeddingClaim.objects.filter(model_version_id=encoder_id, expires_at__gt=now)
        missing = (
            Image.objects.filter(project=project, created_at__lt=cutoff)
            .exclude(pk__in=stored)
            .exclude(pk__in=live.values("image_id"))
            .order_by("id")
        )
        wanted += missing.values_list("pk", flat=True)[: settings.MASKMILL_SWEEP_BATCH - len(wanted)]
        if len(wanted) >= settings.MASKMILL_SWEEP_BATCH:
            break
    return wanted


def sweep(now=None) -> SweepResult:
    """Queue again the generation items and embeddings that no message will deliver."""
    from annotator.images.tasks import embed
    from annotator.stages.tasks import generate_item

    result = SweepResult()
    skipped = []
    if queue_size("generate") == 0:
        item_ids = lost_items(now)
        for item_id in item_ids:
            generate_item.apply_async((item_id,), queue="generate")
        result.items = len(item_ids)
    else:
        skipped.append("generate")
    if queue_size("embed") == 0:
        image_ids = images_missing_embeddings(now)
        for image_id in image_ids:
            embed.apply_async((image_id,), queue="embed")
        result.embeddings = len(image_ids)
    else:
        skipped.append("embed")
    result.skipped = tuple(skipped)
    if result.items or result.embeddings:
        log.warning(
            "sweep: queued again %s generation items and %s embeddings whose messages were lost",
            result.items,
            result.embeddings,
        )
    return result
