"""Review of stage 1: a reviewer rejects a mask with a note (the image goes back to the queue) or
approves an annotated image."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotator.images.models import Image, ImageStatus
from annotator.masks.models import Mask, MaskStatus
from annotator.masks.services import StaleVersion


def reject_mask(mask: Mask, reviewer: AbstractBaseUser, *, note: str, version: int) -> Mask:
    """Reject an accepted mask with a note: the image goes back to the annotator queue and the note
    is shown next to the mask. ``version`` guards against rejecting a mask edited meanwhile."""
    note = (note or "").strip()
    if not note:
        raise ValidationError({"note": "say what is wrong with the mask so the annotator can fix it"})
    if len(note) > 2000:
        raise ValidationError({"note": f"keep the note under 2000 characters (got {len(note)})"})
    now = timezone.now()
    with transaction.atomic():
        updated = Mask.objects.filter(pk=mask.pk, version=version).update(
            status=MaskStatus.REJECTED,
            review_note=note,
            reviewed_by=reviewer,
            reviewed_at=now,
            version=F("version") + 1,
            updated_at=now,
        )
        if not updated:
            current = Mask.objects.filter(pk=mask.pk).values_list("version", flat=True).first()
            raise StaleVersion(mask.pk, version, current)
        # Back to the queue; an annotator working on it right now keeps the lease.
        Image.objects.filter(pk=mask.image_id).update(status=ImageStatus.NEEDS_REWORK, updated_at=now)
    mask.refresh_from_db()
    return mask


def approve_image(image: Image, reviewer: AbstractBaseUser) -> Image:
    """The reviewer is done with an annotated image and rejected nothing: it is reviewed."""
    if image.status != ImageStatus.ANNOTATED:
        raise ValidationError(
            {"status": f"only annotated images can be approved; image {image.pk} is {image.status}"}
        )
    if Mask.objects.filter(image=image, status=MaskStatus.REJECTED).exists():
        raise ValidationError({"status": "the image has rejected masks; it goes back to the annotator"})
    now = timezone.now()
    Mask.objects.filter(image=image, status=MaskStatus.ACCEPTED, reviewed_at__isnull=True).update(
        reviewed_by=reviewer, reviewed_at=now
    )
    Image.objects.filter(pk=image.pk, status=ImageStatus.ANNOTATED).update(
        status=ImageStatus.REVIEWED, updated_at=now
    )
    image.refresh_from_db()
    return image
