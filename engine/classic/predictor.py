"""The classic segmenter's predictor: SamPredictor's interface over the region strategy
(``regions``) and the numerics (``numerics``): prompt checks (engine.prompts), outputs at full
resolution snapped to image edges, and SAM-style low-res logits that round-trip exactly."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import cv2
import numpy as np

from engine import prompts
from engine.classic.numerics import LOGIT_SCALE, guided_coefficients, logit
from engine.classic.regions import Regions, Roi
from engine.images import check_image_array
from engine.transforms import preprocess_shape

LOW_RES = 256  # side of the low-res logits, as SAM's mask decoder
MODEL_INPUT = 1024  # SAM's input frame, reported as ``input_size`` for compatibility


class ClassicPredictor:
    """SamPredictor-compatible interactive segmenter built on OpenCV and numpy, without weights.

    ``predict`` returns ``(masks CxHxW bool, scores C, low_res_logits Cx256x256)`` like SAM; the
    scores are heuristic quality estimates in [0, 1], not calibrated IoUs.

    Arguments:
      work_pixels (int): about how many pixels the region of interest is resampled to before
        solving; small objects are segmented at full resolution, large ones coarser. At least 1024.
      smoothness (float): how strongly neighbouring pixels of similar colour are pulled to the same
        label (the random walker's edge weight scale); higher follows colour edges more closely.
      prior_weight (float): weight of the per-pixel colour / previous-mask prior against the
        smoothness term; higher trusts the colour model more than the clicks' neighbourhood.
      cg_iterations (int): conjugate-gradient steps per solve at the finest scale.
      refine (bool): snap the upsampled mask to the full-resolution edges with a guided filter.
      seed_fill (float): how much of the homogeneous area around a lone click is seeded as object,
        as a fraction of its distance to the nearest strong edge.
      color_weight (float): with a previous mask, the share of the colour model in the prior
        (the rest is the previous mask itself).
    """

    is_fallback = True
    name = "classic"

    def __init__(
        self,
        work_pixels: int = 24_000,
        smoothness: float = 5.0,
        prior_weight: float = 0.0005,
        cg_iterations: int = 150,
        refine: bool = True,
        seed_fill: float = 0.6,
        color_weight: float = 0.5,
    ) -> None:
        if work_pixels < 1024:
            raise ValueError(f"work_pixels must be at least 1024, got {work_pixels}")
        self.work_pixels = work_pixels
        self.smoothness = smoothness
        self.prior_weight = prior_weight
        self.cg_iterations = cg_iterations
        self.refine = refine
        self.seed_fill = seed_fill
        self.color_weight = color_weight
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.reset_image()

    # ------------------------------------------------------------------ image state

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Keep the image (and its Lab and grey versions) for the prompts that follow."""
        check_image_array(image, image_format, min_side=2)  # a region needs two pixels to have an edge
        code = cv2.COLOR_RGB2LAB if image_format == "RGB" else cv2.COLOR_BGR2LAB
        self._lab = cv2.cvtColor(np.ascontiguousarray(image), code)
        self._grey = self._lab[:, :, 0]
        self.original_size = (int(image.shape[0]), int(image.shape[1]))
        self.input_size = preprocess_shape(*self.original_size, MODEL_INPUT)
        self.is_image_set = True
        self._cache.clear()

    def reset_image(self) -> None:
        self.is_image_set = False
        self._lab: np.ndarray | None = None
        self._grey: np.ndarray | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None
        self.features = None
        self._cache.clear()

    def _regions(self) -> Regions:
        return Regions(
            lab=self._lab,
            original_size=self.original_size,
            work_pixels=self.work_pixels,
            smoothness=self.smoothness,
            prior_weight=self.prior_weight,
            cg_iterations=self.cg_iterations,
            seed_fill=self.seed_fill,
            color_weight=self.color_weight,
        )

    def get_image_embedding(self) -> Any:
        raise NotImplementedError(
            "the classic segmenter (the fallback used when no SAM checkpoint is configured) has no "
            "image embedding"
        )

    def set_embedding(self, embedding: Any, original_size: Any = None, input_size: Any = None) -> None:
        raise NotImplementedError(
            "the classic segmenter (the fallback used when no SAM checkpoint is configured) cannot "
            "decode an embedding; call set_image with the image instead"
        )

    def set_torch_image(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("the classic segmenter takes numpy images: use set_image")

    # ------------------------------------------------------------------ prompts → masks

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Segment the object the prompts point at.

        point_coords: (N, 2) XY in original pixels; point_labels: (N,) with 1 (object) or
        0 (background); box: XYXY (4,) or (1, 4); mask_input: (1, 256, 256) low-res logits from
        a previous call. Returns masks (C, H, W) bool (float logits with ``return_logits``),
        scores (C,) and low-res logits (C, 256, 256), C = 3 with ``multimask_output`` else 1.
        """
        if not self.is_image_set:
            raise RuntimeError("an image must be set with set_image(...) before mask prediction")
        coords, point_kinds = prompts.check_points(point_coords, point_labels, self.original_size)
        box_xyxy = _with_area(prompts.check_box(box, self.original_size), self.original_size)
        logits = prompts.check_mask_input(mask_input, (LOW_RES, LOW_RES))
        multimask_output = prompts.check_multimask(multimask_output)
        prompts.check_any_prompt(
            coords is not None and len(coords) > 0, box_xyxy is not None, logits is not None
        )
        if coords is None:
            points, labels = np.zeros((0, 2)), np.zeros(0, dtype=bool)
        else:
            points, labels = coords, point_kinds.astype(bool)
        prior = self._prior_from_logits(logits)
        count = 3 if multimask_output else 1
        candidates = self._regions().candidates(points, labels, box_xyxy, prior, count)
        height, width = self.original_size
        masks = np.zeros((count, height, width), dtype=np.float32 if return_logits else bool)
        scores = np.zeros(count, dtype=np.float32)
        low_res = np.zeros((count, LOW_RES, LOW_RES), dtype=np.float32)
        for index, (roi, soft, score) in enumerate(candidates):
            probability = self._upsample(roi, soft)
            mask = np.zeros((height, width), dtype=bool)
            mask[roi.y0 : roi.y1, roi.x0 : roi.x1] = probability > 0.5
            if return_logits:
                masks[index] = -LOGIT_SCALE
                masks[index, roi.y0 : roi.y1, roi.x0 : roi.x1] = logit(probability)
            else:
                masks[index] = mask
            scores[index] = score
            low_res[index] = self._low_res_logits(mask)
            self._remember(low_res[index], mask)
        return masks, scores, low_res

    def _prior_from_logits(self, mask_input: np.ndarray | None) -> np.ndarray | None:
        """Full-resolution bool mask behind ``mask_input`` (checked (1, 256, 256) float32 logits):
        the remembered one when these are logits this predictor returned, else the logits upsampled
        from the 256x256 frame."""
        if mask_input is None:
            return None
        logits = mask_input
        remembered = self._cache.get(logits.tobytes())
        if remembered is not None:
            return remembered
        height, width = self.original_size
        low_h, low_w = preprocess_shape(height, width, LOW_RES)
        valid = np.ascontiguousarray(logits[0, :low_h, :low_w])
        return cv2.resize(valid, (width, height), interpolation=cv2.INTER_LINEAR) > 0

    # ------------------------------------------------------------------ outputs

    def _upsample(self, roi: Roi, soft: np.ndarray) -> np.ndarray:
        """Work-resolution probabilities → probabilities over the ROI at full resolution, the
        boundary snapped to the full-resolution edges by a guided filter."""
        crop_h, crop_w = roi.y1 - roi.y0, roi.x1 - roi.x0
        if not self.refine or roi.scale >= 0.999:
            return cv2.resize(soft, (crop_w, crop_h), interpolation=cv2.INTER_LINEAR)
        # Fast guided filter (He & Sun 2015): the local linear model q = a·I + b is fitted at work
        # resolution and only applied at full resolution, so the cost there is two resizes.
        guide = self._grey[roi.y0 : roi.y1, roi.x0 : roi.x1]
        guide_low = cv2.resize(guide, soft.shape[::-1], interpolation=cv2.INTER_AREA).astype(np.float32)
        a, b = guided_coefficients(guide_low / 255.0, soft, radius=2, eps=1e-3)
        a = cv2.resize(a, (crop_w, crop_h), interpolation=cv2.INTER_LINEAR)
        b = cv2.resize(b, (crop_w, crop_h), interpolation=cv2.INTER_LINEAR)
        return np.clip(a * (guide.astype(np.float32) / 255.0) + b, 0.0, 1.0)

    def _low_res_logits(self, mask: np.ndarray) -> np.ndarray:
        """The mask in SAM's 256x256 low-res frame (longest side 256, padded), as logits."""
        height, width = self.original_size
        low_h, low_w = preprocess_shape(height, width, LOW_RES)
        coverage = cv2.resize(mask.view(np.uint8) * 255, (low_w, low_h), interpolation=cv2.INTER_AREA)
        logits = np.full((LOW_RES, LOW_RES), -LOGIT_SCALE, dtype=np.float32)
        logits[:low_h, :low_w] = (coverage.astype(np.float32) / 255.0 - 0.5) * (2 * LOGIT_SCALE)
        return logits

    def _remember(self, logits: np.ndarray, mask: np.ndarray) -> None:
        key = logits.tobytes()
        self._cache[key] = mask
        self._cache.move_to_end(key)
        while len(self._cache) > 8:
            self._cache.popitem(last=False)


def _with_area(box: np.ndarray | None, image_size: tuple[int, int]) -> np.ndarray | None:
    """A box (already inside the image) at least one pixel wide and high: a line is a valid prompt,
    but the solver needs an interior."""
    if box is None:
        return None
    height, width = image_size
    x0, y0, x1, y1 = box.tolist()
    x1, y1 = max(x1, min(x0 + 1, width)), max(y1, min(y0 + 1, height))
    return np.array([min(x0, x1 - 1), min(y0, y1 - 1), x1, y1], dtype=np.float64)
