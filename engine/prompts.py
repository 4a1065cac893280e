"""Validation of the prompts of one image, shared by every predictor and the HTTP layer.

``Predictor`` (SAM), ``ClassicPredictor`` and the annotation API all accept the same prompts with
the same rules: points inside the image with labels 1 (object) or 0 (background), at most one XYXY
box inside the image with its left-top corner first (a zero-width box is a line, allowed), a
mask prompt of the model's low-res logits, and at least one of them. Each check raises
``PromptValueError`` (a ValueError) naming the argument, so the HTTP layer can answer per field.
"""

from __future__ import annotations

import numpy as np

LABELS = (0, 1)  # 0: background, 1: object (SAM's "foreground")


class PromptValueError(ValueError):
    """A bad prompt argument: ``argument`` is its name in ``predict`` (point_coords, point_labels,
    box, mask_input, multimask_output) or ``prompts`` when none was given."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(message)
        self.argument = argument


def numeric(value: object, name: str) -> np.ndarray:
    """``value`` as a real, finite numeric array (torch tensors are moved to the CPU first)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
    array = np.asarray(value)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise PromptValueError(name, f"{name} must be numeric, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise PromptValueError(name, f"{name} must be real numbers, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise PromptValueError(name, f"{name} contains NaN or infinite values")
    return array


def check_points(
    coords: object, labels: object, image_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    """(coords Nx2 float64 XY, labels N int64), or (None, None) without points. ``image_size`` is
    (height, width); a point may lie on the far edge (x == width)."""
    if coords is None and labels is None:
        return None, None
    if coords is None or labels is None:
        name = "point_labels" if coords is not None else "point_coords"
        raise PromptValueError(name, "point_coords and point_labels must be given together")
    coords = numeric(coords, "point_coords").astype(np.float64)
    labels = numeric(labels, "point_labels")
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise PromptValueError(
            "point_coords", f"point_coords must be Nx2 (x, y), shape (N, 2), got shape {coords.shape}"
        )
    if labels.shape != (coords.shape[0],):
        raise PromptValueError(
            "point_labels",
            f"point_labels must have shape ({coords.shape[0]},) to match point_coords, got {labels.shape}",
        )
    if not np.isin(labels, LABELS).all():
        bad = sorted(set(np.unique(labels).tolist()) - set(LABELS))
        raise PromptValueError(
            "point_labels",
            f"point_labels must be 1 (object) or 0 (background) — SAM's 1 (foreground) and 0 — got {bad}",
        )
    height, width = image_size
    outside = (coords[:, 0] < 0) | (coords[:, 0] > width) | (coords[:, 1] < 0) | (coords[:, 1] > height)
    if outside.any():
        shown = coords[outside][:3].tolist()
        raise PromptValueError("point_coords", f"points {shown} lie outside the {width}x{height} (WxH) image")
    return coords, labels.astype(np.int64)


def check_box(box: object, image_size: tuple[int, int]) -> np.ndarray | None:
    """The box as a (4,) float64 XYXY array inside the image, or None."""
    if box is None:
        return None
    box = numeric(box, "box").astype(np.float64)
    if box.shape not in ((4,), (1, 4)):
        raise PromptValueError("box", f"box must be one XYXY box of shape (4,) or (1, 4), got {box.shape}")
    box = box.reshape(4)
    x0, y0, x1, y1 = box.tolist()
    if x1 < x0 or y1 < y0:
        raise PromptValueError(
            "box",
            f"box must be XYXY with x0 <= x1 and y0 <= y1 (left-top corner first, so x1 > x0 or a "
            f"line), got {box.tolist()}",
        )
    height, width = image_size
    if x0 > width or y0 > height or x1 < 0 or y1 < 0:
        raise PromptValueError("box", f"box {box.tolist()} does not overlap the {width}x{height} image")
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise PromptValueError("box", f"box {box.tolist()} reaches outside the {width}x{height} (WxH) image")
    return box


def check_mask_input(mask_input: object, low_res_size: tuple[int, int]) -> np.ndarray | None:
    """Low-res logits as (1, h, w) float32 (an (h, w) array gets its leading 1), or None."""
    if mask_input is None:
        return None
    mask = numeric(mask_input, "mask_input").astype(np.float32)
    expected = (1, *low_res_size)
    if mask.shape == tuple(low_res_size):
        mask = mask[None]
    if mask.shape != expected:
        raise PromptValueError(
            "mask_input",
            f"mask_input must be low-res logits of shape {expected} (one of predict's low_res_logits "
            f"with a leading 1), got {mask.shape}",
        )
    return mask


def check_multimask(multimask_output: object) -> bool:
    if not isinstance(multimask_output, bool | np.bool_):
        raise TypeError(f"multimask_output must be a bool, not {type(multimask_output).__name__}")
    return bool(multimask_output)


def check_any_prompt(has_points: bool, has_box: bool, has_mask: bool) -> None:
    if not (has_points or has_box or has_mask):
        raise PromptValueError(
            "prompts", "give at least one prompt: points with labels, a box, or a mask_input"
        )
