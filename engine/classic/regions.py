"""Where the classic segmenter looks and what it proposes: the region of interest around the
prompts (resampled to about ``work_pixels`` pixels), the seeds, and the one or three candidate masks
with their heuristic scores. With a single click and no box or previous mask the object's extent is
unknown: the candidates are solved in regions of increasing size around the click (part, object,
larger object) and scored by how well their boundary follows image edges and stays clear of the
region's border."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engine.classic.numerics import (
    color_prior,
    dilate,
    distance_to_edges,
    keep_seeded_components,
    ring,
    solve_coarse_to_fine,
)

# Regions of interest around a lone first click, as fractions of the image's longest side.
FIRST_CLICK_SCALES = (0.15, 0.3, 0.6)


@dataclass(frozen=True)
class Roi:
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


@dataclass
class Regions:
    """The candidate strategy over one image (its Lab pixels) with the predictor's settings."""

    lab: np.ndarray
    original_size: tuple[int, int]
    work_pixels: int
    smoothness: float
    prior_weight: float
    cg_iterations: int
    seed_fill: float
    color_weight: float

    def candidates(
        self,
        points: np.ndarray,
        labels: np.ndarray,
        box: np.ndarray | None,
        prior: np.ndarray | None,
        count: int,
    ) -> list[tuple[Roi, np.ndarray, float]]:
        """``count`` (roi, work-resolution probability, score) triples, from part to whole."""
        height, width = self.original_size
        positives = points[labels]
        if prior is not None and not prior.any():
            prior = None
        if box is None and prior is None:
            if len(positives) == 0:  # only background clicks: nothing is pointed at
                empty = Roi(0, min(height, 4), 0, min(width, 4), 1.0)
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

    def _roi_around(self, centers: np.ndarray, half: float) -> Roi:
        (x0, y0), (x1, y1) = centers.min(axis=0), centers.max(axis=0)
        return self._roi_box(x0 - half, y0 - half, x1 + half, y1 + half)

    def _roi_box(self, x0: float, y0: float, x1: float, y1: float) -> Roi:
        height, width = self.original_size
        ix0, iy0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        ix1, iy1 = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
        ix1, iy1 = max(ix1, min(width, ix0 + 3)), max(iy1, min(height, iy0 + 3))
        area = (ix1 - ix0) * (iy1 - iy0)
        scale = min(1.0, float(np.sqrt(self.work_pixels / area)))
        return Roi(iy0, iy1, ix0, ix1, scale)

    def _solve(
        self,
        roi: Roi,
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
            self.lab[roi.y0 : roi.y1, roi.x0 : roi.x1], (work_w, work_h), interpolation=cv2.INTER_AREA
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

        color_p = color_prior(lab, fixed, prior_work, box is not None and prior is None)
        if prior_work is not None:
            weight = self.color_weight
            target = weight * color_p + (1 - weight) * (0.15 + 0.7 * prior_work)
        else:
            target = color_p
        x0 = prior_work if prior_work is not None else target
        soft = solve_coarse_to_fine(
            lab, fixed, target, x0, self.smoothness * edge_scale, self.prior_weight, self.cg_iterations
        )
        return keep_seeded_components(soft, seeds == 1, prior_work)

    def _seed_disks(
        self,
        roi: Roi,
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
            edge_distance = distance_to_edges(lab)
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

    def _score(self, soft: np.ndarray, roi: Roi, frame_is_border: bool) -> float:
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
            outline = ring(mask)
            if outline.any():
                penalty = float(np.count_nonzero(outline & dilate(frame, 3)) / np.count_nonzero(outline))
        return float(np.clip((0.5 + 0.5 * decisiveness) * (1.0 - penalty), 0.0, 1.0))
