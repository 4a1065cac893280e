"""One writer per export format, each fed (image, masks) pairs one at a time by ``services`` and
writing through ``engine.formats`` / ``engine.sa1b``: nothing here holds more than one image's
masks. ``write`` returns the files written (name, bytes, sha256) and the manifest to record.

Only SA-1B resumes part-way (its shards are independent files); the one-file formats are written
again from the start, through a temporary file, so a killed run never leaves a half file behind.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from annotator.exports.selectors import ImageRow
from engine import sa1b
from engine.formats import coco, imaging, label_studio, png
from engine.images import read_image
from engine.masks import rle_area, rle_to_bbox

Batch = Iterable[tuple[ImageRow, list[dict[str, Any]]]]


@dataclass
class Context:
    """What every writer needs besides the masks: the project's labels (id → name, color, in the
    project's order) and the export's options."""

    project_slug: str
    labels: dict[int, tuple[str, str]]
    options: dict[str, Any]
    notes: dict[str, Any] = field(default_factory=dict)

    def label_name(self, label_id: int | None) -> str | None:
        return self.labels[label_id][0] if label_id in self.labels else None


def read_image_bytes(row: ImageRow) -> bytes:
    with default_storage.open(row.file, "rb") as fileobj:
        return fileobj.read()


def _file_entry(path: Path, sha256: str | None = None) -> dict[str, Any]:
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256 or sa1b.file_sha256(path)}


def _score(value: float | None) -> float:
    # SA-1B's scores are numbers; a hand-drawn mask has no model score and is taken as certain.
    return 1.0 if value is None else float(value)


# --- SA-1B ---------------------------------------------------------------------------------------


class SA1BWriter:
    PRIVACY_NAME = "privacy.json"

    def __init__(self, ctx: Context, out: Path) -> None:
        self.ctx, self.out = ctx, out
        self.shard_size = int(ctx.options.get("shard_size", 1000))
        self.max_side = ctx.options.get("max_side")
        self.kinds = tuple(
            k
            for k, on in (("face", ctx.options.get("blur_faces")), ("plate", ctx.options.get("blur_plates")))
            if on
        )
        self.privacy: dict[str, list[dict[str, Any]]] = {}

    def write(self, batches: Batch) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        done = sa1b.completed_image_ids(self.out)
        previous = self._previous_privacy(done)

        def items() -> Iterator[sa1b.SA1BImage]:
            for row, masks in batches:
                yield sa1b.placeholder(row.id) if row.id in done else self._item(row, masks)

        shards = sa1b.write_shards(items(), self.out, images_per_shard=self.shard_size)
        files = [{"file": s["file"], "bytes": s["bytes"], "sha256": s["sha256"]} for s in shards]
        files.append(_file_entry(self.out / sa1b.MANIFEST_NAME))
        manifest: dict[str, Any] = {"shards": shards}
        if self.kinds:
            privacy = {**previous, **self.privacy}
            doc = {
                "detector": {k: list(imaging.CASCADES[k]) for k in self.kinds},
                "images": {k: privacy[k] for k in sorted(privacy, key=int)},
            }
            path = self.out / self.PRIVACY_NAME
            path.write_bytes(json.dumps(doc, indent=1, sort_keys=True).encode())
            files.append(_file_entry(path))
            manifest["privacy"] = {
                "detector": doc["detector"],
                "blurred_images": len(privacy),
                "regions": sum(len(v) for v in privacy.values()),
                "file": self.PRIVACY_NAME,
            }
        return files, manifest

    def _previous_privacy(self, done: set[int]) -> dict[str, list[dict[str, Any]]]:
        path = self.out / self.PRIVACY_NAME
        if not self.kinds or not done or not path.is_file():
            return {}
        try:
            images = json.loads(path.read_bytes())["images"]
        except (ValueError, KeyError, TypeError):
            return {}
        return {k: v for k, v in images.items() if k.isdigit() and int(k) in done}

    def _item(self, row: ImageRow, masks: list[dict[str, Any]]) -> sa1b.SA1BImage:
        data = read_image_bytes(row)
        height, width = imaging.target_size(row.height, row.width, self.max_side)
        if (height, width) == (row.height, row.width) and not self.kinds and _plain_jpeg(data, row):
            image_bytes = data  # the original JPEG as uploaded: no second lossy encoding
        else:
            pixels = read_image(data, max_pixels=settings.MASKMILL_MAX_IMAGE_PIXELS)
            pixels = imaging.resize_image(pixels, height, width)
            if self.kinds:
                regions = imaging.detect(pixels, self.kinds)
                if regions:
                    pixels = imaging.blur_regions(pixels, regions)
                    self.privacy[str(row.id)] = regions
            image_bytes = imaging.encode_jpeg(pixels)
        sx, sy = width / row.width, height / row.height
        annotations = []
        for mask in masks:
            rle = imaging.resize_rle(mask["segmentation"], height, width)
            resized = rle is not mask["segmentation"]
            crop = mask["crop_box"] or [0, 0, row.width, row.height]
            annotations.append(
                {
                    "id": mask["id"],
                    "segmentation": rle,
                    "bbox": rle_to_bbox(rle) if resized else mask["bbox"],
                    "area": rle_area(rle) if resized else mask["area"],
                    "predicted_iou": _score(mask["predicted_iou"]),
                    "stability_score": _score(mask["stability_score"]),
                    "point_coords": [[x * sx, y * sy] for x, y in (mask["point_coords"] or [])],
                    "crop_box": [crop[0] * sx, crop[1] * sy, crop[2] * sx, crop[3] * sy],
                }
            )
        record = sa1b.make_record(row.id, width, height, annotations)
        return sa1b.SA1BImage(row.id, image_bytes, record)


def _plain_jpeg(data: bytes, row: ImageRow) -> bool:
    """A JPEG whose pixels are the stored ones as they are (no EXIF rotation to apply)."""
    if not data.startswith(b"\xff\xd8\xff"):
        return False
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            return image.size == (row.width, row.height) and image.getexif().get(0x0112, 1) == 1
    except (OSError, ValueError):
        return False


# --- COCO ----------------------------------------------------------------------------------------


UNLABELLED = {"id": 0, "name": "unlabelled", "maskmill_unlabelled": True}


class CocoExportWriter:
    NAME = "instances.json"

    def __init__(self, ctx: Context, out: Path) -> None:
        self.ctx, self.out = ctx, out

    def write(self, batches: Batch) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        categories = [
            {"id": pk, "name": name, "color": color} for pk, (name, color) in self.ctx.labels.items()
        ]
        writer = coco.CocoWriter(
            self.out / self.NAME,
            categories,
            polygons=bool(self.ctx.options.get("coco_polygons")),
            info={"description": f"Maskmill export of project {self.ctx.project_slug}"},
        )
        unlabelled = False
        try:
            for row, masks in batches:
                annotations = []
                for mask in masks:
                    label = mask["label_id"] if mask["label_id"] in self.ctx.labels else 0
                    unlabelled |= label == 0
                    annotations.append(
                        {
                            "id": mask["id"],
                            "category_id": label,
                            "segmentation": mask["segmentation"],
                            **_provenance(mask),
                        }
                    )
                writer.add_image(
                    {"id": row.id, "file_name": row.file_name, "width": row.width, "height": row.height},
                    annotations,
                )
            if unlabelled:
                categories.insert(0, UNLABELLED)
            entry = writer.close()
        except BaseException:
            writer.abort()
            raise
        return [entry], {
            "images": writer.images,
            "annotations": writer.annotations,
            "categories": len(categories),
        }


def _provenance(mask: dict[str, Any]) -> dict[str, Any]:
    return {
        "predicted_iou": mask["predicted_iou"],
        "stability_score": mask["stability_score"],
        "point_coords": mask["point_coords"],
        "crop_box": mask["crop_box"],
        "source": mask["source"],
        "status": mask["status"],
        "model_version": mask["model_version_id"],
    }


# --- Label Studio --------------------------------------------------------------------------------


class LabelStudioExportWriter:
    NAME = "tasks.json"
    CONFIG = "label_config.xml"

    def __init__(self, ctx: Context, out: Path) -> None:
        self.ctx, self.out = ctx, out

    def write(self, batches: Batch) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        template = self.ctx.options.get("image_url") or label_studio.DEFAULT_IMAGE_URL
        writer = label_studio.TasksWriter(self.out / self.NAME, image_url=template)
        results = 0
        try:
            for row, masks in batches:
                task_results = [
                    label_studio.brush_result(
                        m["segmentation"],
                        self.ctx.label_name(m["label_id"]),
                        f"mask{m['id']}",
                        {"mask_id": m["id"], **_provenance(m)},
                    )
                    for m in masks
                ]
                results += len(task_results)
                writer.add_task(
                    {"id": row.id, "file_name": row.file_name, "width": row.width, "height": row.height},
                    task_results,
                )
            entry = writer.close()
        except BaseException:
            writer.abort()
            raise
        config = self.out / self.CONFIG
        config.write_text(label_studio.label_config(list(self.ctx.labels.values())), encoding="utf-8")
        return [entry, _file_entry(config)], {
            "tasks": writer.count,
            "results": results,
            "image_url": template,
        }


# --- PNG -----------------------------------------------------------------------------------------


class PngExportWriter:
    """A deterministic tar of ``<image_id>_instances.png``, ``<image_id>_semantic.png`` and
    ``<image_id>.json`` per image, and ``palette.json``."""

    NAME = "png_masks.tar"

    def __init__(self, ctx: Context, out: Path) -> None:
        self.ctx, self.out = ctx, out
        self.index = {pk: i for i, pk in enumerate(ctx.labels, start=1)}

    def write(self, batches: Batch) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        path = self.out / self.NAME
        tmp = path.with_name(path.name + ".partial")
        semantic_dtype = png.semantic_dtype(len(self.index))
        images = 0
        try:
            with (
                open(tmp, "wb") as raw,
                tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar,
            ):
                palette = [
                    {"index": self.index[pk], "name": n, "color": c} for pk, (n, c) in self.ctx.labels.items()
                ]
                _add(tar, "palette.json", png.palette_json(palette))
                for row, masks in batches:
                    rows = [
                        png.PngMask(m["id"], m["segmentation"], m["area"], self.index.get(m["label_id"], 0))
                        for m in masks
                    ]
                    instance, semantic, legend = png.render(rows, row.height, row.width)
                    _add(tar, f"{row.id}_instances.png", png.encode_png(instance))
                    _add(tar, f"{row.id}_semantic.png", png.encode_png(semantic.astype(semantic_dtype)))
                    image = {
                        "id": row.id,
                        "file_name": row.file_name,
                        "width": row.width,
                        "height": row.height,
                    }
                    _add(tar, f"{row.id}.json", png.legend_json(image, legend, "palette.json"))
                    images += 1
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
        return [_file_entry(path)], {"images": images, "overlap_rule": png.OVERLAP_RULE}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    sa1b.add_tar_member(tar, name, data)


WRITERS = {
    "sa1b": SA1BWriter,
    "coco": CocoExportWriter,
    "label_studio": LabelStudioExportWriter,
    "png": PngExportWriter,
}
