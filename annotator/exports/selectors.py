"""Which images and masks an export holds: the one filter parser shared by the API, the page and
the ``export`` command, and the reads that feed the writers in bounded batches.

Reading goes by keyset pages of image ids (``id > last``), each with one query for its masks, so
memory stays flat in the number of images, no cursor or transaction is held while a writer works,
and a resumed export can start after any image.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from annotator.images.models import Image, ImageStatus, Split
from annotator.masks.models import Mask, MaskSource, MaskStatus
from annotator.projects.models import Project

DEFAULT_FILTER: dict[str, Any] = {"mask_status": [MaskStatus.ACCEPTED.value]}
LIST_KEYS = {
    "mask_status": MaskStatus.values,
    "source": MaskSource.values,
    "split": Split.values,
    "image_status": ImageStatus.values,
}
NUMBER_KEYS = ("min_predicted_iou", "min_stability")
MAX_ITEMS = 1000  # labels or model versions in one filter


def _as_list(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [
            str(v).strip() if isinstance(v, str | int) and not isinstance(v, bool) else None for v in value
        ]
        if None in items:
            raise ValidationError({key: "must be a list of names or a comma-separated string"})
    else:
        raise ValidationError({key: "must be a list of names or a comma-separated string"})
    items = [v for v in items if v]
    if len(items) > MAX_ITEMS:
        raise ValidationError({key: f"at most {MAX_ITEMS} values"})
    return sorted(set(items))


def parse_filter(data: Any) -> dict[str, Any]:
    """A filter from outside (JSON body, form fields, command options) as the canonical dict stored
    on the Export. Empty values are left out; ``mask_status`` defaults to accepted. Raises
    ValidationError naming each bad key."""
    if data in (None, ""):
        data = {}
    if not isinstance(data, dict):
        raise ValidationError({"filter": "must be an object"})
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    known = set(LIST_KEYS) | set(NUMBER_KEYS) | {"labels", "model_version", "created_after"}
    for key in sorted(set(data) - known):
        errors[key] = f"unknown filter key (use {', '.join(sorted(known))})"
    for key, allowed in LIST_KEYS.items():
        if data.get(key) in (None, "", []):
            continue
        try:
            values = _as_list(data[key], key)
        except ValidationError as exc:
            errors[key] = exc.messages[0]
            continue
        bad = [v for v in values if v not in allowed]
        if bad:
            errors[key] = f"{', '.join(bad)} not one of {', '.join(allowed)}"
        elif values:
            out[key] = values
    if data.get("labels") not in (None, "", []):
        try:
            out["labels"] = _as_list(data["labels"], "labels")
        except ValidationError as exc:
            errors["labels"] = exc.messages[0]
    if data.get("model_version") not in (None, "", []):
        try:
            versions = _as_list(data["model_version"], "model_version")
            if not all(v.isdigit() for v in versions):
                raise ValidationError("model versions are numeric ids")
            out["model_version"] = sorted(int(v) for v in versions)
        except ValidationError as exc:
            errors["model_version"] = exc.messages[0]
    for key in NUMBER_KEYS:
        if data.get(key) in (None, ""):
            continue
        try:
            number = float(data[key])
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(data[key], bool) or not 0.0 <= number <= 1.0:
            errors[key] = "must be a number from 0 to 1"
        else:
            out[key] = number
    if data.get("created_after") not in (None, ""):
        moment = _parse_moment(data["created_after"])
        if moment is None:
            errors["created_after"] = "must be an ISO date or date-time (2026-01-31 or 2026-01-31T12:00:00Z)"
        else:
            out["created_after"] = moment.isoformat()
    if errors:
        raise ValidationError(errors)
    out.setdefault("mask_status", list(DEFAULT_FILTER["mask_status"]))
    return out


def _parse_moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = parse_datetime(value.strip())
        if moment is None:
            day = parse_date(value.strip())
            moment = datetime(day.year, day.month, day.day) if day else None
    except ValueError:
        return None
    if moment is not None and timezone.is_naive(moment):
        moment = timezone.make_aware(moment, UTC)
    return moment


def masks_of(project: Project, flt: dict[str, Any]) -> QuerySet[Mask]:
    masks = Mask.objects.filter(project=project, status__in=flt["mask_status"])
    if "source" in flt:
        masks = masks.filter(source__in=flt["source"])
    if "labels" in flt:
        masks = masks.filter(label__name__in=flt["labels"])
    if "model_version" in flt:
        masks = masks.filter(model_version_id__in=flt["model_version"])
    if "min_predicted_iou" in flt:
        masks = masks.filter(predicted_iou__gte=flt["min_predicted_iou"])
    if "min_stability" in flt:
        masks = masks.filter(stability_score__gte=flt["min_stability"])
    if "created_after" in flt:
        masks = masks.filter(created_at__gte=datetime.fromisoformat(flt["created_after"]))
    return masks


def images_of(project: Project, flt: dict[str, Any]) -> QuerySet[Image]:
    """The images with at least one selected mask (an export holds annotations)."""
    images = Image.objects.filter(project=project)
    if "split" in flt:
        images = images.filter(split__in=flt["split"])
    if "image_status" in flt:
        images = images.filter(status__in=flt["image_status"])
    return images.filter(Exists(masks_of(project, flt).filter(image_id=OuterRef("pk"))))


@dataclass(frozen=True)
class ImageRow:
    id: int
    file: str
    original_name: str
    width: int
    height: int

    @property
    def file_name(self) -> str:
        return self.original_name.rsplit("/", 1)[-1] or f"image_{self.id}"


MASK_FIELDS = (
    "id", "image_id", "segmentation", "area", "predicted_iou", "stability_score", "point_coords", "crop_box",
    "label_id", "source", "status", "model_version_id", "bbox",
)  # fmt: skip


def iter_batches(
    project: Project, flt: dict[str, Any], after_id: int = 0, batch: int = 100
) -> Iterator[tuple[ImageRow, list[dict[str, Any]]]]:
    """(image, its selected masks in id order) for every selected image in id order after
    ``after_id``; one images query and one masks query per ``batch`` images."""
    images = images_of(project, flt).order_by("id")
    masks = masks_of(project, flt)
    last = after_id
    while True:
        rows = [
            ImageRow(*row)
            for row in images.filter(id__gt=last).values_list(
                "id", "file", "original_name", "width", "height"
            )[:batch]
        ]
        if not rows:
            return
        by_image: dict[int, list[dict[str, Any]]] = {row.id: [] for row in rows}
        for values in (
            masks.filter(image_id__in=list(by_image)).order_by("image_id", "id").values_list(*MASK_FIELDS)
        ):
            mask = dict(zip(MASK_FIELDS, values, strict=True))
            by_image[mask["image_id"]].append(mask)
        for row in rows:
            yield row, by_image[row.id]
        last = rows[-1].id
