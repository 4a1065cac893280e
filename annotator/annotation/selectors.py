"""Reads of stage 1: the annotator and review queues, an annotator's previous image, and the
dashboard's figures."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Case, Count, Exists, IntegerField, OuterRef, Q, QuerySet, Value, When
from django.utils import timezone

from annotator.annotation.models import AnnotationSession
from annotator.images.models import QUEUE_STATUSES, Image, ImageStatus
from annotator.masks.models import Mask, MaskSource, MaskStatus
from annotator.projects.models import Project

DONE_STATUSES = (ImageStatus.ANNOTATED, ImageStatus.REVIEWED)
RUNNING = ("pending", "running")


def lease_free(now: datetime) -> Q:
    """Images nobody holds: never leased, or the lease ran out."""
    return Q(leased_by__isnull=True) | Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now)


def queue_candidates(project: Project, user: AbstractBaseUser) -> QuerySet[Image]:
    """Images the queue may hand to ``user``, best first: images sent back by review for this
    annotator's masks, other images sent back, then new ones (and ones whose lease ran out)."""
    now = timezone.now()
    own_rejected = Mask.objects.filter(image=OuterRef("pk"), status=MaskStatus.REJECTED, annotator=user)
    return (
        Image.objects.filter(project=project)
        .filter(Q(status__in=QUEUE_STATUSES) | Q(status=ImageStatus.IN_PROGRESS))
        .filter(lease_free(now))
        .annotate(
            priority=Case(
                When(Q(status=ImageStatus.NEEDS_REWORK) & Exists(own_rejected), then=Value(0)),
                When(status=ImageStatus.NEEDS_REWORK, then=Value(1)),
                default=Value(2),
                output_field=IntegerField(),
            )
        )
        .order_by("priority", "id")
    )


def previous_image(image: Image, user: AbstractBaseUser) -> Image | None:
    """The image of the user's visit before this one in the same project (to go back and fix it)."""
    earlier = (
        AnnotationSession.objects.filter(annotator=user, project_id=image.project_id)
        .exclude(image_id=image.pk)
        .order_by("-started_at", "-id")
        .values_list("image_id", flat=True)
        .first()
    )
    return Image.objects.filter(pk=earlier).first() if earlier is not None else None


def review_queue(project: Project) -> QuerySet[Image]:
    """Annotated images waiting for a reviewer, oldest first."""
    return (
        Image.objects.filter(project=project, status=ImageStatus.ANNOTATED)
        .annotate(accepted_masks=Count("masks", filter=Q(masks__status=MaskStatus.ACCEPTED)))
        .order_by("id")
    )


def next_for_review(project: Project, after: int | None = None) -> Image | None:
    images = review_queue(project)
    if after is not None:
        later = images.filter(pk__gt=after).first()
        return later or images.exclude(pk=after).first()
    return images.first()


def _median(values: list[float]) -> float | None:
    return round(float(statistics.median(values)), 2) if values else None


def effort_by(project: Project, group: str) -> list[dict[str, Any]]:
    """Median seconds and clicks per accepted human-made mask, by ``model_version`` or ``annotator``
    (the SA-1B figure: time per mask falling as the model is retrained). Groups in creation order."""
    field = {"model_version": "model_version", "annotator": "annotator"}[group]
    rows = (
        Mask.objects.filter(
            project=project, status=MaskStatus.ACCEPTED, source__in=(MaskSource.MANUAL, MaskSource.SEMI)
        )
        .exclude(seconds__isnull=True)
        .order_by(f"{field}_id", "id")
        .values_list(f"{field}_id", "seconds", "clicks")
    )
    seconds: dict[Any, list[float]] = defaultdict(list)
    clicks: dict[Any, list[float]] = defaultdict(list)
    for key, secs, count in rows.iterator(chunk_size=5000):
        seconds[key].append(secs)
        if count is not None:
            clicks[key].append(count)
    names = _names(group, [k for k in seconds if k is not None])
    return [
        {
            "id": key,
            "name": names.get(
                key, "classic segmenter (no model)" if group == "model_version" else "(deleted user)"
            ),
            "masks": len(seconds[key]),
            "median_seconds": _median(seconds[key]),
            "median_clicks": _median(clicks[key]),
        }
        for key in seconds
    ]


def _names(group: str, keys: list[int]) -> dict[int, str]:
    if group == "model_version":
        from annotator.training.models import ModelVersion

        return {mv.pk: str(mv) for mv in ModelVersion.objects.filter(pk__in=keys)}
    from django.contrib.auth import get_user_model

    return dict(get_user_model().objects.filter(pk__in=keys).values_list("pk", "username"))


def progress(project: Project) -> dict[str, Any]:
    counts = dict(
        Image.objects.filter(project=project)
        .order_by()
        .values("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    total = sum(counts.values())
    done = sum(counts.get(s, 0) for s in DONE_STATUSES)
    masks = Mask.objects.filter(project=project, status=MaskStatus.ACCEPTED, image__status__in=DONE_STATUSES)
    per_image = dict(masks.order_by().values("image_id").annotate(n=Count("id")).values_list("image_id", "n"))
    histogram: dict[int, int] = defaultdict(int)
    for count in per_image.values():
        histogram[min(count, 50)] += 1
    histogram[0] += done - len(per_image)
    return {
        "images_total": total,
        "images_done": done,
        "by_status": {s: counts.get(s, 0) for s in ImageStatus.values},
        "accepted_masks_on_done_images": sum(per_image.values()),
        "masks_per_image": round(sum(per_image.values()) / done, 2) if done else None,
        "masks_per_image_histogram": dict(sorted(histogram.items())) if done else {},
        "rejected_masks": Mask.objects.filter(project=project, status=MaskStatus.REJECTED).count(),
    }


def running_jobs(project: Project) -> list[dict[str, Any]]:
    """Generation runs, exports and training runs that are pending or running, with progress."""
    from annotator.exports.models import Export
    from annotator.stages.models import GenerationRun
    from annotator.training.models import TrainingRun

    jobs: list[dict[str, Any]] = []
    for run in GenerationRun.objects.filter(project=project, status__in=RUNNING).order_by("id"):
        fraction = (run.done + run.failed) / run.total if run.total else 0.0
        jobs.append(
            {
                "kind": f"generation ({run.get_mode_display()})",
                "id": run.pk,
                "status": run.status,
                "progress": round(fraction, 4),
                "detail": f"{run.done}/{run.total} images, {run.failed} failed",
            }
        )
    for export in Export.objects.filter(project=project, status__in=RUNNING).order_by("id"):
        jobs.append(
            {
                "kind": f"export ({export.get_format_display()})",
                "id": export.pk,
                "status": export.status,
                "progress": round(float(export.progress), 4),
                "detail": "",
            }
        )
    for run in TrainingRun.objects.filter(project=project, status__in=RUNNING).order_by("id"):
        jobs.append(
            {
                "kind": f"training ({run.get_trigger_display()})",
                "id": run.pk,
                "status": run.status,
                "progress": None,
                "detail": "",
            }
        )
    return jobs  # fmt: skip


def dashboard(project: Project) -> dict[str, Any]:
    return {
        "project": project.pk,
        "progress": progress(project),
        "effort_by_model_version": effort_by(project, "model_version"),
        "effort_by_annotator": effort_by(project, "annotator"),
        "jobs": running_jobs(project),
        "seconds_per_mask_hint": project.setting("seconds_per_mask_hint"),
    }
