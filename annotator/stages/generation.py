"""The per-image work of the automatic stages: read the image, run the automatic mask generator of
the project's model, and turn its records into mask field values.

The model itself is loaded through ``annotator.training.services.predictor_for`` (one model per
worker process, keyed by ModelVersion, replaced when the active version changes); this module only
wraps it in an ``engine.automatic.MaskGenerator`` per parameter set. ``MASKMILL_MASK_GENERATOR``
(a dotted path, optional setting) names another factory with the same signature; the integration
tests use it to run a cheap deterministic generator in real worker processes.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from annotator.images.embeddings import load_stored
from annotator.images.models import Image
from annotator.training.models import ModelVersion
from engine.images import ImageReadError, read_image

log = logging.getLogger(__name__)

DEFAULT_FACTORY = "annotator.stages.generation.engine_mask_generator"

# MaskGenerator keyword arguments a project may set (everything else in the stored JSON is refused).
GENERATOR_PARAMETERS = (
    "points_per_side",
    "points_per_batch",
    "pred_iou_thresh",
    "stability_score_thresh",
    "stability_score_offset",
    "box_nms_thresh",
    "crop_n_layers",
    "crop_nms_thresh",
    "crop_overlap_ratio",
    "crop_n_points_downscale_factor",
    "min_mask_region_area",
)


class BadImage(ValueError):
    """The item's image cannot be processed (missing file, unreadable bytes): fail the item, not the run."""


class Generator(Protocol):
    def generate(self, image: Any) -> list[dict[str, Any]]: ...


@dataclass
class GenerationResult:
    records: list[dict[str, Any]]
    seconds: dict[str, float] = field(default_factory=dict)  # read / encoder+decoder / total
    reused_embedding: bool = False


def check_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """The generator keyword arguments from a project's stored parameters, or ValueError saying why."""
    unknown = sorted(set(params) - set(GENERATOR_PARAMETERS))
    if unknown:
        raise ValueError(
            f"unknown generator parameter(s) {', '.join(unknown)}; allowed: {', '.join(GENERATOR_PARAMETERS)}"
        )
    for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_nms_thresh"):
        if name in params and not (isinstance(params[name], (int, float)) and 0 <= params[name] <= 1):
            raise ValueError(f"{name} must be a number between 0 and 1, got {params[name]!r}")
    for name in ("points_per_side", "points_per_batch"):
        if name in params and not (isinstance(params[name], int) and params[name] >= 1):
            raise ValueError(f"{name} must be a positive integer, got {params[name]!r}")
    return dict(params)


def engine_mask_generator(model_version: ModelVersion, params: dict[str, Any]) -> Generator:
    """``engine.automatic.MaskGenerator`` on the process's loaded model, COCO RLE output; its
    ``generate(image, embedding=...)`` can start from a stored embedding."""
    from annotator.training.services import predictor_for
    from engine.automatic import MaskGenerator

    model = predictor_for(model_version).model
    return MaskGenerator(model, output_mode="coco_rle", **params)


_generators_lock = threading.Lock()
_generators: dict[tuple[str, int, str], Generator] = {}


def generator_for(model_version: ModelVersion, params: dict[str, Any]) -> Generator:
    """The generator for (model version, parameters), built once per process.

    Built generators share the one loaded model; when the version changes the old ones are
    dropped so their model can be freed.
    """
    factory_path = settings.MASKMILL_MASK_GENERATOR or DEFAULT_FACTORY
    key = (factory_path, model_version.pk, json.dumps(params, sort_keys=True))
    with _generators_lock:
        found = _generators.get(key)
        if found is None:
            for stale in [k for k in _generators if k[1] != model_version.pk or k[0] != factory_path]:
                del _generators[stale]
            found = _generators[key] = import_string(factory_path)(model_version, params)
        return found


def forget_generators() -> None:
    with _generators_lock:
        _generators.clear()


def read_item_image(image: Image) -> Any:
    """The image's pixels (RGB uint8, EXIF applied) or BadImage with what is wrong."""
    if not image.file:
        raise BadImage(f"image {image.pk} has no stored file")
    try:
        with image.file.open("rb") as fileobj:
            data = fileobj.read()
    except FileNotFoundError as exc:
        raise BadImage(f"image {image.pk}: file {image.file.name} has vanished from storage") from exc
    except OSError as exc:
        raise BadImage(f"image {image.pk}: file {image.file.name} cannot be read ({exc})") from exc
    try:
        pixels = read_image(data, max_pixels=settings.MASKMILL_MAX_IMAGE_PIXELS)
    except ImageReadError as exc:
        raise BadImage(f"image {image.pk}: file {image.file.name} is not a usable image ({exc})") from exc
    if pixels.shape[:2] != (image.height, image.width):
        raise BadImage(
            f"image {image.pk}: file {image.file.name} is {pixels.shape[1]}x{pixels.shape[0]}, the database "
            f"says {image.width}x{image.height}; the file was replaced"
        )
    return pixels


def _takes_embedding(generator: Generator) -> bool:
    try:
        return "embedding" in inspect.signature(generator.generate).parameters
    except (TypeError, ValueError):
        return False


def run_generator(image: Image, model_version: ModelVersion, params: dict[str, Any]) -> GenerationResult:
    """Records for one image (BadImage when the image cannot be read)."""
    started = time.perf_counter()
    pixels = read_item_image(image)
    read_done = time.perf_counter()
    generator = generator_for(model_version, params)
    reused = False
    # A generator from MASKMILL_MASK_GENERATOR may not take an embedding; engine's does.
    if _takes_embedding(generator) and not params.get("crop_n_layers"):
        stored = load_stored(image, model_version)
        if stored is not None:
            records = generator.generate(pixels, embedding=stored.tensor)
            reused = True
    if not reused:
        records = generator.generate(pixels)
    finished = time.perf_counter()
    return GenerationResult(
        records=list(records),
        seconds={"read": read_done - started, "generate": finished - read_done, "total": finished - started},
        reused_embedding=reused,
    )


def record_fields(record: dict[str, Any]) -> dict[str, Any]:
    """Mask field values from one generator record (COCO RLE, XYWH boxes, plain JSON numbers)."""
    rle = record["segmentation"]
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if not isinstance(counts, str):
        raise ValueError(
            "the generator must output COCO RLE (output_mode='coco_rle'), got uncompressed counts"
        )
    return {
        "segmentation": {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts},
        "bbox": [float(v) for v in record["bbox"]],
        "area": int(record["area"]),
        "predicted_iou": float(record["predicted_iou"]),
        "stability_score": float(record["stability_score"]),
        "point_coords": [[float(x), float(y)] for x, y in record["point_coords"]],
        "crop_box": [float(v) for v in record["crop_box"]],
    }
