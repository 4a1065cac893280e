"""Stages 2 and 3 of the data engine: moving a project (or some of its images) between stages, and
generation runs (start, cancel, resume, the semi-automatic inbox of new images).

A GenerationRun holds one GenerationItem per image; each item is one ``generate_item`` task, done
exactly once by ``items`` (claim, compute, finish). This module only creates runs and items and
queues their tasks (``enqueue_items``, the one place a task is sent); the task owns the retries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotator.images.models import Image, ImageStatus
from annotator.jobs import TRANSIENT_ERRORS, UNFINISHED, JobStatus  # noqa: F401  (older imports)
from annotator.masks.models import MaskStatus
from annotator.projects.models import Project, Stage
from annotator.stages.generation import check_parameters
from annotator.stages.items import (  # noqa: F401  (older imports name these here)
    MASK_BATCH,
    claim_item,
    fail_item,
    finish_item,
    process_item,
)
from annotator.stages.models import GenerationItem, GenerationMode, GenerationRun
from annotator.stages.selectors import images_matching, parse_filter
from annotator.stages.tasks import generate_item
from annotator.training.services import model_version_for

log = logging.getLogger(__name__)

MODE_OF_STAGE = {Stage.SEMI_AUTOMATIC: GenerationMode.SEMI, Stage.FULLY_AUTOMATIC: GenerationMode.AUTO}
STAGE_OF_MODE = {mode: stage for stage, mode in MODE_OF_STAGE.items()}
NOTHING_TO_DO = "nothing to do: every matching image is done or queued for this model version"


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
) -> GenerationRun | None:
    """A GenerationRun over the project's matching images, its items queued on ``generate``.

    Images already done (or being done) in this mode by the same model version are left out, so
    starting the same run twice does no work twice; with nothing left no run is created (None:
    "nothing to do"), so repeated starts leave no empty rows.
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
        if not image_ids:
            log.info("generation (%s) on project %s: nothing to do", mode, project.pk)
            return None
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
        if enqueue:
            queue_items(run.pk)
    log.info("generation run %s (%s) on project %s: %s images", run.pk, mode, project.pk, len(image_ids))
    return run


def queue_items(run_id: int, statuses: tuple[str, ...] = (JobStatus.PENDING,)) -> int:
    """Send one ``generate_item`` task per item in ``statuses``, after the current transaction commits."""
    item_ids = list(
        GenerationItem.objects.filter(run_id=run_id, status__in=statuses).values_list("pk", flat=True)
    )

    enqueue_items(item_ids)
    return len(item_ids)


def enqueue_items(item_ids: Iterable[int], *, robust: bool = False) -> None:
    """Send one ``generate_item`` task per item once the current transaction commits (a task sent
    earlier could run before its item exists for the worker). ``robust``: a broker error is logged
    instead of raised to the committing code (used where the caller is an ingest, not a user)."""
    ids = list(item_ids)

    def send() -> None:
        for item_id in ids:
            generate_item.apply_async((item_id,), queue="generate")

    transaction.on_commit(send, robust=robust)


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


# --- images arriving while a project is semi-automatic -------------------------------------------

INBOX_FILTER = {"new_images": True}


def prefill_ingested(project: Project, image_ids: list[int]) -> None:
    """Images just ingested (``images.services.ingest_files``) into a semi-automatic project are
    pre-filled like the ones already there, once their rows are committed."""
    if not image_ids or not Project.objects.filter(pk=project.pk, stage=Stage.SEMI_AUTOMATIC).exists():
        return
    ids = list(image_ids)
    transaction.on_commit(lambda: prefill_new_images(project.pk, ids), robust=True)


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
        enqueue_items([item.pk for item in items], robust=True)
    run.refresh_from_db()
    return run
