"""COCO instances JSON: a streaming writer and a checking reader.

The writer takes one image and its masks at a time and appends them to two spool files (images,
annotations) that ``close`` joins into the final JSON, so memory does not grow with the dataset and
the output is the same bytes for the same input (no dates, canonical separators). ``bbox`` and
``area`` come from pycocotools on the segmentation written (COCO's convention: a box is
``[x, y, w, h]`` with ``w = x_max - x_min + 1``, unlike SA-1B's ``x_max - x_min``).

Polygons trace the pixel squares' outline (on a 2x grid, so a one-pixel part still has an area)
and bridge each hole into its outer ring with a zero-width cut: COCO rasterises a polygon by
parity, so the hole stays empty, and a ring list stays a plain COCO polygon list.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from engine.masks import decode_rle, validate_rle


class CocoFormatError(ValueError):
    """A COCO file that cannot be imported; ``problems`` lists one reason per bad record."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or [message]
        super().__init__(message if not problems else f"{message}: {'; '.join(problems[:20])}")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# --- geometry ------------------------------------------------------------------------------------


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """A boolean mask as COCO polygons (one ring per connected part, holes bridged in), whose
    rasterisation by pycocotools gives back the mask's pixels."""
    big = cv2.resize(mask.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, hierarchy = cv2.findContours(big, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    tree = hierarchy[0]
    polygons = []
    for index, contour in enumerate(contours):
        if tree[index][3] != -1:  # a hole: joined to its outer ring below
            continue
        ring = contour.reshape(-1, 2).astype(np.float64)
        child = tree[index][2]
        while child != -1:
            hole = contours[child].reshape(-1, 2).astype(np.float64)
            distances = ((ring[:, None, :] - hole[None, :, :]) ** 2).sum(-1)
            at_ring, at_hole = np.unravel_index(int(np.argmin(distances)), distances.shape)
            loop = np.concatenate([hole[at_hole:], hole[: at_hole + 1]])
            ring = np.concatenate([ring[: at_ring + 1], loop, ring[at_ring:]])
            child = tree[child][0]
        # 2x-grid pixel centres → the coordinates pycocotools fills back to exactly these pixels.
        points = ring / 2 + 0.25
        polygons.append([round(float(v), 2) for v in points.ravel()])
    return polygons


def polygons_to_rle(polygons: list[list[float]], height: int, width: int) -> dict[str, Any]:
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def _coco_rle(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def rle_geometry(rle: dict[str, Any]) -> tuple[list[float], int]:
    """COCO ``bbox`` and ``area`` of a compressed RLE, by pycocotools."""
    coco = _coco_rle(rle)
    return [float(v) for v in mask_utils.toBbox(coco)], int(mask_utils.area(coco))


# --- writer --------------------------------------------------------------------------------------


@dataclass
class CocoWriter:
    """Write ``path`` incrementally: ``add_image`` per image (in the order wanted in the file), then
    ``close``. ``categories`` are ``{"id", "name", ...}`` dicts; annotations given to ``add_image``
    hold ``id``, ``category_id``, ``segmentation`` (compressed COCO RLE) and any extra keys, which
    are written after the COCO ones."""

    path: Path
    categories: list[dict[str, Any]]
    polygons: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    images: int = 0
    annotations: int = 0

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._images_spool = self._spool("images")
        self._annotations_spool = self._spool("annotations")

    def _spool(self, part: str):
        return open(self.path.with_name(f"{self.path.name}.{part}.partial"), "w+", encoding="utf-8")

    def add_image(self, image: dict[str, Any], annotations: list[dict[str, Any]]) -> None:
        height, width = int(image["height"]), int(image["width"])
        self._images_spool.write(("," if self.images else "") + _dumps(image))
        self.images += 1
        for ann in annotations:
            self._annotations_spool.write(
                ("," if self.annotations else "") + _dumps(self._annotation(ann, image["id"], height, width))
            )
            self.annotations += 1

    def _annotation(self, ann: dict[str, Any], image_id: int, height: int, width: int) -> dict[str, Any]:
        rle = ann["segmentation"]  # stored masks were checked when saved; only the size is checked here
        if list(rle["size"]) != [height, width]:
            raise ValueError(f"annotation {ann['id']}: RLE size {rle['size']} is not the image's")
        extra = {k: v for k, v in ann.items() if k not in ("id", "category_id", "segmentation")}
        if self.polygons:
            segmentation: Any = mask_to_polygons(decode_rle(rle))
            bbox, area = (
                rle_geometry(polygons_to_rle(segmentation, height, width)) if segmentation else ([0.0] * 4, 0)
            )
        else:
            segmentation = {"size": [height, width], "counts": rle["counts"]}
            bbox, area = rle_geometry(rle)
        return {
            "id": int(ann["id"]),
            "image_id": int(image_id),
            "category_id": int(ann["category_id"]),
            "segmentation": segmentation,
            "area": area,
            "bbox": bbox,
            "iscrowd": 0,
            **extra,
        }

    def close(self) -> dict[str, Any]:
        """Join the spools into ``path`` (through a temporary file); returns its bytes and sha256."""
        tmp = self.path.with_name(self.path.name + ".partial")
        digest = hashlib.sha256()
        with open(tmp, "wb") as out:

            def put(text: str) -> None:
                data = text.encode("utf-8")
                digest.update(data)
                out.write(data)

            put('{"info":' + _dumps(self.info) + ',"licenses":[],"categories":' + _dumps(self.categories))
            for name, spool in (("images", self._images_spool), ("annotations", self._annotations_spool)):
                put(f',"{name}":[')
                spool.seek(0)
                for block in iter(lambda spool=spool: spool.read(1 << 20), ""):
                    put(block)
                put("]")
            put("}")
        self._discard_spools()
        os.replace(tmp, self.path)
        return {"file": self.path.name, "bytes": self.path.stat().st_size, "sha256": digest.hexdigest()}

    def _discard_spools(self) -> None:
        for spool in (self._images_spool, self._annotations_spool):
            spool.close()
            Path(spool.name).unlink(missing_ok=True)

    def abort(self) -> None:
        self._discard_spools()


# --- reader --------------------------------------------------------------------------------------


@dataclass
class CocoImage:
    """One image of a COCO file with its annotations as compressed RLE."""

    file_name: str
    width: int
    height: int
    annotations: list[
        dict[str, Any]
    ]  # {"segmentation": RLE, "category": name, "iscrowd": bool, "extra": {...}}


def read_coco(data: bytes | str, source: str = "<coco>") -> list[CocoImage]:
    """Parse a COCO instances JSON completely; every bad record is named in one CocoFormatError,
    so a caller can refuse the whole file before writing anything."""
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CocoFormatError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations")):
        raise CocoFormatError(f'{source}: expected an object with "images" and "annotations" lists')
    problems: list[str] = []
    categories: dict[int, str] = {}
    for index, cat in enumerate(doc.get("categories") or []):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")) or not _name(cat.get("name")):
            problems.append(f"categories[{index}]: needs an integer id and a non-empty name")
            continue
        categories[cat["id"]] = cat["name"].strip()
    images: dict[int, CocoImage] = {}
    for index, image in enumerate(doc["images"]):
        if not isinstance(image, dict) or not _is_int(image.get("id")):
            problems.append(f"images[{index}]: needs an integer id")
            continue
        if not all(_is_int(image.get(k)) and image[k] > 0 for k in ("width", "height")):
            problems.append(f"image {image['id']}: width and height must be positive integers")
            continue
        if not _name(image.get("file_name")):
            problems.append(f"image {image['id']}: needs a file_name")
            continue
        if image["id"] in images:
            problems.append(f"image {image['id']}: id used twice")
            continue
        images[image["id"]] = CocoImage(Path(image["file_name"]).name, image["width"], image["height"], [])
    for index, ann in enumerate(doc["annotations"]):
        where = f"annotation {ann.get('id', index) if isinstance(ann, dict) else index}"
        if not isinstance(ann, dict):
            problems.append(f"{where}: not an object")
            continue
        image = images.get(ann.get("image_id")) if _is_int(ann.get("image_id")) else None
        if image is None:
            problems.append(f"{where}: image_id {ann.get('image_id')!r} is not in images")
            continue
        category = ann.get("category_id")
        if category is not None and category not in categories:
            problems.append(f"{where}: category_id {category!r} is not in categories")
            continue
        try:
            rle = segmentation_to_rle(ann.get("segmentation"), image.height, image.width)
        except ValueError as exc:
            problems.append(f"{where}: segmentation: {exc}")
            continue
        extra = {k: v for k, v in ann.items() if k not in _COCO_KEYS}
        image.annotations.append(
            {
                "segmentation": rle,
                "category": categories.get(category) if category is not None else None,
                "iscrowd": bool(ann.get("iscrowd", 0)),
                "extra": extra,
            }
        )
    if problems:
        raise CocoFormatError(f"{source}: {len(problems)} bad record(s)", problems)
    return list(images.values())


_COCO_KEYS = {"id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd"}


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) as compressed RLE."""
    if isinstance(segmentation, list):
        if not segmentation or not all(
            isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(_is_number(v) for v in p)
            for p in segmentation
        ):
            raise ValueError("polygons must be lists of at least 3 x, y number pairs")
        return polygons_to_rle([[float(v) for v in p] for p in segmentation], height, width)
    return validate_rle(segmentation, height, width)  # compressed or uncompressed (crowd) RLE


def iter_annotations(images: list[CocoImage]) -> Iterator[tuple[CocoImage, dict[str, Any]]]:
    for image in images:
        for ann in image.annotations:
            yield image, ann


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _name(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and len(value) <= 500
