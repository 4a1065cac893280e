"""Importing existing annotations: COCO instances JSON (RLE, polygons, crowd RLE), Label Studio JSON
exports (brush, polygons; rectangles become masks through the project's segmenter, stored as
model-made proposals) and SA-1B per-image JSON.

Per file, all or nothing: the whole file is parsed and checked first (every bad record gets its
reason), images are matched by file name (or ingested from the folder given), and only then are
labels and masks written, in one transaction. A mask whose RLE the image already has is skipped,
so importing the same file again duplicates nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotator.images.models import Image
from annotator.images.services import ingest_files
from annotator.masks.models import Mask, MaskSource, MaskStatus
from annotator.projects.models import Label, Project
from engine import sa1b
from engine.formats import coco, label_studio
from engine.masks import decode_rle, rle_area, rle_to_bbox

FORMATS = ("coco", "label_studio", "sa1b")
PALETTE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6")


class ImportRefused(ValueError):
    """Nothing of the file was written; ``problems`` has one reason per bad record."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(
            f"{source}: refused, nothing imported ({len(problems)} problem(s)): " + "; ".join(problems[:20])
        )


@dataclass
class ImportResult:
    source: str
    created: int = 0
    duplicates: int = 0
    ignored: int = 0
    images_ingested: int = 0
    labels_created: list[str] = field(default_factory=list)
    images: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Record:
    """One mask to import (``rle``) or one box to segment (``box``), for an image by file name."""

    label: str | None
    rle: dict[str, Any] | None = None
    box: Any = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class _ImageRecords:
    file_name: str
    size: tuple[int, int] | None  # (height, width) when the file says
    records: list[_Record]
    pending: list[Any] = field(default_factory=list)  # LS results decoded once the image is known


def import_path(
    project: Project,
    path: str | Path,
    fmt: str,
    *,
    user: AbstractBaseUser | None = None,
    images_dir: str | Path | None = None,
    status: str = MaskStatus.ACCEPTED,
) -> list[ImportResult | ImportRefused]:
    """A file, or every ``*.json`` of a folder (whose images may then be ingested from it); one
    result or refusal per file, each file on its own."""
    path = Path(path)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if path.is_dir() and images_dir is None:
        images_dir = path
    outcomes: list[ImportResult | ImportRefused] = []
    for file in files:
        try:
            outcomes.append(
                import_bytes(
                    project,
                    file.read_bytes(),
                    fmt,
                    source=file.name,
                    user=user,
                    images_dir=images_dir,
                    status=status,
                )
            )
        except ImportRefused as refused:
            outcomes.append(refused)
    return outcomes


def import_bytes(
    project: Project,
    data: bytes,
    fmt: str,
    *,
    source: str = "<upload>",
    user: AbstractBaseUser | None = None,
    images_dir: str | Path | None = None,
    status: str = MaskStatus.ACCEPTED,
) -> ImportResult:
    if fmt not in FORMATS:
        raise ImportRefused(source, [f"format must be one of {', '.join(FORMATS)}"])
    if status not in MaskStatus.values:
        raise ImportRefused(source, [f"status must be one of {', '.join(MaskStatus.values)}"])
    result = ImportResult(source)
    try:
        groups = _parse(data, fmt, source, result)
    except (coco.CocoFormatError, label_studio.LabelStudioFormatError) as exc:
        raise ImportRefused(source, exc.problems) from exc
    except sa1b.SA1BFormatError as exc:
        raise ImportRefused(source, [str(exc)]) from exc
    images = _match_images(project, groups, images_dir, user, result, source)
    problems: list[str] = []
    for group in groups:
        image = images[group.file_name]
        if group.size is not None and group.size != (image.height, image.width):
            said = f"{group.size[1]}x{group.size[0]}"
            problems.append(
                f"{group.file_name}: the file says {said}, the image is {image.width}x{image.height}"
            )
            continue
        for index, item in enumerate(group.pending):
            try:
                if item.kind == "rectangle":
                    group.records.append(_Record(item.label, box=item.box(image.height, image.width)))
                else:
                    group.records.append(_Record(item.label, rle=item.to_rle(image.height, image.width)))
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(f"{group.file_name} result {index}: {exc}")
    if not problems:
        problems += _segment_boxes(groups, images)
    if problems:
        raise ImportRefused(source, problems)
    _write(project, groups, images, user, status, result)
    return result


def _parse(data: bytes, fmt: str, source: str, result: ImportResult) -> list[_ImageRecords]:
    if fmt == "coco":
        groups = []
        for image in coco.read_coco(data, source):
            records = [
                _Record(ann["category"], rle=ann["segmentation"], fields=_extra_fields(ann["extra"]))
                for ann in image.annotations
            ]
            groups.append(_ImageRecords(image.file_name, (image.height, image.width), records))
        return groups
    if fmt == "label_studio":
        groups = []
        for task in label_studio.read_tasks(data, source):
            result.ignored += task.ignored
            groups.append(_ImageRecords(task.file_name, None, [], pending=task.results))
        return groups
    record = sa1b.loads_record(data, source)
    image = record["image"]
    records = [
        _Record(
            None,
            rle=ann["segmentation"],
            fields={
                "source": MaskSource.AUTO,
                "predicted_iou": float(ann["predicted_iou"]),
                "stability_score": float(ann["stability_score"]),
                "point_coords": ann["point_coords"],
                "crop_box": ann["crop_box"],
            },
        )
        for ann in record["annotations"]
    ]
    return [_ImageRecords(Path(image["file_name"]).name, (image["height"], image["width"]), records)]


def _extra_fields(extra: dict[str, Any]) -> dict[str, Any]:
    """Maskmill's own keys in a COCO annotation (scores, provenance), when they are well formed."""
    out: dict[str, Any] = {}
    for key in ("predicted_iou", "stability_score"):
        value = extra.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
            out[key] = float(value)
    if extra.get("source") in MaskSource.values:
        out["source"] = extra["source"]
    return out


def _match_images(
    project: Project,
    groups: list[_ImageRecords],
    images_dir: str | Path | None,
    user: AbstractBaseUser | None,
    result: ImportResult,
    source: str,
) -> dict[str, Image]:
    names = sorted({g.file_name for g in groups})
    found: dict[str, list[Image]] = {}
    for image in Image.objects.filter(project=project, original_name__in=names):
        found.setdefault(image.original_name, []).append(image)
    problems = [
        f"{name}: {len(found[name])} images of the project have this name"
        for name in names
        if len(found.get(name, [])) > 1
    ]
    missing = [name for name in names if name not in found]
    if missing and images_dir is not None:
        folder = Path(images_dir)
        present = [folder / name for name in missing if (folder / name).is_file()]
        ingested = ingest_files(project, [str(p) for p in present], user)
        result.images_ingested = len(ingested.created)
        problems += [f"{e['name']}: {e['reason']}" for e in ingested.errors]
        for image in ingested.created:
            found.setdefault(Path(image.original_name).name, []).append(image)
        for duplicate in ingested.duplicates:
            image = Image.objects.get(pk=duplicate["image"])
            found.setdefault(Path(duplicate["name"]).name, []).append(image)
    problems += [
        f"{name}: no image of the project has this name"
        + ("" if images_dir is None else " and the folder has no such file")
        for name in names
        if name not in found
    ]
    if problems:
        raise ImportRefused(source, problems)
    return {name: images[0] for name, images in found.items()}


def _segment_boxes(groups: list[_ImageRecords], images: dict[str, Image]) -> list[str]:
    """Rectangles → masks by the project's segmenter (SAM version, else classic), as model-made."""
    from annotator.annotation.boxes import NotReady, decode_prompt
    from annotator.annotation.interactive import PromptError

    problems = []
    for group in groups:
        for record in (r for r in group.records if r.box is not None):
            try:
                made = decode_prompt(images[group.file_name], box=[float(v) for v in record.box])
            except (ValueError, OSError, NotReady, PromptError) as exc:
                problems.append(f"{group.file_name}: a rectangle could not be segmented: {exc}")
                continue
            if not decode_rle(made.segmentation).any():
                problems.append(f"{group.file_name}: the segmenter found nothing in {record.box.tolist()}")
                continue
            record.rle = made.segmentation
            record.fields = {
                "source": MaskSource.AUTO,
                "status": MaskStatus.PROPOSED,  # the model drew it: a person should look at it
                "predicted_iou": made.score,
                "model_version_id": made.model_version_id,
            }
    return problems


@transaction.atomic
def _write(
    project: Project,
    groups: Iterable[_ImageRecords],
    images: dict[str, Image],
    user: AbstractBaseUser | None,
    status: str,
    result: ImportResult,
) -> None:
    labels = {label.name: label for label in Label.objects.filter(project=project)}
    now = timezone.now()
    annotator = user if user is not None and user.is_authenticated else None
    new: list[Mask] = []
    known: dict[int, set[str]] = {}
    for group in groups:
        image = images[group.file_name]
        result.images += 1
        if image.pk not in known:
            known[image.pk] = set(
                Mask.objects.filter(image=image).values_list("segmentation__counts", flat=True)
            )
        seen = known[image.pk]
        for record in group.records:
            counts = record.rle["counts"]
            if counts in seen:
                result.duplicates += 1
                continue
            seen.add(counts)
            label = None
            if record.label:
                label = labels.get(record.label)
                if label is None:
                    label = Label.objects.create(
                        project=project, name=record.label[:100], color=PALETTE[len(labels) % len(PALETTE)]
                    )
                    labels[record.label] = label
                    result.labels_created.append(record.label)
            fields = {"source": MaskSource.MANUAL, "status": status, **record.fields}
            new.append(
                Mask(
                    project=project,
                    image=image,
                    segmentation=record.rle,
                    bbox=rle_to_bbox(record.rle),
                    area=rle_area(record.rle),
                    label=label,
                    annotator=annotator,
                    accepted_at=now if fields["status"] == MaskStatus.ACCEPTED else None,
                    **fields,
                )
            )
    Mask.objects.bulk_create(new, batch_size=500)
    result.created = len(new)
