"""Reads on images that are more than a one-liner."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from annotator.images.models import Image, ImageStatus, Split


def images_of(project_id: int, *, status: str | None = None, split: str | None = None) -> QuerySet[Image]:
    """A project's images, filtered; unknown filter values are a 400, not an empty page."""
    images = Image.objects.filter(project_id=project_id).order_by("id")
    if status:
        wanted = status.split(",")
        bad = [s for s in wanted if s not in ImageStatus.values]
        if bad:
            raise ValidationError(
                {"status": f"unknown status {', '.join(bad)}; one of {', '.join(ImageStatus.values)}"}
            )
        images = images.filter(status__in=wanted)
    if split:
        if split not in Split.values:
            raise ValidationError({"split": f"unknown split {split!r}; one of {', '.join(Split.values)}"})
        images = images.filter(split=split)
    return images
