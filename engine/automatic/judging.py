"""Judging one crop's candidate masks (stability score, box, crop-edge test, NMS) and building the
survivors' full-resolution masks as RLE: the three ways ``MaskGenerator`` chooses between by the
crop's size against its model input (see ``MaskGenerator``'s docstring), and their chunking."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.automatic.amg import Candidates, Survivors, boxes_near_crop_edge, select
from engine.automatic.upsampling import (
    ComposedResize,
    axis_plan,
    threshold_stats,
    truncated_plan,
    upsample_to_model_frame,
)
from engine.masks import RLE, batched_nms, encode_rle_batch, mask_areas, masks_to_boxes, stability_score

# Working-set budget for judging low-res candidates by their cells on a CPU: 15 vit_b candidates
# at a time judge faster than 84 (the 256 MiB budget) or 5 (the full-resolution chunks' 16 MiB);
# the estimate of 48 bytes per cell overstates what the cells method holds at once.
CPU_STATS_BYTES = 48 * 2**20


@dataclass(frozen=True)
class Crop:
    """One crop being processed: its image embedding and geometry."""

    features: torch.Tensor
    input_size: tuple[int, int]  # (h, w) of the crop resized for the model, before padding
    size: tuple[int, int]  # (H, W) of the crop
    box: list[int]  # XYXY in the image
    image_size: tuple[int, int]

    @property
    def image_box(self) -> list[int]:
        return [0, 0, self.image_size[1], self.image_size[0]]


class CropJudging:
    """How one crop's candidates are judged and their full-resolution masks built, mixed into
    ``MaskGenerator``, whose settings it reads: ``model``, ``timings``, the thresholds and
    ``stability_score_offset``, ``box_nms_thresh``, ``max_chunk_bytes``, ``cpu_chunk_bytes``,
    ``max_stored_logits_bytes``, the ``_composed`` cache, ``device`` and ``_decode``."""

    def _full_res_chunk(self, bytes_per_mask: int) -> int:
        """Masks per chunk of full-resolution work."""
        budget = self.max_chunk_bytes
        if self.device.type == "cpu":
            budget = min(budget, self.cpu_chunk_bytes)
        return max(1, budget // bytes_per_mask)

    def _full_res_plan(self, crop: Crop) -> tuple[ComposedResize | None, int]:
        """How a crop's full-resolution logits are built (the composed map, or None for torch's
        resizes) and how many masks at a time: a chunk holds the model frame (or the composed
        map's intermediate), the logits, a temporary of their size and the boolean masks."""
        height, width = crop.size
        composed = self._composed_resize(crop)
        img_size = self.model.image_encoder.img_size
        frame = img_size * img_size if composed is None else composed.rows_used * width
        return composed, self._full_res_chunk(4 * (frame + 2 * height * width) + height * width)

    def _crop_masks_direct(self, crop: Crop, batches: list[np.ndarray]) -> dict[str, Any]:
        """Crops about the model's input size: each candidate's logits are upsampled (in chunks)
        to judge it, and the survivors kept as RLE until the crop's NMS.

        A crop the model saw enlarged (smaller than its input size, as the crops of the second
        layer on a 1024-pixel image) takes both resizes at once (``ComposedResize``), whose
        logits come column-major (N x W x H): masks, counts and RLE read them as they are, only
        the boxes swap their axes."""
        candidates = Candidates()
        composed, chunk = self._full_res_plan(crop)
        threshold = self.model.mask_threshold
        for points in batches:
            low_res, iou_preds, point_tensor = self._decode(crop, points)
            for begin in range(0, low_res.shape[0], chunk):
                start = time.perf_counter()
                if composed is None:
                    logits = self._upsample(low_res[begin : begin + chunk], crop.input_size, crop.size)
                else:
                    logits = composed.transposed(low_res[begin : begin + chunk])
                self.timings["upsample"] += time.perf_counter() - start

                start = time.perf_counter()
                stability = stability_score(logits, threshold, self.stability_score_offset)
                ious, pts = iou_preds[begin : begin + chunk], point_tensor[begin : begin + chunk]
                if self.stability_score_thresh > 0.0:
                    keep = stability >= self.stability_score_thresh
                    logits, stability, ious, pts = logits[keep], stability[keep], ious[keep], pts[keep.cpu()]
                masks = logits > threshold
                del logits
                boxes = masks_to_boxes(masks)
                if composed is not None:
                    boxes = boxes[:, [1, 0, 3, 2]]
                keep = ~boxes_near_crop_edge(boxes, crop.box, crop.image_box)
                if not bool(keep.all()):
                    masks, boxes, stability, ious, pts = (
                        masks[keep], boxes[keep], stability[keep], ious[keep], pts[keep.cpu()],
                    )  # fmt: skip
                areas = mask_areas(masks)
                self.timings["filter"] += time.perf_counter() - start

                start = time.perf_counter()
                rles = encode_rle_batch(masks, column_major=composed is not None)
                del masks
                self.timings["rle"] += time.perf_counter() - start
                candidates.add(
                    rles, boxes.cpu(), areas.cpu(), ious.float().cpu(), stability.float().cpu(), pts.cpu()
                )
        return self._crop_nms(candidates.stacked())

    def _composed_resize(self, crop: Crop) -> ComposedResize | None:
        """The composed resize for a crop smaller than its model input (cached per sizes), else
        None. At the input's size there is one resize, an upscale whose cost is writing its
        output, as the composed map's (measured the same per mask, slower in the whole run); above
        it the second resize enlarges, and the model frame is no larger than the crop."""
        height, width = crop.size
        input_h, input_w = crop.input_size
        if not (height <= input_h and width <= input_w and (height, width) != (input_h, input_w)):
            return None
        key = (tuple(crop.input_size), tuple(crop.size))
        if key not in self._composed:
            low_res = self.model.prompt_encoder.mask_input_size
            self._composed[key] = ComposedResize(
                tuple(low_res), self.model.image_encoder.img_size, crop.input_size, crop.size
            )
        return self._composed[key]

    def _crop_nms(self, data: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        keep = batched_nms(
            data["boxes"].float(),
            data["iou_preds"],
            torch.zeros(len(data["iou_preds"]), dtype=torch.int64),
            self.box_nms_thresh,
        )
        data = select(data, keep)
        self.timings["nms"] += time.perf_counter() - start
        return data

    def _crop_masks_deferred(
        self, crop: Crop, batches: list[np.ndarray], from_low_res: bool = False
    ) -> dict[str, Any]:
        """Candidates judged without their full-resolution masks, which are built (upsampled and
        encoded) only for those that survive the crop's NMS, one batch at a time.

        Crops well above the model's input size (large images, where a full-resolution mask is
        megabytes): stability, area and box come from the model frame by the last resize's
        cells (``engine.automatic.upsampling``). Crops that the model sees at their own size
        (``from_low_res``; the whole image, when it is at most the model's input size): from the
        low-res logits by the first resize's cells, so nothing is upsampled for a candidate that
        a filter or NMS drops. Survivors wait as low-res logits (``Survivors``)."""
        img_size = self.model.image_encoder.img_size
        if from_low_res:
            side = self.model.prompt_encoder.mask_input_size[0]
            rows_plan = truncated_plan(axis_plan(side, img_size), crop.size[0])
            cols_plan = truncated_plan(axis_plan(side, img_size), crop.size[1])
            frame_cells = (side + 2) ** 2
        else:
            rows_plan = axis_plan(crop.input_size[0], crop.size[0])
            cols_plan = axis_plan(crop.input_size[1], crop.size[1])
            frame_cells = (crop.input_size[0] + 2) * (crop.input_size[1] + 2)
        threshold = self.model.mask_threshold
        levels = (threshold - self.stability_score_offset, threshold, threshold + self.stability_score_offset)
        upsampled = 0 if from_low_res else 4 * img_size * img_size
        budget = self.max_chunk_bytes
        if self.device.type == "cpu" and from_low_res:
            budget = min(budget, CPU_STATS_BYTES)
        chunk = max(1, budget // (upsampled + 48 * frame_cells))
        survivors = Survivors(self.max_stored_logits_bytes)
        for batch, points in enumerate(batches):
            low_res, iou_preds, point_tensor = self._decode(crop, points)
            for begin in range(0, low_res.shape[0], chunk):
                if from_low_res:
                    frame = low_res[begin : begin + chunk]
                else:
                    start = time.perf_counter()
                    frame = upsample_to_model_frame(low_res[begin : begin + chunk], img_size, crop.input_size)
                    self.timings["upsample"] += time.perf_counter() - start

                start = time.perf_counter()
                counts, boxes = threshold_stats(frame, rows_plan, cols_plan, levels, threshold)
                del frame
                rows = torch.arange(begin, begin + boxes.shape[0], device=boxes.device)
                # As segment_anything: int32 counts, their float32 ratio (NaN for empty masks).
                stability = counts[:, 2].to(torch.int32) / counts[:, 0].to(torch.int32)
                keep = ~boxes_near_crop_edge(boxes, crop.box, crop.image_box)
                if self.stability_score_thresh > 0.0:
                    keep &= stability >= self.stability_score_thresh
                rows = rows[keep]
                survivors.add(
                    batch, rows, low_res[rows], boxes[keep], iou_preds[rows], point_tensor[rows.cpu()],
                    counts[keep, 1], stability[keep],
                )  # fmt: skip
                self.timings["filter"] += time.perf_counter() - start
        data = self._crop_nms(survivors.stacked())
        return self._materialise(crop, batches, survivors, data)

    def _materialise(
        self, crop: Crop, batches: list[np.ndarray], survivors: Survivors, data: dict[str, Any]
    ) -> dict[str, Any]:
        """Full-resolution masks (as RLE) for the kept candidates, batch by batch (a batch whose
        logits were not stored is decoded again); their area, box and stability score were
        already worked out without them."""
        kept = len(data["iou_preds"])
        rles: list[RLE | None] = [None] * kept
        composed, chunk = self._full_res_plan(crop)
        threshold = self.model.mask_threshold
        by_batch: dict[int, list[int]] = defaultdict(list)
        for position, batch in enumerate(data["batch"]):
            by_batch[batch].append(position)
        for batch, positions in sorted(by_batch.items()):
            rows = [data["row"][i] for i in positions]
            low_res = survivors.logits(batch, rows, partial(self._decode, crop, batches[batch]))
            for begin in range(0, len(positions), chunk):
                start = time.perf_counter()
                part = low_res[begin : begin + chunk]
                if composed is None:
                    logits = self._upsample(part, crop.input_size, crop.size, transposed=True)
                else:
                    logits = composed.transposed(part)
                masks = logits > threshold
                del logits
                self.timings["upsample"] += time.perf_counter() - start
                start = time.perf_counter()
                encoded = encode_rle_batch(masks, column_major=True)
                for i, rle in zip(positions[begin : begin + chunk], encoded):
                    rles[i] = rle
                del masks
                self.timings["rle"] += time.perf_counter() - start
        return {
            "rles": rles,
            "boxes": data["boxes"],
            "areas": data["areas"],
            "iou_preds": data["iou_preds"],
            "stability": data["stability"],
            "points": data["points"],
        }

    def _upsample(
        self,
        low_res: torch.Tensor,
        input_size: tuple[int, int],
        crop_size: tuple[int, int],
        transposed: bool = False,
    ) -> torch.Tensor:
        """Low-res logits (N, 256, 256) → crop-size logits, the two bilinear resizes of
        ``Sam.postprocess_masks`` (to the padded model frame, unpad, to the crop size). The
        second is skipped when the sizes already agree (a same-size bilinear resize is the
        identity, bit for bit). ``transposed``: N x W x H, RLE's column-major order, by resizing
        the transposed logits (the resizes are separable; equal up to float rounding)."""
        if transposed:
            low_res = low_res.transpose(1, 2)
            input_size, crop_size = (input_size[1], input_size[0]), (crop_size[1], crop_size[0])
        masks = upsample_to_model_frame(low_res, self.model.image_encoder.img_size, input_size)[:, None]
        if tuple(input_size) == tuple(crop_size):
            return masks[:, 0]
        return F.interpolate(masks, crop_size, mode="bilinear", align_corners=False)[:, 0]
