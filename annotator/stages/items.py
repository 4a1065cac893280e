"""One GenerationItem, exactly once: the work of one ``generate_item`` task.

A worker *claims* an item (short transaction: pending/running → running, attempts + 1), computes its
masks outside any transaction, and *finishes* it in ONE transaction that locks the item, writes all
its masks and marks it done. A retried or duplicated task either finds the item done (no-op) or
loses the race at the finish lock and discards its copy, so every image's masks are written exactly
once, whatever the broker or the workers do. A lost message is recovered by
``services.resume_run``, which re-queues unfinished items (safe for the same reason).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotator.images.models import Image
from annotator.jobs import TRANSIENT_ERRORS, UNFINISHED, JobStatus
from annotator.masks.models import Mask, MaskSource, MaskStatus
from annotator.stages.generation import BadImage, record_fields, run_generator
from annotator.stages.models import (
    GenerationItem,
    GenerationMode,
    GenerationRun,
    PrefillOrigin,
    segmentation_sha1,
)
from annotator.training.triggers import masks_accepted

log = logging.getLogger(__name__)

MASK_BATCH = 1000


def max_attempts() -> int:
    """Claims of one item before it fails: a worker lost or timed out on it each time."""
    return settings.MASKMILL_GENERATE_MAX_ATTEMPTS


@dataclass
class Claim:
    item: GenerationItem
    run: GenerationRun
    image: Image


def claim_item(item_id: int, worker: str) -> Claim | None:
    """Take the item for computing, or None when there is nothing to do (done, failed, cancelled,
    gone, or given up after too many attempts)."""
    with transaction.atomic():
        item = GenerationItem.objects.select_for_update().filter(pk=item_id).first()
        if item is None:
            log.info("generate: item %s no longer exists", item_id)
            return None
        if item.status not in UNFINISHED:
            log.info("generate: item %s is already %s; nothing to do", item_id, item.status)
            return None
        run = GenerationRun.objects.get(pk=item.run_id)
        if run.status == JobStatus.CANCELLED:
            item.status = JobStatus.CANCELLED
            item.save(update_fields=["status"])
            return None
        if item.attempts >= max_attempts():
            _fail_locked(
                item,
                run,
                f"gave up after {item.attempts} attempts: the worker was lost or the task timed out each time"
                + (f" (last error: {item.error})" if item.error else ""),
            )
            return None
        now = timezone.now()
        item.status = JobStatus.RUNNING
        item.attempts += 1
        item.worker = worker[:200]
        item.started_at = now
        item.save(update_fields=["status", "attempts", "worker", "started_at"])
        if run.status == JobStatus.PENDING or run.started_at is None:
            # The first claim starts the run's clock, also of a run resumed before anything was
            # claimed (resume marks it running): images/hour and the ETA count from here.
            GenerationRun.objects.filter(pk=run.pk, status__in=UNFINISHED).update(
                status=JobStatus.RUNNING, started_at=Coalesce(F("started_at"), Value(now))
            )
        image = Image.objects.filter(pk=item.image_id).first()
    if image is None:
        fail_item(item_id, f"image {item.image_id} was deleted")
        return None
    return Claim(item=item, run=run, image=image)


def finish_item(claim: Claim, fields: list[dict[str, Any]], seconds: float) -> bool:
    """Write the item's masks and mark it done, in one transaction. False (nothing written) when
    another delivery of the same task finished it first."""
    run, image = claim.run, claim.image
    mode = run.mode
    mask_status = run.parameters.get("mask_status", MaskStatus.PROPOSED)
    source = MaskSource.SEMI if mode == GenerationMode.SEMI else MaskSource.AUTO
    for values in fields:
        if values["segmentation"]["size"] != [image.height, image.width]:
            raise ValueError(
                f"generator returned a {values['segmentation']['size']} mask for a "
                f"{image.height}x{image.width} image"
            )
    with transaction.atomic():
        item = GenerationItem.objects.select_for_update().get(pk=claim.item.pk)
        if item.status not in UNFINISHED:
            log.info("generate: item %s was finished by another delivery; discarding this copy", item.pk)
            return False
        locked_run = GenerationRun.objects.select_for_update().get(pk=run.pk)
        now = timezone.now()
        masks = [
            Mask(
                project_id=image.project_id,
                image_id=image.pk,
                source=source,
                status=mask_status,
                model_version_id=run.model_version_id,
                generation_item_id=item.pk,
                accepted_at=now if mask_status == MaskStatus.ACCEPTED else None,
                **values,
            )
            for values in fields
        ]
        write_masks(masks, with_ids=mode == GenerationMode.SEMI)
        if masks and mask_status == MaskStatus.ACCEPTED:
            masks_accepted(image.project_id)  # the retraining threshold may count automatic masks
        if mode == GenerationMode.SEMI:
            PrefillOrigin.objects.bulk_create(
                [
                    PrefillOrigin(mask_id=m.pk, segmentation_sha1=segmentation_sha1(m.segmentation))
                    for m in masks
                ],
                batch_size=MASK_BATCH,
            )
        item.status = JobStatus.DONE
        item.mask_count = len(masks)
        item.error = ""
        item.seconds = seconds
        item.finished_at = now
        item.save(update_fields=["status", "mask_count", "error", "seconds", "finished_at"])
        locked_run.done = F("done") + 1
        locked_run.save(update_fields=["done"])
        _close_run_if_finished(locked_run)
    return True


def write_masks(masks: list[Mask], *, with_ids: bool) -> None:
    """Insert in batches (never one query per mask); COPY on PostgreSQL when ids are not needed."""
    if not masks:
        return
    from django.db import connection

    if not with_ids and connection.vendor == "postgresql" and settings.MASKMILL_MASK_COPY:
        copy_masks(masks)
    else:
        Mask.objects.bulk_create(masks, batch_size=MASK_BATCH)


COPY_COLUMNS = (
    "project_id", "image_id", "segmentation", "bbox", "area", "predicted_iou", "stability_score",
    "point_coords", "crop_box", "source", "status", "model_version_id", "generation_item_id",
    "version", "review_note", "accepted_at", "created_at", "updated_at",
)  # fmt: skip


def copy_masks(masks: list[Mask]) -> None:
    """PostgreSQL COPY ... FROM STDIN: one round trip for all of an image's masks."""
    from django.db import connection
    from psycopg.types.json import Jsonb

    now = timezone.now()
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw.copy(f"COPY {Mask._meta.db_table} ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
            for m in masks:
                copy.write_row(
                    (
                        m.project_id, m.image_id, Jsonb(m.segmentation), Jsonb(m.bbox), m.area,
                        m.predicted_iou, m.stability_score, Jsonb(m.point_coords), Jsonb(m.crop_box),
                        m.source, m.status, m.model_version_id, m.generation_item_id, 1, "",
                        m.accepted_at, now, now,
                    )
                )  # fmt: skip


def fail_item(item_id: int, error: str) -> bool:
    """Mark the item failed with ``error`` (the run goes on). False when it had already finished."""
    with transaction.atomic():
        item = GenerationItem.objects.select_for_update().filter(pk=item_id).first()
        if item is None or item.status not in UNFINISHED:
            return False
        run = GenerationRun.objects.select_for_update().get(pk=item.run_id)
        _fail_locked(item, run, error)
    return True


def _fail_locked(item: GenerationItem, run: GenerationRun, error: str) -> None:
    log.warning("generate: item %s (image %s) failed: %s", item.pk, item.image_id, error)
    item.status = JobStatus.FAILED
    item.error = error[:4000]
    item.finished_at = timezone.now()
    item.save(update_fields=["status", "error", "finished_at"])
    GenerationRun.objects.filter(pk=run.pk).update(failed=F("failed") + 1)
    _close_run_if_finished(run)


def _close_run_if_finished(run: GenerationRun) -> None:
    if GenerationItem.objects.filter(run_id=run.pk, status__in=UNFINISHED).exists():
        return
    GenerationRun.objects.filter(pk=run.pk, status__in=UNFINISHED).update(
        status=JobStatus.DONE, finished_at=timezone.now()
    )


def process_item(item_id: int, worker: str = "") -> str:
    """The whole of one ``generate_item`` task: claim, compute, finish. Returns the outcome
    (``done``, ``duplicate``, ``skipped``, ``failed``). Transient errors propagate (the task retries);
    any other error fails this item with its reason and leaves the run going."""
    claim = claim_item(item_id, worker)
    if claim is None:
        return "skipped"
    try:
        result = run_generator(claim.image, claim.run.model_version, claim.run.parameters["generator"])
        fields = [record_fields(record) for record in result.records]
        written = finish_item(claim, fields, result.seconds["total"])
    except TRANSIENT_ERRORS:
        raise
    except BadImage as exc:
        fail_item(item_id, str(exc))
        return "failed"
    except Exception as exc:  # any other error is this image's problem, not the run's
        from celery.exceptions import SoftTimeLimitExceeded

        if isinstance(exc, SoftTimeLimitExceeded):
            message = f"image {claim.image.pk} took longer than the task's soft time limit"
        else:
            message = f"image {claim.image.pk}: {type(exc).__name__}: {exc}"
        log.exception("generate: item %s failed", item_id)
        fail_item(item_id, message)
        return "failed"
    return "done" if written else "duplicate"
