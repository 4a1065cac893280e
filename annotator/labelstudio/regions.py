"""Label Studio's JSON ↔ Maskmill masks: the labelling config built from a project's labels, its
controls read back, and the regions of a result (brush RLE, polygons, rectangles, key points in
percent coordinates) checked and turned into pixels. No database access: callers pass labels and
image sizes, and get a RegionError naming what is wrong (a 400 for the request that sent it)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from engine.formats import label_studio as ls_format
from engine.formats.brush import BrushFormatError, brush_rle_to_mask
from engine.formats.coco import polygons_to_rle
from engine.masks import decode_rle, encode_rle

MAX_CONFIG_CHARS = 200_000
MAX_POLYGON_POINTS = 10_000
BRUSH, POLYGON, RECTANGLE, KEYPOINT = "brushlabels", "polygonlabels", "rectanglelabels", "keypointlabels"
# The control tags of a labelling config and the result type each produces.
CONTROL_TYPES = {
    "brushlabels": BRUSH,
    "polygonlabels": POLYGON,
    "rectanglelabels": RECTANGLE,
    "keypointlabels": KEYPOINT,
}


class RegionError(ValueError):
    """A Label Studio result (or config) Maskmill cannot use; the message says which part and why."""


# ------------------------------------------------------------------------------------------------
# Labelling config


def label_config(labels: Iterable[tuple[str, str]]) -> str:
    """The config a pushed project gets: brush labels for masks, plus key points and rectangles
    marked ``smart`` so Label Studio sends them to the ML backend as interactive prompts."""
    items = "".join(
        f"<Label value={quoteattr(name)} background={quoteattr(color)}/>" for name, color in labels
    )
    return (
        "<View>"
        '<Image name="image" value="$image" zoom="true" zoomControl="true"/>'
        f'<BrushLabels name="tag" toName="image">{items}</BrushLabels>'
        f'<KeyPointLabels name="click" toName="image" smart="true">{items}</KeyPointLabels>'
        f'<RectangleLabels name="box" toName="image" smart="true">{items}</RectangleLabels>'
        "</View>"
    )


@dataclass(frozen=True)
class Control:
    name: str
    to_name: str
    labels: tuple[str, ...]


def controls(config: Any) -> dict[str, Control]:
    """The config's first control of each result type (``brushlabels`` → its name, target and
    labels). RegionError for a config that is not a Label Studio XML config."""
    if not isinstance(config, str) or not config.strip():
        raise RegionError("label_config must be a Label Studio labelling config (XML text)")
    if len(config) > MAX_CONFIG_CHARS:
        raise RegionError(f"label_config is over {MAX_CONFIG_CHARS} characters")
    if "<!DOCTYPE" in config.upper() or "<!ENTITY" in config.upper():
        raise RegionError("label_config must not declare a DOCTYPE or entities")
    try:
        root = ET.fromstring(config)
    except ET.ParseError as error:
        raise RegionError(f"label_config is not well-formed XML ({error})") from None
    found: dict[str, Control] = {}
    for element in root.iter():
        kind = CONTROL_TYPES.get(str(element.tag).lower())
        if kind is None or kind in found:
            continue
        labels = tuple(str(child.get("value")) for child in element if child.get("value") is not None)
        found[kind] = Control(str(element.get("name", "")), str(element.get("toName", "")), labels)
    return found


# ------------------------------------------------------------------------------------------------
# Regions


@dataclass(frozen=True)
class Region:
    """One region of a result in image pixels: a mask (brush, polygon) or a box/point prompt."""

    region_id: str
    kind: str
    label: str | None
    mask: np.ndarray | None = None  # H×W bool (brush, polygon)
    box: tuple[float, float, float, float] | None = None  # XYXY (rectangle)
    point: tuple[float, float] | None = None  # XY (key point)
    positive: bool = True


def _percent(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RegionError(f"{what} must be a number (percent of the image), got {value!r}")
    if not -1e-6 <= value <= 100 + 1e-6:
        raise RegionError(f"{what} is {value}, outside 0-100 (percent of the image)")
    return float(min(max(value, 0.0), 100.0))


def _label(value: dict[str, Any], kind: str) -> str | None:
    names = value.get(kind)
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RegionError(f"value.{kind} must be a list of label names")
    if len(names) > 1:
        raise RegionError(f"a region has one label in Maskmill; got {names}")
    return names[0] if names else None


def _size(item: dict[str, Any], width: int, height: int) -> None:
    ow, oh = item.get("original_width"), item.get("original_height")
    if ow is None and oh is None:
        return
    if (ow, oh) != (width, height):
        raise RegionError(
            f"region {item.get('id')!r} was drawn on a {ow}x{oh} image; the task's image is {width}x{height}"
        )


def parse_region(item: Any, width: int, height: int) -> Region:
    """One item of a Label Studio ``result`` list, checked against a ``width``×``height`` image."""
    if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
        raise RegionError("each result item must be an object with a 'value' object")
    kind = item.get("type")
    value = item["value"]
    region_id = item.get("id")
    region_id = str(region_id)[:100] if isinstance(region_id, (str, int)) and str(region_id) else ""
    if kind not in (BRUSH, POLYGON, RECTANGLE, KEYPOINT):
        raise RegionError(
            f"result type {kind!r} is not supported; use brushlabels, polygonlabels, "
            "rectanglelabels or keypointlabels"
        )
    _size(item, width, height)
    label = _label(value, kind)
    if kind == BRUSH:
        if value.get("format", "rle") != "rle":
            raise RegionError(f"brush format {value.get('format')!r} is not supported; use 'rle'")
        try:
            mask = brush_rle_to_mask(value.get("rle"), height, width)
        except BrushFormatError as error:
            raise RegionError(f"region {region_id!r}: {error}") from None
        return Region(region_id, kind, label, mask=mask)
    if kind == POLYGON:
        return Region(region_id, kind, label, mask=polygon_mask(value.get("points"), width, height))
    if value.get("rotation") not in (None, 0, 0.0):
        raise RegionError(f"region {region_id!r}: rotated shapes are not supported")
    x, y = _percent(value.get("x"), "value.x"), _percent(value.get("y"), "value.y")
    if kind == KEYPOINT:
        positive = item.get("is_positive", True)
        return Region(
            region_id, kind, label, point=(x * width / 100, y * height / 100), positive=positive is not False
        )
    w, h = _percent(value.get("width"), "value.width"), _percent(value.get("height"), "value.height")
    if x + w > 100 + 1e-3 or y + h > 100 + 1e-3:
        raise RegionError(
            f"region {region_id!r}: the rectangle reaches outside the image (x+width or y+height > 100)"
        )
    box = (x * width / 100, y * height / 100, min(x + w, 100) * width / 100, min(y + h, 100) * height / 100)
    return Region(region_id, kind, label, box=box)


def polygon_mask(points: Any, width: int, height: int) -> np.ndarray:
    """A polygon in percent coordinates rasterised the way COCO polygons are (pycocotools)."""
    if not isinstance(points, list) or not 3 <= len(points) <= MAX_POLYGON_POINTS:
        raise RegionError(f"value.points must be a list of 3 to {MAX_POLYGON_POINTS} [x, y] pairs")
    flat: list[float] = []
    for index, pair in enumerate(points):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise RegionError(f"value.points[{index}] must be an [x, y] pair")
        flat += [
            _percent(pair[0], f"value.points[{index}][0]") * width / 100,
            _percent(pair[1], f"value.points[{index}][1]") * height / 100,
        ]
    return decode_rle(polygons_to_rle([flat], height, width))


def brush_result(
    mask: np.ndarray | dict[str, Any],
    label: str | None,
    control: Control,
    *,
    region_id: str,
    score: float | None = None,
) -> dict[str, Any]:
    """A ``brushlabels`` result item for a mask (boolean H×W or COCO RLE), addressed to the
    project's own BrushLabels control: the exports' writer's item (one converter for both)."""
    rle = mask if isinstance(mask, dict) else encode_rle(np.asarray(mask, dtype=bool))
    item = ls_format.brush_result(rle, label, region_id)
    item["from_name"], item["to_name"] = control.name, control.to_name
    if score is not None:
        item["score"] = float(score)
    return item


def check_labels(regions: Sequence[Region], known: Iterable[str]) -> None:
    """RegionError naming every label the project does not have."""
    names = set(known)
    unknown = sorted({r.label for r in regions if r.label is not None and r.label not in names})
    if unknown:
        raise RegionError(
            f"unknown label(s) {', '.join(map(repr, unknown))}; the project's labels are "
            f"{', '.join(map(repr, sorted(names))) or 'none'}"
        )
