"""The in-process parts of interactive segmentation: prompt validation, the memory caches (image
embeddings, classic-segmenter states) and decoding one prompt set. The logits handles, which must
resolve in any web process, are in ``logits``.

Everything here is per web process and thread-safe. Nothing is a Celery task: a click is decoded in
the request that carries it, from an embedding already in memory, in milliseconds.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from annotator.annotation.logits import HANDLE_PATTERN, LogitsEntry
from annotator.annotation.lowres import upsample_masks, upsample_masks_rle
from engine import prompts as engine_prompts

MAX_POINTS = 64
STORED_MASK_PATTERN = re.compile(r"^mask:(\d{1,18})$")
PROMPT_FIELDS = {"points", "labels", "box", "mask_input", "mask_index", "multimask"}
# engine.prompts names the predictor's argument; the body's field has another name.
FIELD_OF_ARGUMENT = {"point_coords": "points", "point_labels": "labels", "box": "box"}


class PromptError(ValueError):
    """Malformed prompts: ``errors`` maps each bad field to the reason (the 400 body)."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


@dataclass(frozen=True)
class Prompts:
    """Validated prompts in image pixels. ``mask_input`` is still the client's reference: a logits
    handle (``lg-…``) or a stored mask (``mask:<id>``), resolved by the service."""

    points: np.ndarray | None  # (N, 2) float64, XY
    labels: np.ndarray | None  # (N,) int64, 1 foreground / 0 background
    box: np.ndarray | None  # (4,) float64, XYXY
    mask_input: str | None
    mask_index: int | None
    multimask: bool

    @property
    def clicks(self) -> int:
        return 0 if self.points is None else len(self.points)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_prompts(data: Any, width: int, height: int) -> Prompts:
    """The predict body → Prompts, or PromptError naming every bad field and why."""
    if not isinstance(data, dict):
        raise PromptError(
            {"body": "send a JSON object {points, labels, box, mask_input, mask_index, multimask}"}
        )
    errors: dict[str, str] = {}
    unknown = sorted(set(data) - PROMPT_FIELDS)
    if unknown:
        errors["body"] = f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(PROMPT_FIELDS))}"

    # The JSON's shape is checked here; what the numbers may be is engine.prompts' rule, the same
    # one both predictors apply, its errors translated to this body's field names.
    points = labels = box = None
    raw_points, raw_labels = data.get("points") or [], data.get("labels") or []
    if not isinstance(raw_points, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(_number(v) for v in p) for p in raw_points
    ):
        errors["points"] = "must be a list of [x, y] pairs of finite numbers (image pixels)"
    elif len(raw_points) > MAX_POINTS:
        errors["points"] = f"at most {MAX_POINTS} points per request, got {len(raw_points)}"
    if not isinstance(raw_labels, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in raw_labels
    ):
        errors["labels"] = "must be a list of 1 (object) or 0 (background), one per point"
    elif "points" not in errors and len(raw_labels) != len(raw_points):
        errors["labels"] = f"got {len(raw_labels)} labels for {len(raw_points)} points; send one per point"
    if "points" not in errors and "labels" not in errors and raw_points:
        try:
            points, labels = engine_prompts.check_points(raw_points, raw_labels, (height, width))
        except engine_prompts.PromptValueError as exc:
            errors[FIELD_OF_ARGUMENT[exc.argument]] = str(exc)

    raw_box = data.get("box")
    if raw_box is not None:
        if not (isinstance(raw_box, list) and len(raw_box) == 4 and all(_number(v) for v in raw_box)):
            errors["box"] = "must be null or [x0, y0, x1, y1] (four finite numbers, image pixels)"
        else:
            try:
                box = engine_prompts.check_box(raw_box, (height, width))
            except engine_prompts.PromptValueError as exc:
                errors["box"] = str(exc)

    mask_input = data.get("mask_input")
    if mask_input is not None and not (
        isinstance(mask_input, str)
        and (HANDLE_PATTERN.match(mask_input) or STORED_MASK_PATTERN.match(mask_input))
    ):
        errors["mask_input"] = (
            'must be null, a logits_handle from an earlier answer ("lg-" + 24 hex digits) or "mask:<id>"'
        )
    mask_index = data.get("mask_index")
    if mask_index is not None and not (
        isinstance(mask_index, int) and not isinstance(mask_index, bool) and 0 <= mask_index < 16
    ):
        errors["mask_index"] = "must be null or the index (0, 1, 2) of the candidate the handle refers to"
    multimask = data.get("multimask", True)
    if not isinstance(multimask, bool):
        errors["multimask"] = "must be true or false"

    if not errors:
        try:
            engine_prompts.check_any_prompt(points is not None, box is not None, mask_input is not None)
        except engine_prompts.PromptValueError as exc:
            errors["body"] = str(exc)
    if errors:
        raise PromptError(errors)
    return Prompts(points, labels, box, mask_input, mask_index, bool(multimask))


# ------------------------------------------------------------------------------------------------
# Caches

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """A thread-safe LRU bounded by entry count and by total bytes (``size_of``), whose
    ``get_or_create`` runs the factory once per key however many threads ask at the same moment
    (the others wait for that result instead of computing their own)."""

    def __init__(
        self, max_items: int, max_bytes: int | None = None, size_of: Callable[[V], int] = lambda v: 0
    ):
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        self.max_items, self.max_bytes, self.size_of = max_items, max_bytes, size_of
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._building: dict[K, threading.Event] = {}
        self.created = 0  # factory calls that produced a value (for tests and benchmarks)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            self._items.move_to_end(key)
            return found[0]

    def put(self, key: K, value: V) -> None:
        size = int(self.size_of(value))
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while len(self._items) > self.max_items or (
                self.max_bytes is not None and self._bytes > self.max_bytes and len(self._items) > 1
            ):
                _, (_, evicted) = self._items.popitem(last=False)
                self._bytes -= evicted

    def pop(self, key: K) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def get_or_create(self, key: K, factory: Callable[[], V | None], timeout: float = 600.0) -> V | None:
        """The cached value, or the factory's (run by exactly one caller per key at a time)."""
        for _ in range(3):  # a waiter retries when the builder failed or produced nothing
            with self._lock:
                found = self._items.get(key)
                if found is not None:
                    self._items.move_to_end(key)
                    return found[0]
                event = self._building.get(key)
                builder = event is None
                if builder:
                    event = self._building[key] = threading.Event()
            if not builder:
                event.wait(timeout)
                continue
            try:
                value = factory()
                if value is not None:
                    self.put(key, value)
                    with self._lock:
                        self.created += 1
                return value
            finally:
                with self._lock:
                    self._building.pop(key, None)
                event.set()
        return self.get(key)


@dataclass(frozen=True)
class DecodeState:
    """An image ready for the mask decoder: its embedding, the two sizes the prompts need and,
    for engine.sam models, the embedding's share of the decoder done once (``prepared``, built by
    ``decode_state_for``)."""

    features: Any  # torch.Tensor (1, C, h, w) float32; None once ``prepared`` holds the image
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    prepared: Any = None  # engine.sam.prepared.PreparedImage

    @property
    def nbytes(self) -> int:
        total = 0 if self.prepared is None else self.prepared.nbytes
        if self.features is not None:
            total += self.features.numel() * self.features.element_size()
        return int(total)


def decode_state_for(
    model: Any, features: Any, original_size: tuple[int, int], input_size: tuple[int, int]
) -> DecodeState:
    """A DecodeState with the image side of the decoder prepared (a few ms, once per image) when
    the model supports it."""
    from engine.sam import prepared

    if not prepared.supports(model):
        return DecodeState(features=features, original_size=original_size, input_size=input_size)
    ready = prepared.prepare_image(model, features)  # holds what decoding needs of the embedding
    return DecodeState(features=None, original_size=original_size, input_size=input_size, prepared=ready)


@dataclass
class ClassicState:
    """A classic segmenter holding one image; its ``predict`` mutates internal caches, hence the lock."""

    predictor: Any
    lock: threading.Lock
    nbytes: int
    pixels: Any = None  # the RGB image (label suggestions describe a mask by its pixels)


def select_logits(entry: LogitsEntry, mask_index: int | None) -> np.ndarray:
    """The (1, 256, 256) mask prompt from a stored answer: the candidate the client selected, else
    the highest-scoring one (what the page shows first)."""
    if mask_index is None:
        mask_index = int(np.argmax(entry.scores))
    if not 0 <= mask_index < entry.low_res.shape[0]:
        raise PromptError(
            {"mask_index": f"the handle holds {entry.low_res.shape[0]} candidate(s); got index {mask_index}"}
        )
    return entry.low_res[mask_index][None]


# ------------------------------------------------------------------------------------------------
# Decoding


_dense_pe_lock = threading.Lock()
_dense_pe: dict[int, Any] = {}


def dense_pe(model: Any) -> Any:
    """The prompt encoder's positional encoding of the embedding grid: the same for every image,
    computed once per loaded model."""
    with _dense_pe_lock:
        found = _dense_pe.get(id(model))
        if found is None or found[0] is not model:
            import torch

            with torch.inference_mode():
                found = _dense_pe[id(model)] = (model, model.prompt_encoder.get_dense_pe())
        return found[1]


def decode_low_res(
    model: Any, state: DecodeState, prompts: Prompts, mask_logits: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Run the prompt encoder and mask decoder on a cached embedding: the same computation as
    ``SamPredictor.predict`` minus the full-resolution postprocessing. Returns low-res logits
    (C, 256, 256) and predicted IoUs (C,)."""
    import torch

    from engine.sam.prepared import decode_prompts
    from engine.transforms import ResizeLongestSide

    transform = ResizeLongestSide(model.image_encoder.img_size)
    device = model.device
    with torch.inference_mode():
        points = None
        if prompts.points is not None:
            coords = transform.apply_coords(prompts.points.copy(), state.original_size)
            points = (
                torch.as_tensor(coords, dtype=torch.float, device=device)[None],
                torch.as_tensor(prompts.labels, dtype=torch.int, device=device)[None],
            )
        boxes = None
        if prompts.box is not None:
            boxes = torch.as_tensor(
                transform.apply_boxes(prompts.box.reshape(1, 4).copy(), state.original_size),
                dtype=torch.float,
                device=device,
            )
        masks = None
        if mask_logits is not None:
            masks = torch.as_tensor(mask_logits, dtype=torch.float, device=device)[None]
        image_pe = None if state.prepared is not None else dense_pe(model)
        low_res, iou = decode_prompts(
            model, state.prepared, state.features, image_pe, points, boxes, masks, prompts.multimask
        )
    return low_res[0].float().numpy(), iou[0].float().numpy()


def _upsampling(model: Any, state: DecodeState) -> dict[str, Any]:
    """The sizes and threshold of SAM's postprocessing for this image and model."""
    return {
        "input_size": state.input_size,
        "original_size": state.original_size,
        "square": model.image_encoder.img_size,
        "threshold": float(model.mask_threshold),
    }


def masks_from_low_res(model: Any, state: DecodeState, low_res: np.ndarray) -> np.ndarray:
    """(C, H, W) bool masks at image resolution, equal to the official postprocessing + threshold."""
    return upsample_masks(low_res, **_upsampling(model, state))


def rles_from_low_res(model: Any, state: DecodeState, low_res: np.ndarray) -> list[dict]:
    """The COCO RLEs of ``masks_from_low_res`` without building row-major masks first."""
    return upsample_masks_rle(low_res, **_upsampling(model, state))
