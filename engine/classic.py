"""A weight-free interactive segmenter with the Predictor's interface: the fallback that makes the
platform useful before a checkpoint is configured.

Why not plain GrabCut: OpenCV's GrabCut costs ~2 s per click on a 640x480 image on this CPU (its
k-means GMM initialisation and max-flow dominate), far from interactive. This segmenter keeps the
GrabCut ingredients that matter — a colour model of object vs background, contrast-sensitive
smoothness, hard constraints at the clicks — and solves a *random walker with priors* instead
(Grady 2005): a sparse, well-conditioned linear system solved by a few dozen conjugate-gradient
steps in numpy. To stay fast on any image size it works on a region of interest around the
prompts, resampled to about ``work_pixels`` pixels, so small objects are segmented at full
resolution and large ones at a coarser scale; the soft result is then upsampled and snapped to the
full-resolution edges with a guided filter.

Prompts:
* positive / negative points: hard seeds (disks whose radius adapts to the distance from the
  click to the previous mask's boundary, so a correction never swallows the mask around it);
* box: everything outside the box is background, the box's interior seeds the object colours;
* ``mask_input`` (the low-res logits of a previous answer): a soft prior and the colour samples of
  the next round — the warm start. The exact full-resolution mask behind logits this predictor
  returned is remembered, so feeding them back loses nothing to the 256x256 grid.

With a single click and no box or previous mask the object's extent is unknown: the three
multimask candidates are solved in regions of increasing size around the click (part, object,
larger object) and scored by how well their boundary follows image edges and stays clear of the
region's border. Everything is deterministic (no random sampling anywhere).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from engine import prompts
from engine.images import check_image_array
from engine.transforms import preprocess_shape

LOW_RES = 256  # side of the low-res logits, as SAM's mask decoder
MODEL_INPUT = 1024  # SAM's input frame, reported as ``input_size`` for compatibility
LOGIT_SCALE = 12.0  # logit of a confident pixel: masks are ``logits > 0`` as with SAM

# Regions of interest around a lone first click, as fractions of the image's longest side.
FIRST_CLICK_SCALES = (0.15, 0.3, 0.6)


@dataclass(frozen=True)
class _Roi:
    """A crop ``[y0:y1, x0:x1]`` of the full image and the factor that resamples it to work size."""

    y0: int
    y1: int
    x0: int
    x1: int
    scale: float

    @property
    def work_shape(self) -> tuple[int, int]:
        return (
            max(3, round((self.y1 - self.y0) * self.scale)),
            max(3, round((self.x1 - self.x0) * self.scale)),
        )


class ClassicPredictor:
    """SamPredictor-compatible interactive segmenter built on OpenCV and numpy, without weights.

    ``predict`` returns ``(masks CxHxW bool, scores C, low_res_logits Cx256x256)`` like SAM; the
    scores are heuristic quality estimates in [0, 1], not calibrated IoUs.
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
        candidates = self._candidates(points, labels, box_xyxy, prior, count)
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
                masks[index, roi.y0 : roi.y1, roi.x0 : roi.x1] = _logit(probability)
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

    def _upsample(self, roi: _Roi, soft: np.ndarray) -> np.ndarray:
        """Work-resolution probabilities → probabilities over the ROI at full resolution, the
        boundary snapped to the full-resolution edges by a guided filter."""
        crop_h, crop_w = roi.y1 - roi.y0, roi.x1 - roi.x0
        if not self.refine or roi.scale >= 0.999:
            return cv2.resize(soft, (crop_w, crop_h), interpolation=cv2.INTER_LINEAR)
        # Fast guided filter (He & Sun 2015): the local linear model q = a·I + b is fitted at work
        # resolution and only applied at full resolution, so the cost there is two resizes.
        guide = self._grey[roi.y0 : roi.y1, roi.x0 : roi.x1]
        guide_low = cv2.resize(guide, soft.shape[::-1], interpolation=cv2.INTER_AREA).astype(np.float32)
        a, b = _guided_coefficients(guide_low / 255.0, soft, radius=2, eps=1e-3)
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

    # ------------------------------------------------------------------ the segmentation

    def _candidates(
        self,
        points: np.ndarray,
        labels: np.ndarray,
        box: np.ndarray | None,
        prior: np.ndarray | None,
        count: int,
    ) -> list[tuple[_Roi, np.ndarray, float]]:
        """``count`` (roi, work-resolution probability, score) triples, from part to whole."""
        height, width = self.original_size
        positives = points[labels]
        if prior is not None and not prior.any():
            prior = None
        if box is None and prior is None:
            if len(positives) == 0:  # only background clicks: nothing is pointed at
                empty = _Roi(0, min(height, 4), 0, min(width, 4), 1.0)
                return [(empty, np.zeros(empty.work_shape, np.float32), 0.0)] * count
            # Unknown extent: regions of growing size around the positive clicks.
            scales = FIRST_CLICK_SCALES if count == 3 else (FIRST_CLICK_SCALES[1],)
            results = []
            for fraction in scales:
                half = fraction * max(height, width)
                roi = self._roi_around(positives, half)
                soft = self._solve(roi, points, labels, None, None)
                # On COCO-like data the wider regions are right more often: a mild prior for
                # them, unless their mask is cut off by the region's border.
                prior_for_size = 0.8 + 0.2 * fraction / max(scales)
                score = prior_for_size * self._score(soft, roi, frame_is_border=True)
                results.append((roi, soft, score))
            # Order is part → whole as SAM's; the caller picks by score.
            return results
        # Extent known from the box or the previous mask.
        extent = np.zeros((0, 2))
        if box is not None:
            extent = np.array([[box[0], box[1]], [box[2], box[3]]])
        if prior is not None:
            x, y, w, h = cv2.boundingRect(prior.view(np.uint8))
            extent = np.vstack([extent, [[x, y], [x + w, y + h]]])
        if len(positives):
            extent = np.vstack([extent, positives])
        (ex0, ey0), (ex1, ey1) = extent.min(axis=0), extent.max(axis=0)
        margin = max(8.0, 0.15 * max(ex1 - ex0, ey1 - ey0))
        if box is not None and prior is None:
            margin = max(4.0, 0.04 * max(ex1 - ex0, ey1 - ey0))
        roi = self._roi_box(ex0 - margin, ey0 - margin, ex1 + margin, ey1 + margin)
        # Three readings of the same prompts: as asked, tighter (small seeds, edges matter less)
        # and looser (large seeds, edges matter more) — a box alone has no seeds, so the edge
        # sensitivity is what makes its three masks differ.
        variants = ((1.0, 1.0), (0.5, 0.5), (2.0, 2.0))[:count]
        results = []
        for seed_scale, edge_scale in variants:
            soft = self._solve(roi, points, labels, box, prior, seed_scale=seed_scale, edge_scale=edge_scale)
            results.append((roi, soft, self._score(soft, roi, frame_is_border=False)))
        return results

    def _roi_around(self, centers: np.ndarray, half: float) -> _Roi:
        (x0, y0), (x1, y1) = centers.min(axis=0), centers.max(axis=0)
        return self._roi_box(x0 - half, y0 - half, x1 + half, y1 + half)

    def _roi_box(self, x0: float, y0: float, x1: float, y1: float) -> _Roi:
        height, width = self.original_size
        ix0, iy0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        ix1, iy1 = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
        ix1, iy1 = max(ix1, min(width, ix0 + 3)), max(iy1, min(height, iy0 + 3))
        area = (ix1 - ix0) * (iy1 - iy0)
        scale = min(1.0, float(np.sqrt(self.work_pixels / area)))
        return _Roi(iy0, iy1, ix0, ix1, scale)

    def _solve(
        self,
        roi: _Roi,
        points: np.ndarray,
        labels: np.ndarray,
        box: np.ndarray | None,
        prior: np.ndarray | None,
        seed_scale: float = 1.0,
        edge_scale: float = 1.0,
    ) -> np.ndarray:
        """Random walker with colour and previous-mask priors on the ROI at work resolution."""
        work_h, work_w = roi.work_shape
        lab = cv2.resize(
            self._lab[roi.y0 : roi.y1, roi.x0 : roi.x1], (work_w, work_h), interpolation=cv2.INTER_AREA
        )
        # Fixed labels: 1 object, 2 background, 0 free.
        fixed = np.zeros((work_h, work_w), dtype=np.uint8)
        prior_work = None
        if prior is not None:
            prior_work = cv2.resize(
                prior[roi.y0 : roi.y1, roi.x0 : roi.x1].astype(np.float32),
                (work_w, work_h),
                interpolation=cv2.INTER_AREA,
            )
        # The ROI's border is background unless the image ends there (object may touch the edge).
        height, width = self.original_size
        if roi.y0 > 0:
            fixed[0, :] = 2
        if roi.y1 < height:
            fixed[-1, :] = 2
        if roi.x0 > 0:
            fixed[:, 0] = 2
        if roi.x1 < width:
            fixed[:, -1] = 2
        if box is not None:
            bx0, by0, bx1, by1 = (
                (box[0] - roi.x0) * roi.scale,
                (box[1] - roi.y0) * roi.scale,
                (box[2] - roi.x0) * roi.scale,
                (box[3] - roi.y0) * roi.scale,
            )
            outside = np.ones((work_h, work_w), dtype=bool)
            outside[
                max(0, int(np.floor(by0))) : max(0, int(np.ceil(by1))),
                max(0, int(np.floor(bx0))) : max(0, int(np.ceil(bx1))),
            ] = False
            fixed[outside] = 2
        seeds = self._seed_disks(roi, points, labels, prior_work, seed_scale, lab)
        fixed[seeds == 2] = 2
        fixed[seeds == 1] = 1

        color_p = _color_prior(lab, fixed, prior_work, box is not None and prior is None)
        if prior_work is not None:
            weight = self.color_weight
            target = weight * color_p + (1 - weight) * (0.15 + 0.7 * prior_work)
        else:
            target = color_p
        x0 = prior_work if prior_work is not None else target
        soft = _solve_coarse_to_fine(
            lab, fixed, target, x0, self.smoothness * edge_scale, self.prior_weight, self.cg_iterations
        )
        return _keep_seeded_components(soft, seeds == 1, prior_work)

    def _seed_disks(
        self,
        roi: _Roi,
        points: np.ndarray,
        labels: np.ndarray,
        prior_work: np.ndarray | None,
        seed_scale: float,
        lab: np.ndarray,
    ) -> np.ndarray:
        """Label image (1 object, 2 background) of disks around the clicks at work resolution.

        A click's disk grows with its distance to the previous mask's boundary (a click deep in a
        missed region is surrounded by more of that region) but never reaches that boundary."""
        work_h, work_w = roi.work_shape
        seeds = np.zeros((work_h, work_w), dtype=np.uint8)
        height, width = self.original_size
        base = max(2.0, 0.02 * max(work_h, work_w)) * seed_scale
        boundary_distance = None
        if prior_work is not None:
            crop = (prior_work > 0.5).astype(np.uint8)
            inside = cv2.distanceTransform(crop, cv2.DIST_L2, 3)
            outside = cv2.distanceTransform(1 - crop, cv2.DIST_L2, 3)
            boundary_distance = inside + outside
        else:  # a lone click sits deep in its object: seed the homogeneous area around it
            edge_distance = _distance_to_edges(lab)
        for (x, y), positive in zip(points, labels):
            col = min(max(int(x), 0), width - 1)
            row = min(max(int(y), 0), height - 1)
            if not (roi.y0 <= row < roi.y1 and roi.x0 <= col < roi.x1):
                continue
            radius = base
            center = (
                max(0, round((col - roi.x0 + 0.5) * roi.scale - 0.5)),
                max(0, round((row - roi.y0 + 0.5) * roi.scale - 0.5)),
            )
            if boundary_distance is not None:
                gap = float(boundary_distance[min(center[1], work_h - 1), min(center[0], work_w - 1)])
                radius = min(max(1.0, 0.5 * gap * seed_scale), 4 * base)
            elif positive:
                room = float(edge_distance[min(center[1], work_h - 1), min(center[0], work_w - 1)])
                radius = min(max(base, self.seed_fill * room * seed_scale), 0.2 * min(work_h, work_w))
            cv2.circle(seeds, center, max(0, round(radius)), 1 if positive else 2, thickness=-1)
        return seeds

    def _score(self, soft: np.ndarray, roi: _Roi, frame_is_border: bool) -> float:
        """Heuristic quality in [0, 1]: how decisive the solution is (probabilities far from 0.5
        mean the seeds and colours agree), times a penalty for the share of the mask's outline
        that runs along the ROI's border (the object was cut off)."""
        mask = soft > 0.5
        if not mask.any():
            return 0.0
        decisiveness = float(np.mean(np.abs(2.0 * soft - 1.0)))
        penalty = 0.0
        if frame_is_border:
            height, width = self.original_size
            frame = np.zeros_like(mask)
            if roi.y0 > 0:
                frame[:2, :] = True
            if roi.y1 < height:
                frame[-2:, :] = True
            if roi.x0 > 0:
                frame[:, :2] = True
            if roi.x1 < width:
                frame[:, -2:] = True
            ring = _ring(mask)
            if ring.any():
                penalty = float(np.count_nonzero(ring & _dilate(frame, 3)) / np.count_nonzero(ring))
        return float(np.clip((0.5 + 0.5 * decisiveness) * (1.0 - penalty), 0.0, 1.0))


# ------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------


def _with_area(box: np.ndarray | None, image_size: tuple[int, int]) -> np.ndarray | None:
    """A box (already inside the image) at least one pixel wide and high: a line is a valid prompt,
    but the solver needs an interior."""
    if box is None:
        return None
    height, width = image_size
    x0, y0, x1, y1 = box.tolist()
    x1, y1 = max(x1, min(x0 + 1, width)), max(y1, min(y0 + 1, height))
    return np.array([min(x0, x1 - 1), min(y0, y1 - 1), x1, y1], dtype=np.float64)


def _logit(probability: np.ndarray) -> np.ndarray:
    p = np.clip(probability, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p)).astype(np.float32)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def _ring(mask: np.ndarray) -> np.ndarray:
    """The mask's boundary pixels."""
    eroded = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return mask & (eroded == 0)


def _distance_to_edges(lab: np.ndarray) -> np.ndarray:
    """Distance of every pixel to the nearest strong colour edge (gradient magnitude above
    2.5x its mean)."""
    lab = lab.astype(np.float32)
    magnitude = np.zeros(lab.shape[:2], np.float32)
    for channel in range(3):
        magnitude += cv2.Sobel(lab[:, :, channel], cv2.CV_32F, 1, 0) ** 2
        magnitude += cv2.Sobel(lab[:, :, channel], cv2.CV_32F, 0, 1) ** 2
    edges = magnitude > (2.5**2) * max(float(magnitude.mean()), 1e-6)
    return cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_L2, 3)


def _edge_weights(lab: np.ndarray, smoothness: float) -> tuple[np.ndarray, np.ndarray]:
    """Contrast-sensitive neighbour weights exp(-k·|ΔLab|²/mean|ΔLab|²) as in GrabCut."""
    lab = lab.astype(np.float32)
    diff_h = np.sum((lab[:, 1:] - lab[:, :-1]) ** 2, axis=2)
    diff_v = np.sum((lab[1:, :] - lab[:-1, :]) ** 2, axis=2)
    mean = (diff_h.sum() + diff_v.sum()) / max(1, diff_h.size + diff_v.size)
    scale = smoothness / max(mean, 1e-6)
    return np.exp(-scale * diff_h) + 1e-3, np.exp(-scale * diff_v) + 1e-3


def _color_prior(lab: np.ndarray, fixed: np.ndarray, prior: np.ndarray | None, from_box: bool) -> np.ndarray:
    """Per-pixel object probability from smoothed 3-D Lab histograms of object and background
    samples: the previous mask (or box interior) and object seeds vs. the rest and background
    seeds. A weak colour model (few samples) stays close to 0.5."""
    bins = 16
    quantized = (lab // (256 // bins)).astype(np.int32)
    index = (quantized[:, :, 0] * bins + quantized[:, :, 1]) * bins + quantized[:, :, 2]
    if prior is not None:
        object_weight = prior.copy()
        background_weight = 1.0 - prior
    elif from_box:
        free = fixed == 0
        object_weight = free.astype(np.float32)
        background_weight = (fixed == 2).astype(np.float32)
    else:  # lone clicks: seeds against the ROI's border band
        object_weight = np.zeros(lab.shape[:2], np.float32)
        background_weight = _border_band(fixed.shape, max(2, min(fixed.shape) // 10))
    object_weight = object_weight + 4.0 * (fixed == 1)
    background_weight = background_weight + 4.0 * (fixed == 2)
    object_hist = _smoothed_histogram(index, object_weight, bins)
    background_hist = _smoothed_histogram(index, background_weight, bins)
    ratio = object_hist / (object_hist + background_hist + 1e-12)
    return ratio.astype(np.float32)[index]


def _border_band(shape: tuple[int, int], width: int) -> np.ndarray:
    band = np.zeros(shape, np.float32)
    band[:width, :] = band[-width:, :] = 1.0
    band[:, :width] = band[:, -width:] = 1.0
    return band


def _smoothed_histogram(index: np.ndarray, weights: np.ndarray, bins: int) -> np.ndarray:
    hist = np.bincount(index.ravel(), weights=weights.ravel(), minlength=bins**3).reshape(bins, bins, bins)
    for axis in range(3):  # separable [1/4, 1/2, 1/4] blur: neighbouring colours count too
        padded = np.pad(hist, [(1, 1) if a == axis else (0, 0) for a in range(3)])
        lower = np.take(padded, range(0, bins), axis=axis)
        upper = np.take(padded, range(2, bins + 2), axis=axis)
        hist = 0.5 * hist + 0.25 * (lower + upper)
    total = hist.sum()
    density = hist / total if total > 0 else hist
    return density.ravel() + 1.0 / bins**3 * 0.05


def _solve_coarse_to_fine(
    lab: np.ndarray,
    fixed: np.ndarray,
    target: np.ndarray,
    initial: np.ndarray,
    smoothness: float,
    prior_weight: float,
    iterations: int,
    min_pixels: int = 5000,
) -> np.ndarray:
    """Random walker solved on a pyramid: the half-resolution solution is the starting point of
    the full-resolution one, so seeds spread across the region in few conjugate-gradient steps.
    At half resolution each pixel stands for four, hence four times the prior weight."""
    height, width = fixed.shape
    if height * width > min_pixels and min(height, width) >= 16:
        half = ((width + 1) // 2, (height + 1) // 2)
        coarse_fixed = _downsample_labels(fixed)
        coarse = _solve_coarse_to_fine(
            cv2.resize(lab, half, interpolation=cv2.INTER_AREA),
            coarse_fixed,
            cv2.resize(target, half, interpolation=cv2.INTER_AREA),
            cv2.resize(initial.astype(np.float32), half, interpolation=cv2.INTER_AREA),
            smoothness,
            4.0 * prior_weight,
            iterations,
            min_pixels,
        )
        initial = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
        iterations = max(20, iterations // 3)
    weights_h, weights_v = _edge_weights(lab, smoothness)
    return _random_walker(weights_h, weights_v, fixed, target, prior_weight, initial, iterations)


def _downsample_labels(fixed: np.ndarray) -> np.ndarray:
    """Halve a seed label image: a coarse pixel is a seed when any of its fine pixels is, and
    free where object and background seeds meet."""
    height, width = fixed.shape
    padded = np.zeros((height + height % 2, width + width % 2), np.uint8)
    padded[:height, :width] = fixed
    blocks = padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2)
    has_object = (blocks == 1).any(axis=(1, 3))
    has_background = (blocks == 2).any(axis=(1, 3))
    coarse = np.zeros(has_object.shape, np.uint8)
    coarse[has_object & ~has_background] = 1
    coarse[has_background & ~has_object] = 2
    return coarse


def _random_walker(
    weights_h: np.ndarray,
    weights_v: np.ndarray,
    fixed: np.ndarray,
    target: np.ndarray,
    prior_weight: float,
    initial: np.ndarray,
    iterations: int,
) -> np.ndarray:
    """Minimise Σ w_ij (x_i - x_j)² + λ Σ (x_i - target_i)² with x fixed at the seeds, by
    Jacobi-preconditioned conjugate gradients on the free pixels. λ > 0 keeps the system well
    conditioned, so a fixed small number of steps converges."""
    free = (fixed == 0).astype(np.float32)
    known = (fixed == 1).astype(np.float32)
    degree = np.zeros(fixed.shape, np.float32)
    degree[:, :-1] += weights_h
    degree[:, 1:] += weights_h
    degree[:-1, :] += weights_v
    degree[1:, :] += weights_v
    diagonal = degree + prior_weight

    def neighbours(x: np.ndarray) -> np.ndarray:
        out = np.zeros_like(x)
        out[:, :-1] += weights_h * x[:, 1:]
        out[:, 1:] += weights_h * x[:, :-1]
        out[:-1, :] += weights_v * x[1:, :]
        out[1:, :] += weights_v * x[:-1, :]
        return out

    def operator(x: np.ndarray) -> np.ndarray:
        return (diagonal * x - neighbours(x)) * free

    rhs = (prior_weight * target.astype(np.float32) + neighbours(known)) * free
    x = np.clip(initial.astype(np.float32), 0, 1) * free
    residual = rhs - operator(x)
    inverse_diagonal = free / diagonal
    z = residual * inverse_diagonal
    direction = z.copy()
    rz = float(np.vdot(residual, z))
    tolerance = 1e-6 * max(float(np.vdot(rhs, rhs)), 1e-12)
    for _ in range(iterations):
        if float(np.vdot(residual, residual)) <= tolerance:
            break
        a_direction = operator(direction)
        step = rz / max(float(np.vdot(direction, a_direction)), 1e-20)
        x += step * direction
        residual -= step * a_direction
        z = residual * inverse_diagonal
        rz_next = float(np.vdot(residual, z))
        direction = z + (rz_next / max(rz, 1e-20)) * direction
        rz = rz_next
    return np.clip(x + known, 0.0, 1.0)


def _keep_seeded_components(
    soft: np.ndarray, object_seeds: np.ndarray, prior: np.ndarray | None
) -> np.ndarray:
    """Drop object islands that no positive click or previous mask supports (stray colour
    matches in the background)."""
    mask = (soft > 0.5).astype(np.uint8)
    count, components = cv2.connectedComponents(mask, connectivity=8)
    if count <= 2:
        return soft
    support = object_seeds.copy()
    if prior is not None:
        support |= prior > 0.5
    if not support.any():  # box only: keep the largest island
        sizes = np.bincount(components.ravel(), minlength=count)
        sizes[0] = 0
        keep = np.zeros(count, bool)
        keep[int(np.argmax(sizes))] = True
    else:
        keep = np.zeros(count, bool)
        keep[np.unique(components[support])] = True
        keep[0] = False
    result = soft.copy()
    drop = (mask > 0) & ~keep[components]
    result[drop] = np.minimum(result[drop], 0.49)
    return result


def _guided_coefficients(
    guide: np.ndarray, source: np.ndarray, radius: int, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """He et al.'s guided filter, as the smoothed coefficients (a, b) of ``source ≈ a·guide + b``:
    applied to an upsampled soft mask, its edges follow the image's."""
    size = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(source)
    cov_ip = box(guide * source) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a), box(b)
