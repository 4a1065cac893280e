"""Reads for the stages: which images a filter selects (and the filter's validation), a run's
progress, and the semi-automatic report (pre-filled, kept, fixed, rejected, added) computed from
the mask rows themselves."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet, Sum
from django.utils import timezone

from annotator.images.models import Image, ImageStatus, Split
from annotator.jobs import JobStatus
from annotator.masks.models import Mask, MaskSource, MaskStatus
from annotator.params import BadNumber, parse_id
from annotator.projects.models import Project
from annotator.stages.models import GenerationItem, GenerationRun, segmentation_sha1

FILTER_KEYS = ("status", "split", "ids")
MAX_FILTER_IDS = 100_000


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
    if raw.get("status") not in (None, "", []):
        statuses = _text_list(raw["status"], "status")
        bad = [s for s in statuses if s not in ImageStatus.values]
        if bad:
            bad_text, known = ", ".join(map(str, bad)), ", ".join(ImageStatus.values)
            raise ValidationError({"filter": f"unknown image status {bad_text}; one of {known}"})
        clean["status"] = statuses
    if raw.get("split") not in (None, ""):
        if not isinstance(raw["split"], str) or raw["split"] not in Split.values:
            raise ValidationError(
                {"filter": f"unknown split {raw['split']!r}; one of {', '.join(Split.values)}"}
            )
        clean["split"] = raw["split"]
    if raw.get("ids") not in (None, "", []):
        ids = _text_list(raw["ids"], "ids", numbers=True)
        if len(ids) > MAX_FILTER_IDS:
            raise ValidationError({"filter": f"at most {MAX_FILTER_IDS} ids"})
        try:
            clean["ids"] = sorted({parse_id(i) for i in ids})
        except BadNumber as exc:
            raise ValidationError({"filter": f"ids must be image ids: {exc}"}) from None
    return clean


def _text_list(value: Any, key: str, numbers: bool = False) -> list:
    """A filter value given as "a,b" or a JSON list of strings (or of ints, for ids)."""
    if isinstance(value, str):
        return value.split(",")
    allowed = (str, int) if numbers else (str,)
    if isinstance(value, list) and all(isinstance(v, allowed) and not isinstance(v, bool) for v in value):
        return value
    kind = "ids" if numbers else "strings"
    raise ValidationError({"filter": f"{key} must be a comma-separated string or a list of {kind}"})


def images_matching(project: Project, image_filter: dict[str, Any]) -> QuerySet[Image]:
    images = Image.objects.filter(project=project)
    if "status" in image_filter:
        images = images.filter(status__in=image_filter["status"])
    if "split" in image_filter:
        images = images.filter(split=image_filter["split"])
    if "ids" in image_filter:
        images = images.filter(pk__in=image_filter["ids"])
    return images.order_by("id")


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
