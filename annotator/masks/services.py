"""Every write on masks: RLE checked against the image, geometry computed here (never trusted
from the client), labels checked against the project, and optimistic concurrency by ``version``."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from annotator.images.models import Image
from annotator.masks.models import Mask, MaskSource, MaskStatus
from annotator.projects.models import Label
from annotator.training.triggers import masks_accepted
from engine.masks import rle_area, rle_to_bbox, validate_rle


class StaleVersion(Exception):
    """The client edited an older version of the mask than the stored one."""

    def __init__(self, mask_id: int, sent: int, current: int | None) -> None:
        self.current = current
        if current is None:
            message = f"mask {mask_id} no longer exists"
        else:
            message = (
                f"mask {mask_id} was changed by someone else (you sent version {sent}, it is now version "
                f"{current}); reload it and apply your change again"
            )
        super().__init__(message)


EDITABLE_FIELDS = {
    "segmentation",
    "label",
    "suggested_label",
    "suggestion_probability",
    "status",
    "review_note",
    "predicted_iou",
    "stability_score",
    "point_coords",
    "crop_box",
    "seconds",
    "clicks",
}


def geometry(rle: Any, image: Image) -> dict[str, Any]:
    """Validated RLE with its bbox (XYWH) and area for the image, or ValidationError saying why."""
    try:
        rle = validate_rle(rle, image.height, image.width)
    except ValueError as exc:
        raise ValidationError({"segmentation": str(exc)}) from exc
    return {"segmentation": rle, "bbox": rle_to_bbox(rle), "area": rle_area(rle)}


def check_label(label: Label | None, project_id: int) -> None:
    if label is not None and label.project_id != project_id:
        raise ValidationError({"label": f"label {label.pk} belongs to another project"})


def check_points(value: Any, field: str, length: int | None = None) -> None:
    if value is None:
        return
    if field == "point_coords":
        ok = isinstance(value, list) and all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(_is_number(v) for v in p) for p in value
        )
        if not ok:
            raise ValidationError({field: "must be a list of [x, y] number pairs"})
    elif not (isinstance(value, list) and len(value) == length and all(_is_number(v) for v in value)):
        raise ValidationError({field: f"must be a list of {length} numbers"})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def create_mask(
    image: Image, *, segmentation: Any, annotator: AbstractBaseUser | None, **fields: Any
) -> Mask:
    unknown = set(fields) - EDITABLE_FIELDS - {"source", "model_version", "idempotency_key"}
    if unknown:
        raise ValidationError({name: "unknown field" for name in sorted(unknown)})
    check_label(fields.get("label"), image.project_id)
    check_label(fields.get("suggested_label"), image.project_id)
    check_points(fields.get("point_coords"), "point_coords")
    check_points(fields.get("crop_box"), "crop_box", 4)
    if fields.get("source", MaskSource.MANUAL) not in MaskSource.values:
        raise ValidationError({"source": f"one of {', '.join(MaskSource.values)}"})
    status = fields.get("status", MaskStatus.PROPOSED)
    if status not in MaskStatus.values:
        raise ValidationError({"status": f"one of {', '.join(MaskStatus.values)}"})
    mask = Mask(
        project_id=image.project_id,
        image=image,
        annotator=annotator if annotator is not None and annotator.is_authenticated else None,
        accepted_at=timezone.now() if status == MaskStatus.ACCEPTED else None,
        **geometry(segmentation, image),
        **fields,
    )
    mask.full_clean(exclude=["segmentation", "bbox"])
    mask.save()
    count_in_visit(mask)
    if status == MaskStatus.ACCEPTED:
        masks_accepted(image.project_id)
    if mask.status == MaskStatus.ACCEPTED and mask.label_id is not None:
        masks_labelled(image.project)
    return mask


def count_in_visit(mask: Mask) -> None:
    """A mask an annotator saved counts in their open visit to the image (the effort figures)."""
    # Imported here: the annotation services import this module (StaleVersion).
    from annotator.annotation.services.visits import count_saved_mask

    count_saved_mask(mask)


def masks_labelled(project) -> None:
    """Accepted masks got a label: the next steps of the loop that count them (label head retraining)."""
    from annotator.suggestions.services import note_labelled_masks

    note_labelled_masks(project)


def create_mask_once(
    image: Image, *, idempotency_key: str, annotator: AbstractBaseUser | None, **fields: Any
) -> tuple[Mask, bool]:
    """``create_mask`` honouring the client's Idempotency-Key: a retried create (same user, same key)
    returns the mask the first attempt stored instead of a duplicate. Returns (mask, created)."""
    key = (idempotency_key or "").strip()
    if not key or len(key) > 100 or not key.isprintable():
        raise ValidationError({"Idempotency-Key": "must be 1 to 100 printable characters"})
    user_id = annotator.pk if annotator is not None and annotator.is_authenticated else None
    if user_id is None:
        return create_mask(image, annotator=annotator, **fields), True

    def earlier() -> Mask | None:
        found = Mask.objects.filter(annotator_id=user_id, idempotency_key=key).first()
        if found is not None and found.image_id != image.pk:
            raise ValidationError(
                {"Idempotency-Key": f"this key was already used to save a mask on image {found.image_id}"}
            )
        return found

    found = earlier()
    if found is not None:
        return found, False
    try:
        with transaction.atomic():
            return create_mask(image, annotator=annotator, idempotency_key=key, **fields), True
    except IntegrityError:  # the same request, sent twice at once: the other copy stored it
        found = earlier()
        if found is None:
            raise
        return found, False


@transaction.atomic
def update_mask(mask: Mask, *, version: int, user: AbstractBaseUser | None = None, **changes: Any) -> Mask:
    """Apply ``changes`` if ``version`` is the stored one; bumps the version. Raises StaleVersion.

    The user who decides a model proposal nobody has touched yet (status proposed → accepted or
    rejected, no annotator) becomes its annotator, so the decision's seconds and clicks count for
    someone on the dashboard's effort by annotator."""
    unknown = set(changes) - EDITABLE_FIELDS
    if unknown:
        raise ValidationError({name: "cannot be changed" for name in sorted(unknown)})
    image = mask.image
    values: dict[str, Any] = dict(changes)
    if "segmentation" in values:
        values.update(geometry(values["segmentation"], image))
    if "label" in values:
        check_label(values["label"], mask.project_id)
    if "suggested_label" in values:
        check_label(values["suggested_label"], mask.project_id)
    check_points(values.get("point_coords"), "point_coords")
    check_points(values.get("crop_box"), "crop_box", 4)
    if "status" in values:
        if values["status"] not in MaskStatus.values:
            raise ValidationError({"status": f"one of {', '.join(MaskStatus.values)}"})
        if values["status"] == MaskStatus.ACCEPTED and mask.status != MaskStatus.ACCEPTED:
            values["accepted_at"] = timezone.now()
        if (
            values["status"] != MaskStatus.PROPOSED
            and mask.status == MaskStatus.PROPOSED
            and mask.annotator_id is None
            and user is not None
            and user.is_authenticated
        ):
            values["annotator"] = user
    now = timezone.now()
    updated = Mask.objects.filter(pk=mask.pk, version=version).update(
        **values, version=F("version") + 1, updated_at=now
    )
    if updated == 0:
        current = Mask.objects.filter(pk=mask.pk).values_list("version", flat=True).first()
        raise StaleVersion(mask.pk, version, current)
    if values.get("status") == MaskStatus.ACCEPTED and mask.status != MaskStatus.ACCEPTED:
        masks_accepted(mask.project_id)
    mask.refresh_from_db()
    if (
        mask.status == MaskStatus.ACCEPTED
        and mask.label_id is not None
        and ("status" in values or "label" in values)
    ):
        masks_labelled(image.project)
    return mask


@transaction.atomic
def delete_mask(mask: Mask, *, version: int) -> None:
    deleted, _ = Mask.objects.filter(pk=mask.pk, version=version).delete()
    if deleted == 0:
        current = Mask.objects.filter(pk=mask.pk).values_list("version", flat=True).first()
        raise StaleVersion(mask.pk, version, current)
