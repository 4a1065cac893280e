"""Label Studio tasks JSON: a streaming writer of one task per image (``brushlabels`` results whose
RLE comes from ``engine.formats.brush``, i.e. label-studio-sdk) and a reader of Label Studio's
JSON export (brush, polygon and rectangle results).

Image URLs: Label Studio opens ``data.image`` itself, so the URL must be one it can read. The
writer fills a template with ``{file_name}`` and ``{image_id}``; the default points at Label
Studio's local-files storage (``/data/local-files/?d=...``), see docs/exports.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import quoteattr

import numpy as np

from engine.formats.brush import BrushFormatError, brush_rle_to_mask, mask_to_brush_rle
from engine.formats.coco import polygons_to_rle
from engine.masks import decode_rle, encode_rle

DEFAULT_IMAGE_URL = "/data/local-files/?d=maskmill/{file_name}"
FROM_NAME = "label"
TO_NAME = "image"


class LabelStudioFormatError(ValueError):
    """A Label Studio file that cannot be imported; ``problems`` lists one reason per bad record."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or [message]
        super().__init__(message if not problems else f"{message}: {'; '.join(problems[:20])}")


# --- writer --------------------------------------------------------------------------------------


def brush_result(
    mask_rle: dict[str, Any], label: str | None, result_id: str, extra: dict | None = None
) -> dict:
    """One ``brushlabels`` result for a COCO RLE mask."""
    height, width = mask_rle["size"]
    result = {
        "id": result_id,
        "type": "brushlabels",
        "from_name": FROM_NAME,
        "to_name": TO_NAME,
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": {
            "format": "rle",
            "rle": mask_to_brush_rle(decode_rle(mask_rle)),
            "brushlabels": [label] if label else [],
        },
    }
    if extra:
        result["meta"] = {"maskmill": extra}
    return result


def label_config(labels: list[tuple[str, str]]) -> str:
    """The labelling config that reads these tasks: an Image and BrushLabels with the labels."""
    rows = "".join(
        f"\n    <Label value={quoteattr(name)} background={quoteattr(color)}/>" for name, color in labels
    )
    return (
        f'<View>\n  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
        f'  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">{rows}\n  </BrushLabels>\n</View>\n'
    )


class TasksWriter:
    """A JSON array of tasks written one at a time (through ``<path>.partial``)."""

    def __init__(self, path: str | os.PathLike, image_url: str = DEFAULT_IMAGE_URL) -> None:
        self.path = Path(path)
        self.image_url = image_url
        self.tmp = self.path.with_name(self.path.name + ".partial")
        self.out = open(self.tmp, "wb")  # noqa: SIM115 - closed in close()/abort()
        self.digest = hashlib.sha256()
        self.count = 0
        self._put(b"[")

    def _put(self, data: bytes) -> None:
        self.digest.update(data)
        self.out.write(data)

    def add_task(self, image: dict[str, Any], results: list[dict[str, Any]]) -> None:
        """``image``: id, file_name, width, height."""
        url = self.image_url.format(file_name=image["file_name"], image_id=image["id"])
        task = {
            "data": {TO_NAME: url, "maskmill_image_id": image["id"], "file_name": image["file_name"]},
            "annotations": [{"result": results, "ground_truth": False}],
        }
        text = json.dumps(task, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        self._put((b"," if self.count else b"") + text.encode("utf-8"))
        self.count += 1

    def close(self) -> dict[str, Any]:
        self._put(b"]")
        self.out.close()
        os.replace(self.tmp, self.path)
        return {"file": self.path.name, "bytes": self.path.stat().st_size, "sha256": self.digest.hexdigest()}

    def abort(self) -> None:
        self.out.close()
        self.tmp.unlink(missing_ok=True)


# --- reader --------------------------------------------------------------------------------------


@dataclass
class LSResult:
    """One region of an annotation: ``kind`` brush, polygon or rectangle."""

    kind: str
    label: str | None
    value: dict[str, Any]
    original_size: tuple[int, int] | None  # (height, width) when the result says

    def check_size(self, height: int, width: int) -> None:
        if self.original_size is not None and self.original_size != (height, width):
            h, w = self.original_size
            raise ValueError(f"result is for a {w}x{h} image, the image is {width}x{height}")

    def to_rle(self, height: int, width: int) -> dict[str, Any]:
        """The region as COCO RLE at the image's size (brush or polygon)."""
        self.check_size(height, width)
        if self.kind == "brush":
            try:
                return encode_rle(brush_rle_to_mask(self.value["rle"], height, width))
            except BrushFormatError as exc:
                raise ValueError(str(exc)) from exc
        if self.kind == "polygon":
            points = [(x * width / 100.0, y * height / 100.0) for x, y in self.value["points"]]
            return polygons_to_rle([[float(v) for p in points for v in p]], height, width)
        raise ValueError(f"a {self.kind} result has no mask of its own")

    def box(self, height: int, width: int) -> np.ndarray:
        """A rectangle as an XYXY pixel box (its unrotated extent)."""
        self.check_size(height, width)
        v = self.value
        x0, y0 = v["x"] * width / 100.0, v["y"] * height / 100.0
        x1, y1 = x0 + v["width"] * width / 100.0, y0 + v["height"] * height / 100.0
        box = np.array([max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)], dtype=np.float32)
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            raise ValueError("the rectangle covers less than a pixel inside the image")
        return box


@dataclass
class LSTask:
    file_name: str
    results: list[LSResult]
    ignored: int  # results of other types (choices, text, ...)


_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


def file_name_from_url(url: str) -> str:
    """The image's file name in a Label Studio task URL: an upload (``/data/upload/3/1a2b3c4d-x.jpg``,
    its random prefix removed), a local file (``/data/local-files/?d=dir/x.jpg``) or any URL."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    path = query["d"][0] if query.get("d") else unquote(parts.path)
    name = PurePosixPath(path.replace("\\", "/")).name
    if "/data/upload/" in parts.path:
        name = _UPLOAD_PREFIX.sub("", name)
    return name


def read_tasks(data: bytes | str, source: str = "<tasks>") -> list[LSTask]:
    """Parse a Label Studio JSON export completely; every bad record is named in one error."""
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LabelStudioFormatError(f"{source}: not valid JSON ({exc})") from exc
    if isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list):
        raise LabelStudioFormatError(f"{source}: expected a list of tasks")
    tasks, problems = [], []
    for index, task in enumerate(doc):
        where = f"task {task.get('id', index) if isinstance(task, dict) else index}"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            problems.append(f"{where}: needs a data object")
            continue
        url = task["data"].get(TO_NAME)
        if not isinstance(url, str):
            url = next((v for v in task["data"].values() if isinstance(v, str) and v), None)
        if not url:
            problems.append(f"{where}: data has no image URL")
            continue
        name = file_name_from_url(url)
        if not name:
            problems.append(f"{where}: no file name in the image URL {url[:200]!r}")
            continue
        results, ignored = [], 0
        annotations = task.get("annotations", [])
        if not isinstance(annotations, list):
            problems.append(f"{where}: annotations must be a list")
            continue
        for a_index, annotation in enumerate(annotations):
            if not isinstance(annotation, dict) or not isinstance(annotation.get("result", []), list):
                problems.append(f"{where} annotation {a_index}: needs a result list")
                continue
            if annotation.get("was_cancelled"):
                continue
            for r_index, result in enumerate(annotation.get("result", [])):
                try:
                    parsed = _parse_result(result)
                except ValueError as exc:
                    problems.append(f"{where} annotation {a_index} result {r_index}: {exc}")
                    continue
                if parsed is None:
                    ignored += 1
                else:
                    results.append(parsed)
        tasks.append(LSTask(name, results, ignored))
    if problems:
        raise LabelStudioFormatError(f"{source}: {len(problems)} bad record(s)", problems)
    return tasks


def _parse_result(result: Any) -> LSResult | None:
    if not isinstance(result, dict) or not isinstance(result.get("value"), dict):
        raise ValueError("needs a value object")
    kind = {"brushlabels": "brush", "polygonlabels": "polygon", "rectanglelabels": "rectangle"}.get(
        result.get("type")
    )
    if kind is None:
        return None
    value = result["value"]
    size = None
    if "original_width" in result or "original_height" in result:
        w, h = result.get("original_width"), result.get("original_height")
        if not (_is_int(w) and _is_int(h) and w > 0 and h > 0):
            raise ValueError("original_width and original_height must be positive integers")
        size = (h, w)
    labels = value.get(f"{result['type']}", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"{result['type']} must be a list of label names")
    label = labels[0].strip() if labels and labels[0].strip() else None
    if kind == "brush":
        if value.get("format", "rle") != "rle" or not isinstance(value.get("rle"), list):
            raise ValueError('a brush result needs value.format "rle" and value.rle')
    elif kind == "polygon":
        points = value.get("points")
        if (
            not isinstance(points, list)
            or len(points) < 3
            or not all(isinstance(p, list) and len(p) == 2 and all(_is_number(v) for v in p) for p in points)
        ):
            raise ValueError("a polygon needs at least 3 [x, y] points (percent)")
    else:
        if not all(_is_number(value.get(k)) for k in ("x", "y", "width", "height")):
            raise ValueError("a rectangle needs numbers x, y, width, height (percent)")
    return LSResult(kind, label, value, size)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
