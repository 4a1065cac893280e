"""Stages 2 and 3 of the data engine as exactly-once work.

A GenerationRun holds one GenerationItem per image. A worker *claims* an item (short transaction:
pending/running → running, attempts + 1), computes its masks outside any transaction, and
*finishes* it in ONE transaction that locks the item, writes all its masks and marks it done. A
retried or duplicated task either finds the item done (no-op) or loses the race at the finish
lock and discards its copy, so every image's masks are written exactly once, whatever the broker
or the workers do. A lost message is recovered by ``resume_run``, which re-queues unfinished items
(safe for the same reason).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from annotator.images.models import Image, ImageStatus, Split
from annotator.masks.models import Mask, MaskSource, MaskStatus
from annotator.projects.models import Project, Stage
from annotator.stages.generation import BadImage, check_parameters, record_fields, run_generator
from annotator.stages.models import GenerationItem, GenerationMode, GenerationRun, PrefillOrigin
from annotator.training.models import JobStatus
from annotator.training.services import model_version_for
from annotator.training.triggers import masks_accepted

log = logging.getLogger(__name__)

# Errors worth retrying: the database or a connection blinked. Everything else fails the item.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)
UNFINISHED = (JobStatus.PENDING, JobStatus.RUNNING)
MASK_BATCH = 1000
FILTER_KEYS = ("status", "split", "ids")
MODE_OF_STAGE = {Stage.SEMI_AUTOMATIC: GenerationMode.SEMI, Stage.FULLY_AUTOMATIC: GenerationMode.AUTO}
STAGE_OF_MODE = {mode: stage for stage, mode in MODE_OF_STAGE.items()}


def max_attempts() -> int:
    return int(getattr(settings, "MASKMILL_GENERATE_MAX_ATTEMPTS", 5))


# --- which images ----------------------------------------------------------------------------------


def parse_filter(raw: Any) -> dict[str, Any]:
    """A normalised image filter ``{status: [...], split: str, ids: [...]}``; ValidationError on bad keys."""
    if raw in (None, "", {}):
        return {}
    if not isinstance(raw, dict):
        raise ValidationError({"filter": "must be an object with keys status, split, ids"})
    unknown = sorted(set(raw) - set(FILTER_KEYS))
    if unknown:
        raise ValidationError(
            {"filter": f"unknown key(s) {', '.join(unknown)}; use {', '.join(FILTER_KEYS)}"}
        )
    clean: dict[str, Any] = {}
    if raw.get("status"):
        statuses = raw["status"].split(",") if isinstance(raw["status"], str) else list(raw["status"])
        bad = [s for s in statuses if s not in ImageStatus.values]
        if bad:
            bad_text, known = ", ".join(map(str, bad)), ", ".join(ImageStatus.values)
            raise ValidationError({"filter": f"unknown image status {bad_text}; one of {known}"})
        clean["status"] = statuses
    if raw.get("split"):
        if raw["split"] not in Split.values:
            raise ValidationError(
                {"filter": f"unknown split {raw['split']!r}; one of {', '.join(Split.values)}"}
            )
        clean["split"] = raw["split"]
    if raw.get("ids") not in (None, "", []):
        ids = raw["ids"].split(",") if isinstance(raw["ids"], str) else raw["ids"]
        try:
            clean["ids"] = sorted({int(i) for i in ids})
        except (TypeError, ValueError):
            raise ValidationError({"filter": "ids must be image ids (integers)"}) from None
    return clean


def images_matching(project: Project, image_filter: dict[str, Any]) -> QuerySet[Image]:
    images = Image.objects.filter(project=project)
    if "status" in image_filter:
        images = images.filter(status__in=image_filter["status"])
    if "split" in image_filter:
        images = images.filter(split=image_filter["split"])
    if "ids" in image_filter:
        images = images.filter(pk__in=image_filter["ids"])
    return images.order_by("id")


# --- stages ----------------------------------------------------------------------------------------


def set_stage(
    project: Project,
    stage: str,
    *,
    user: AbstractBaseUser | None = None,
    image_filter: Any = None,
    generate: bool = True,
) -> GenerationRun | None:
    """Move the project (no filter) or a filtered set of its images into ``stage``.

    Without a filter the project's stage changes and every image follows it (per-image overrides
    are cleared). With a filter only those images move (``Image.stage``) and only they get the
    stage's generation. Entering semi-automatic pre-fills the images (default: those waiting for an
    annotator); entering fully automatic starts a GenerationRun (default: every image). Returns the
    run started, if any.
    """
    if stage not in Stage.values:
        raise ValidationError({"stage": f"unknown stage {stage!r}; one of {', '.join(Stage.values)}"})
    image_filter = parse_filter(image_filter)
    with transaction.atomic():
        if image_filter:
            # The images carry the stage themselves (Image.stage overrides the project's).
            Image.objects.filter(pk__in=images_matching(project, image_filter).values("pk")).update(
                stage=stage
            )
        else:
            project.stage = stage
            project.save(update_fields=["stage", "updated_at"])
            Image.objects.filter(project=project).exclude(stage="").update(stage="")
    mode = MODE_OF_STAGE.get(stage)
    if mode is None or not generate:
        return None
    if mode == GenerationMode.SEMI and not image_filter:
        image_filter = {"status": [ImageStatus.NEW, ImageStatus.NEEDS_REWORK]}
    return start_run(project, mode, image_filter=image_filter, user=user)


def run_parameters(project: Project, mode: str) -> dict[str, Any]:
    """What a run is fixed to at its start, so later edits of the project change only later runs."""
    stage = STAGE_OF_MODE[mode]
    try:
        generator = check_parameters(project.generation_params(stage))
    except ValueError as exc:
        raise ValidationError({"settings": f"generation.{stage}: {exc}"}) from exc
    if mode == GenerationMode.SEMI:
        mask_status = MaskStatus.PROPOSED
    else:
        mask_status = project.setting("automatic_mask_status")
        if mask_status not in (MaskStatus.ACCEPTED, MaskStatus.PROPOSED):
            raise ValidationError({"settings": "automatic_mask_status must be 'accepted' or 'proposed'"})
    return {"generator": generator, "mask_status": mask_status}


def start_run(
    project: Project,
    mode: str,
    *,
    image_filter: Any = None,
    user: AbstractBaseUser | None = None,
    enqueue: bool = True,
) -> GenerationRun:
    """A GenerationRun over the project's matching images, its items queued on ``generate``.

    Images already done (or being done) in this mode by the same model version are left out, so
    starting the same run twice does no work twice; a run with nothing left is done at once.
    """
    if mode not in GenerationMode.values:
        raise ValidationError({"mode": f"unknown mode {mode!r}; one of {', '.join(GenerationMode.values)}"})
    image_filter = parse_filter(image_filter)
    model_version = model_version_for(project)
    if model_version is None:
        raise ValidationError(
            {
                "model": "no model is configured for automatic generation: set MASKMILL_MODEL_TYPE and "
                "MASKMILL_CHECKPOINT, or give the project an active model version"
            }
        )
    parameters = run_parameters(project, mode)
    with transaction.atomic():
        # One run creation at a time per project, so two concurrent starts cannot both take an image.
        Project.objects.select_for_update().filter(pk=project.pk).first()
        taken = GenerationItem.objects.filter(
            run__project=project,
            run__mode=mode,
            run__model_version=model_version,
            status__in=(*UNFINISHED, JobStatus.DONE),
        ).values("image_id")
        image_ids = list(
            images_matching(project, image_filter).exclude(pk__in=taken).values_list("pk", flat=True)
        )
        run = GenerationRun.objects.create(
            project=project,
            mode=mode,
            model_version=model_version,
            parameters=parameters,
            filter=image_filter,
            total=len(image_ids),
            created_by=user if user is not None and user.is_authenticated else None,
        )
        GenerationItem.objects.bulk_create(
            [GenerationItem(run=run, image_id=image_id) for image_id in image_ids], batch_size=MASK_BATCH
        )
        if not image_ids:
            now = timezone.now()
            GenerationRun.objects.filter(pk=run.pk).update(
                status=JobStatus.DONE, started_at=now, finished_at=now
            )
            run.refresh_from_db()
        elif enqueue:
            queue_items(run.pk)
    log.info("generation run %s (%s) on project %s: %s images", run.pk, mode, project.pk, len(image_ids))
    return run


def queue_items(run_id: int, statuses: tuple[str, ...] = (JobStatus.PENDING,)) -> int:
    """Send one ``generate_item`` task per item in ``statuses``, after the current transaction commits."""
    item_ids = list(
        GenerationItem.objects.filter(run_id=run_id, status__in=statuses).values_list("pk", flat=True)
    )

    def send() -> None:
        from annotator.stages.tasks import generate_item

        for item_id in item_ids:
            generate_item.apply_async((item_id,), queue="generate")

    transaction.on_commit(send)
    return len(item_ids)


def cancel_run(run: GenerationRun) -> GenerationRun:
    """Stop a run: its pending items are cancelled; items already computing finish and are kept."""
    with transaction.atomic():
        run = GenerationRun.objects.select_for_update().get(pk=run.pk)
        if run.status in (JobStatus.DONE, JobStatus.CANCELLED):
            return run
        GenerationItem.objects.filter(run=run, status=JobStatus.PENDING).update(status=JobStatus.CANCELLED)
        run.status = JobStatus.CANCELLED
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "finished_at"])
    return run


def resume_run(run: GenerationRun, *, retry_failed: bool = False) -> int:
    """Queue the run's unfinished items again (cancelled ones too; failed ones if asked).

    Also the recovery after a broker lost its messages: an item queued twice is still processed
    once. Returns how many items were queued.
    """
    with transaction.atomic():
        run = GenerationRun.objects.select_for_update().get(pk=run.pk)
        again = [JobStatus.CANCELLED]
        if retry_failed:
            again.append(JobStatus.FAILED)
            retried = GenerationItem.objects.filter(run=run, status=JobStatus.FAILED).update(
                status=JobStatus.PENDING, attempts=0, error=""
            )
            run.failed = F("failed") - retried
        GenerationItem.objects.filter(run=run, status=JobStatus.CANCELLED).update(status=JobStatus.PENDING)
        queued = queue_items(run.pk, UNFINISHED)
        run.status = JobStatus.RUNNING if queued else JobStatus.DONE
        run.finished_at = None if queued else (run.finished_at or timezone.now())
        run.save(update_fields=["status", "finished_at", "failed"])
    return queued


# --- one item, exactly once ------------------------------------------------------------------------


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
        if run.status == JobStatus.PENDING:
            GenerationRun.objects.filter(pk=run.pk, status=JobStatus.PENDING).update(
                status=JobStatus.RUNNING, started_at=now
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

    if not with_ids and connection.vendor == "postgresql" and getattr(settings, "MASKMILL_MASK_COPY", True):
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


def segmentation_sha1(rle: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(rle, sort_keys=True).encode()).hexdigest()


# --- images arriving while a project is semi-automatic -------------------------------------------

INBOX_FILTER = {"new_images": True}


def prefill_new_images(project_id: int, image_ids: list[int]) -> GenerationRun | None:
    """Pre-fill images ingested while the project is semi-automatic.

    They join the project's open "new images" pre-fill run (one per model version) instead of each
    starting a run of its own; images that already have a pre-fill item are skipped.
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None or project.stage != Stage.SEMI_AUTOMATIC:
        return None
    model_version = model_version_for(project)
    if model_version is None:
        log.info("pre-fill: project %s has no model; new images are not pre-filled", project_id)
        return None
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        taken = GenerationItem.objects.filter(
            run__project=project, run__mode=GenerationMode.SEMI, run__model_version=model_version
        ).values("image_id")
        fresh = list(
            Image.objects.filter(project=project, pk__in=image_ids)
            .exclude(pk__in=taken)
            .values_list("pk", flat=True)
        )
        if not fresh:
            return None
        run = (
            GenerationRun.objects.select_for_update()
            .filter(
                project=project, mode=GenerationMode.SEMI, model_version=model_version, status__in=UNFINISHED
            )
            .filter(filter=INBOX_FILTER)
            .first()
        )
        if run is None:
            run = GenerationRun.objects.create(
                project=project,
                mode=GenerationMode.SEMI,
                model_version=model_version,
                parameters=run_parameters(project, GenerationMode.SEMI),
                filter=INBOX_FILTER,
            )
        items = GenerationItem.objects.bulk_create([GenerationItem(run=run, image_id=pk) for pk in fresh])
        GenerationRun.objects.filter(pk=run.pk).update(total=F("total") + len(items))
        new_ids = [item.pk for item in items]

        def send() -> None:
            from annotator.stages.tasks import generate_item

            for item_id in new_ids:
                generate_item.apply_async((item_id,), queue="generate")

        transaction.on_commit(send, robust=True)
    run.refresh_from_db()
    return run
