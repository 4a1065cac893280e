"""Reads for the stages: a run's progress, and the semi-automatic report (pre-filled, kept, fixed,
rejected, added) computed from the mask rows themselves."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db.models import Count, Sum
from django.utils import timezone

from annotator.jobs import JobStatus
from annotator.masks.models import Mask, MaskSource, MaskStatus
from annotator.stages.models import GenerationItem, GenerationRun


def run_progress(run: GenerationRun) -> dict[str, Any]:
    """Counts by item status, masks written, images per hour so far and the ETA at that rate."""
    by_status = dict(
        GenerationItem.objects.filter(run=run)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    masks = GenerationItem.objects.filter(run=run).aggregate(n=Sum("mask_count"))["n"] or 0
    finished = by_status.get(JobStatus.DONE, 0) + by_status.get(JobStatus.FAILED, 0)
    remaining = by_status.get(JobStatus.PENDING, 0) + by_status.get(JobStatus.RUNNING, 0)
    elapsed = None
    images_per_hour = None
    eta_seconds = None
    if run.started_at is not None:
        end = run.finished_at or timezone.now()
        elapsed = max((end - run.started_at).total_seconds(), 0.0)
        if elapsed > 0 and finished:
            images_per_hour = finished / elapsed * 3600
            if run.status == JobStatus.RUNNING:
                eta_seconds = remaining / (finished / elapsed)
    return {
        "total": run.total,
        "done": by_status.get(JobStatus.DONE, 0),
        "failed": by_status.get(JobStatus.FAILED, 0),
        "pending": by_status.get(JobStatus.PENDING, 0),
        "running": by_status.get(JobStatus.RUNNING, 0),
        "cancelled": by_status.get(JobStatus.CANCELLED, 0),
        "masks": masks,
        "percent": round(100 * finished / run.total, 1) if run.total else 100.0,
        "elapsed_seconds": elapsed,
        "images_per_hour": images_per_hour,
        "eta_seconds": eta_seconds,
    }


def failed_items(run: GenerationRun, limit: int = 100) -> list[dict[str, Any]]:
    return list(
        GenerationItem.objects.filter(run=run, status=JobStatus.FAILED)
        .order_by("id")
        .values("id", "image_id", "attempts", "error")[:limit]
    )


def prefill_report(image_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per image: ``prefilled`` (semi masks proposed by the model), ``kept`` (accepted exactly as
    proposed), ``fixed`` (accepted after its segmentation was edited), ``rejected``, ``pending``
    (still proposed) and ``added`` (masks the annotators drew themselves, not rejected)."""
    from annotator.stages.services import segmentation_sha1

    report: dict[int, dict[str, int]] = {
        image_id: dict.fromkeys(("prefilled", "kept", "fixed", "rejected", "pending", "added"), 0)
        for image_id in image_ids
    }
    semi = Mask.objects.filter(image_id__in=image_ids, source=MaskSource.SEMI).values_list(
        "image_id", "status", "segmentation", "prefill_origin__segmentation_sha1"
    )
    for image_id, status, segmentation, original in semi.iterator(chunk_size=2000):
        row = report[image_id]
        row["prefilled"] += 1
        if status == MaskStatus.REJECTED:
            row["rejected"] += 1
        elif status == MaskStatus.PROPOSED:
            row["pending"] += 1
        elif original is not None and segmentation_sha1(segmentation) == original:
            row["kept"] += 1
        else:
            row["fixed"] += 1
    added = (
        Mask.objects.filter(image_id__in=image_ids, source=MaskSource.MANUAL)
        .exclude(status=MaskStatus.REJECTED)
        .values_list("image_id")
        .annotate(n=Count("id"))
    )
    for image_id, n in added:
        report[image_id]["added"] = n
    return report


def report_totals(rows: dict[int, dict[str, int]]) -> dict[str, Any]:
    totals: dict[str, Any] = defaultdict(int)
    for row in rows.values():
        for key, value in row.items():
            totals[key] += value
    images = len(rows)
    totals["images"] = images
    final = totals["kept"] + totals["fixed"] + totals["added"]
    totals["masks_per_image"] = round(final / images, 2) if images else 0.0
    return dict(totals)


def prefilled_image_ids(project_id: int) -> Any:
    """Ids of the project's images that received a semi-automatic pre-fill (a done SEMI item)."""
    return (
        GenerationItem.objects.filter(run__project_id=project_id, run__mode="semi", status=JobStatus.DONE)
        .values_list("image_id", flat=True)
        .distinct()
        .order_by("image_id")
    )
