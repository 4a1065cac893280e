"""Label Studio tasks and annotations into Maskmill: which image a task is, and an annotation's
regions as masks. Shared by the ML backend's webhook and by pull, so both map ids the same way and
both are idempotent (an unchanged region is not written again, a removed one removes its mask).

Every annotation is parsed and checked completely (sizes, RLE, coordinates, labels) before the
first write, and written in one transaction: bad input changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from annotator.annotation.boxes import box_to_mask
from annotator.images.models import Image
from annotator.images.services import ingest_files
from annotator.labelstudio.client import FetchError, fetch_image
from annotator.labelstudio.models import Connection, MaskLink, TaskLink
from annotator.labelstudio.regions import (
    BRUSH,
    POLYGON,
    RECTANGLE,
    Region,
    RegionError,
    check_labels,
    parse_region,
)
from annotator.masks.models import Mask, MaskSource, MaskStatus
from annotator.masks.services import create_mask, update_mask
from annotator.projects.models import Label, Membership, Project
from engine.masks import encode_rle

UPLOAD_NAME = re.compile(r"mm-(\d{1,18})\.[A-Za-z0-9]{1,8}$")
MASK_KINDS = (BRUSH, POLYGON, RECTANGLE)


def task_id(task: Any) -> int:
    if not isinstance(task, dict):
        raise RegionError("each task must be a JSON object with an id and data")
    value = task.get("id")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RegionError(f"task id must be a positive integer, got {value!r}")
    return value


def image_url(task: dict[str, Any], key: str = "image") -> Any:
    data = task.get("data")
    if not isinstance(data, dict):
        raise RegionError(f"task {task.get('id')}: data must be an object")
    return data.get(key)


def linked_image(connection: Connection | None, task: dict[str, Any]) -> Image | None:
    """The image a task was linked to (pushed, or fetched earlier), or the pushed upload's image."""
    tid = task_id(task)
    if connection is None:
        return None
    link = TaskLink.objects.filter(connection=connection, ls_task_id=tid).select_related("image").first()
    return link.image if link else None


def fetch_task(connection: Connection | None, task: dict[str, Any]) -> bytes:
    """The bytes of a task's image from the allow-listed Label Studio host."""
    if connection is None:
        raise FetchError(
            "this Label Studio task is not linked to a Maskmill image and the project has no Label Studio "
            "URL configured to fetch it from (PUT /api/projects/<id>/labelstudio)"
        )
    return fetch_image(connection, image_url(task))


def link_task(
    connection: Connection, task: dict[str, Any], data: bytes, user: AbstractBaseUser | None
) -> Image:
    """Ingest a fetched task image (a copy already in the project is reused) and remember the link."""
    tid = task_id(task)
    project = connection.project
    name = str(image_url(task)).rsplit("/", 1)[-1].split("?")[0][-100:] or f"ls-task-{tid}"
    result = ingest_files(project, [SimpleUploadedFile(name, data)], user)
    if result.errors:
        raise FetchError(f"task {tid}: the image cannot be used: {result.errors[0]['reason']}")
    image = result.created[0] if result.created else Image.objects.get(pk=result.duplicates[0]["image"])
    TaskLink.objects.get_or_create(connection=connection, ls_task_id=tid, defaults={"image": image})
    return image


def task_image(connection: Connection | None, task: dict[str, Any], user: AbstractBaseUser | None) -> Image:
    image = linked_image(connection, task)
    if image is not None:
        return image
    data = fetch_task(connection, task)
    return link_task(connection, task, data, user)


# ------------------------------------------------------------------------------------------------
# Annotations → masks


def region_digest(item: dict[str, Any]) -> str:
    body = json.dumps({"type": item.get("type"), "value": item.get("value")}, sort_keys=True)
    return hashlib.sha1(body.encode()).hexdigest()


@dataclass
class ParsedAnnotation:
    annotation_id: int
    # (region id, digest, region); region None: unchanged since it was last applied (not parsed again)
    regions: list[tuple[str, str, Region | None]] = field(default_factory=list)
    completed_by: Any = None
    ignored: int = 0


def parse_annotation(
    annotation: Any, image: Image, labels: set[str], known: dict[str, str] | None = None
) -> ParsedAnnotation:
    """Check an annotation completely against its image and the project's labels (no writes).
    ``known`` (region id → digest last applied): regions whose digest has not changed were
    checked when they were applied and are not decoded again."""
    if not isinstance(annotation, dict):
        raise RegionError("an annotation must be a JSON object")
    aid = annotation.get("id")
    if isinstance(aid, bool) or not isinstance(aid, int) or aid < 1:
        raise RegionError(f"annotation id must be a positive integer, got {aid!r}")
    parsed = ParsedAnnotation(aid, completed_by=annotation.get("completed_by"))
    result = annotation.get("result") or []
    if annotation.get("was_cancelled"):
        return parsed  # a skipped task: no regions
    if not isinstance(result, list):
        raise RegionError(f"annotation {aid}: result must be a list")
    seen: dict[str, int] = {}
    for index, item in enumerate(result):
        if not isinstance(item, dict):
            raise RegionError(f"annotation {aid}: result[{index}] must be an object")
        if item.get("type") not in MASK_KINDS:
            parsed.ignored += 1  # key points are prompts; choices, text... are not masks
            continue
        raw_id = item.get("id")
        rid = str(raw_id)[:100] if isinstance(raw_id, (str, int)) and str(raw_id) else f"#{index}"
        seen[rid] = seen.get(rid, 0) + 1
        if seen[rid] > 1:
            rid = f"{rid}#{seen[rid]}"
        digest = region_digest(item)
        if known and known.get(rid) == digest:
            parsed.regions.append((rid, digest, None))
            continue
        try:
            region = parse_region(item, image.width, image.height)
        except RegionError as error:
            raise RegionError(f"annotation {aid}, result[{index}]: {error}") from None
        parsed.regions.append((rid, digest, region))
    check_labels([r for _, _, r in parsed.regions if r is not None], labels)
    return parsed


class AnnotatorResolver:
    """Label Studio's ``completed_by`` → a Maskmill member of the project (same email), else
    ``fallback``. ``lookup`` turns a Label Studio user id into an email (the SDK; cached)."""

    def __init__(
        self, project: Project, fallback: AbstractBaseUser | None, lookup: Callable[[int], str] | None
    ):
        self.project, self.fallback, self.lookup = project, fallback, lookup
        self.emails: dict[int, str] = {}

    def email(self, completed_by: Any) -> str:
        if isinstance(completed_by, dict):
            value = completed_by.get("email")
            return value if isinstance(value, str) else ""
        if isinstance(completed_by, int) and not isinstance(completed_by, bool) and self.lookup is not None:
            if completed_by not in self.emails:
                try:
                    self.emails[completed_by] = self.lookup(completed_by) or ""
                except Exception:  # an unknown or unreadable Label Studio user: keep the fallback
                    self.emails[completed_by] = ""
            return self.emails[completed_by]
        return ""

    def user(self, email: str) -> AbstractBaseUser | None:
        if email:
            members = Membership.objects.filter(project=self.project).values("user_id")
            found = (
                get_user_model()
                .objects.filter(email__iexact=email)
                .filter(pk__in=members)
                .order_by("pk")
                .first()
            )
            if found is None:
                found = get_user_model().objects.filter(email__iexact=email, is_superuser=True).first()
            if found is not None:
                return found
        return self.fallback if self.fallback is not None and self.fallback.is_authenticated else None


def region_mask(project: Project, image: Image, region: Region) -> np.ndarray:
    if region.mask is not None:
        return region.mask
    assert region.box is not None
    return box_to_mask(project, image, region.box)


def apply_annotation(
    connection: Connection, link: TaskLink, parsed: ParsedAnnotation, resolver: AnnotatorResolver
) -> dict[str, int]:
    """Make the task image's masks from this annotation match its regions (rectangles decoded by
    the project's model first, outside the transaction)."""
    project, image = connection.project, link.image
    existing = {
        m.region_id: m
        for m in MaskLink.objects.filter(
            connection=connection, ls_annotation_id=parsed.annotation_id
        ).select_related("mask")
    }
    todo = [
        (rid, digest, r)
        for rid, digest, r in parsed.regions
        if rid not in existing or existing[rid].digest != digest
    ]
    pixels = {rid: region_mask(project, image, region) for rid, _, region in todo if region is not None}
    labels = {label.name: label for label in Label.objects.filter(project=project)}
    email = resolver.email(parsed.completed_by)
    annotator = resolver.user(email)
    counts = {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0}
    with transaction.atomic():
        for rid, digest, region in parsed.regions:
            old = existing.get(rid)
            if old is not None and old.digest == digest:
                counts["unchanged"] += 1
                continue
            if region is None:  # parsed as unchanged, but its link went meanwhile: apply it next time
                continue
            segmentation = encode_rle(pixels[rid])
            label = labels.get(region.label) if region.label else None
            if old is None:
                mask = create_mask(
                    image,
                    segmentation=segmentation,
                    annotator=annotator,
                    label=label,
                    source=MaskSource.MANUAL,
                    status=MaskStatus.ACCEPTED,
                )
                MaskLink.objects.create(
                    connection=connection,
                    task=link,
                    ls_annotation_id=parsed.annotation_id,
                    region_id=rid,
                    mask=mask,
                    digest=digest,
                    ls_annotator=email[:254],
                )
                counts["created"] += 1
            else:
                update_mask(
                    old.mask, version=old.mask.version, user=annotator, segmentation=segmentation, label=label
                )
                MaskLink.objects.filter(pk=old.pk).update(digest=digest)
                counts["updated"] += 1
        kept = {rid for rid, _, _ in parsed.regions}
        gone = [m.mask_id for rid, m in existing.items() if rid not in kept]
        counts["deleted"] = delete_masks(gone)
    return counts


def known_regions(connection: Connection, annotation_id: int | None = None) -> dict[int, dict[str, str]]:
    """annotation id → {region id: digest} as last applied."""
    links = MaskLink.objects.filter(connection=connection)
    if annotation_id is not None:
        links = links.filter(ls_annotation_id=annotation_id)
    found: dict[int, dict[str, str]] = {}
    for aid, rid, digest in links.values_list("ls_annotation_id", "region_id", "digest"):
        found.setdefault(aid, {})[rid] = digest
    return found


def delete_masks(mask_ids: list[int]) -> int:
    """Remove masks that came from Label Studio regions which no longer exist (their links go too)."""
    if not mask_ids:
        return 0
    deleted, _ = Mask.objects.filter(pk__in=mask_ids).delete()
    return len(mask_ids) if deleted else 0


def delete_annotations(connection: Connection, annotation_ids: list[int]) -> int:
    mask_ids = list(
        MaskLink.objects.filter(connection=connection, ls_annotation_id__in=annotation_ids).values_list(
            "mask_id", flat=True
        )
    )
    with transaction.atomic():
        return delete_masks(mask_ids)


def project_labels(project: Project) -> set[str]:
    return set(Label.objects.filter(project=project).values_list("name", flat=True))
