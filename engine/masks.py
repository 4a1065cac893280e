"""Mask formats and geometry. A mask is encoded one way: COCO RLE through pycocotools, with the
counts as a UTF-8 string so it goes into JSON and databases as is. Boxes are XYWH in stored data
(width = x_max - x_min, as SA-1B and segment_anything write them) and XYXY only as model input and
inside NMS.

Besides the RLE basics this module holds what automatic mask generation needs on many masks at
once: batched RLE encoding from a torch tensor, boxes and areas, the stability score, box NMS
(torchvision has no CPU build here, so it is our own) and small-region cleanup."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils

from engine.rle_runs import canonical_counts, check_runs, compressed_runs, max_runs

RLE = dict[str, Any]  # {"size": [h, w], "counts": str}


def encode_rle(mask: np.ndarray) -> RLE:
    """HxW boolean/0-1 mask → COCO compressed RLE with string counts."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: RLE) -> np.ndarray:
    """COCO RLE (compressed string or uncompressed list counts) → HxW bool mask."""
    return mask_utils.decode(_to_coco(rle)).astype(bool)


def uncrop_rle(rle: RLE, crop_box: list[int] | tuple[int, ...], height: int, width: int) -> RLE:
    """A mask encoded in a crop's frame → the same mask in the H x W image frame, the crop's top
    left corner at (``crop_box[0]``, ``crop_box[1]``) (XYXY). Works on the run lengths: each run
    of set pixels is cut at the crop's column ends and moved to the image's columns, so the cost
    follows the mask's runs, not the image's pixels (decoding into a zero frame and encoding it
    again took ~0.5 ms per mask on a 1024x768 image)."""
    x0, y0, x1, y1 = (int(v) for v in crop_box)
    crop_height, crop_width = rle["size"]
    if (x1 - x0, y1 - y0) != (crop_width, crop_height) or x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise ValueError(
            f"crop box {list(crop_box)} does not hold a {crop_height}x{crop_width} mask in {height}x{width}"
        )
    if (x0, y0, x1, y1) == (0, 0, width, height):
        return rle
    counts = rle["counts"]
    if isinstance(counts, list):
        runs = np.asarray(counts, dtype=np.int64)
        check_runs(runs, crop_height, crop_width)
    else:
        runs = compressed_runs(counts, crop_height, crop_width)
    ends = np.cumsum(runs)
    starts = ends - runs
    starts, ends = starts[1::2], ends[1::2]  # runs of set pixels, column-major crop indices
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    # Cut each run at the crop's column ends: a run over columns c0..c1 becomes c1 - c0 + 1 pieces.
    first_col, last_col = starts // crop_height, (ends - 1) // crop_height
    pieces = last_col - first_col + 1
    run = np.repeat(np.arange(starts.size), pieces)
    col = first_col[run] + (np.arange(run.size) - np.repeat(np.cumsum(pieces) - pieces, pieces))
    piece_start = np.maximum(starts[run], col * crop_height)
    piece_end = np.minimum(ends[run], (col + 1) * crop_height)
    # The same rows and columns in the image, column-major.
    image_start = (x0 + col) * height + y0 + (piece_start - col * crop_height)
    image_end = image_start + (piece_end - piece_start)
    # Pieces that touch (a crop as tall as the image, a run over a column end) are one run.
    if image_start.size > 1:
        joined = np.concatenate([[True], image_start[1:] != image_end[:-1]])
        image_start = image_start[joined]
        image_end = image_end[np.concatenate([joined[1:], [True]])]
    bounds = np.empty(2 * image_start.size + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, height * width
    bounds[1:-1:2], bounds[2:-1:2] = image_start, image_end
    runs = np.diff(bounds)
    if runs.size > 1 and runs[-1] == 0:  # ends on a set pixel: no trailing empty run
        runs = runs[:-1]
    encoded = mask_utils.frPyObjects({"size": [height, width], "counts": runs.tolist()}, height, width)
    return {"size": [height, width], "counts": encoded["counts"].decode("ascii")}


def rle_to_uncompressed(rle: RLE) -> dict[str, Any]:
    """COCO RLE → uncompressed form ``{"size": [h, w], "counts": [runs...]}`` (column-major runs,
    starting with the number of zeros, so a leading 0 when the first pixel is set), as
    segment_anything's ``uncompressed_rle`` output mode gives."""
    mask = decode_rle(rle)
    flat = mask.T.ravel()
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": ([0] if flat[0] else []) + runs}


def rle_area(rle: RLE) -> int:
    return int(mask_utils.area(_to_coco(rle)))


def rle_to_bbox(rle: RLE) -> list[float]:
    """XYWH box of the mask with SA-1B's convention: width = x_max - x_min (no +1), so a one-pixel
    mask has a 0x0 box; an empty mask gives [0, 0, 0, 0]. (pycocotools' toBbox adds 1; the real
    SA-1B files and segment_anything's generator do not, and stored boxes must agree with them.)"""
    x, y, w, h = (float(v) for v in mask_utils.toBbox(_to_coco(rle)))
    if w == 0 or h == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [x, y, w - 1.0, h - 1.0]


def validate_rle(rle: Any, height: int | None = None, width: int | None = None) -> RLE:
    """Check an RLE from outside (API, import) and return it normalised to string counts.

    Raises ValueError saying what is wrong: wrong shape of the object, size not matching the image,
    counts longer than such a mask can need or that do not add up to h*w. The counts returned are
    the canonical encoding of the mask (engine.rle_runs), never the client's string as sent.
    """
    if not isinstance(rle, dict) or set(rle) - {"size", "counts"} or not {"size", "counts"} <= set(rle):
        raise ValueError('RLE must be an object with exactly the keys "size" and "counts"')
    size = rle["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ValueError('RLE "size" must be [height, width] with positive integers')
    if height is not None and width is not None and list(size) != [height, width]:
        raise ValueError(f"RLE size {list(size)} does not match the image size [{height}, {width}]")
    h, w = size
    counts = rle["counts"]
    if isinstance(counts, list):
        if len(counts) > max_runs(h, w):
            raise ValueError(f"RLE has {len(counts)} runs; a {h}x{w} mask has at most {max_runs(h, w)}")
        if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= h * w for c in counts):
            raise ValueError(f"uncompressed RLE counts must be integers from 0 to {h * w}")
        runs = np.asarray(counts, dtype=np.int64)
        check_runs(runs, h, w)
    elif not isinstance(counts, str) or not counts or not counts.isascii():
        raise ValueError("compressed RLE counts must be a non-empty ASCII string")
    else:
        runs = compressed_runs(counts, h, w)
    return {"size": [h, w], "counts": canonical_counts(runs, h, w)}


def _to_coco(rle: RLE) -> dict[str, Any]:
    counts = rle["counts"]
    h, w = rle["size"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


# --- many masks at once -------------------------------------------------------------------------


def encode_rle_batch(masks: torch.Tensor | np.ndarray, column_major: bool = False) -> list[RLE]:
    """N x H x W boolean masks (torch or numpy) → N COCO RLEs with string counts; with
    ``column_major`` the masks come transposed, N x W x H (each mask's pixels in RLE order).

    pycocotools wants column-major H x W x N uint8; transposing each mask once and viewing the
    result as Fortran order avoids a copy per mask.
    """
    if masks.ndim != 3:
        raise ValueError(f"masks must be 3-D (N, H, W), got shape {tuple(masks.shape)}")
    if masks.shape[0] == 0:
        return []
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu()
        masks = masks.view(torch.uint8) if masks.dtype == torch.bool else masks.to(torch.uint8)
        column_major = (masks if column_major else masks.transpose(1, 2)).contiguous().numpy()
    else:
        masks = np.asarray(masks).astype(np.uint8, copy=False)
        column_major = np.ascontiguousarray(masks if column_major else masks.transpose(0, 2, 1))
    fortran = column_major.transpose(2, 1, 0)  # H x W x N, Fortran-contiguous, no copy
    encoded = mask_utils.encode(fortran)
    return [
        {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}
        for r in encoded
    ]


def mask_areas(masks: torch.Tensor) -> torch.Tensor:
    """Pixel count of each mask in N x H x W (int64)."""
    row_dtype = torch.int16 if masks.shape[-1] < 2**15 else torch.int64
    return masks.sum(-1, dtype=row_dtype).sum(-1, dtype=torch.int64)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes (int64, inclusive max pixel index, as segment_anything) around N x H x W
    boolean masks; [0, 0, 0, 0] for an empty mask."""
    if masks.ndim != 3:
        raise ValueError(f"masks must be 3-D (N, H, W), got shape {tuple(masks.shape)}")
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.int64, device=masks.device)
    # max over a uint8 view: on CPU torch's bool any() along one axis is ~10x slower.
    as_bytes = masks.view(torch.uint8) if masks.dtype == torch.bool else (masks != 0).view(torch.uint8)
    rows = as_bytes.amax(dim=2).bool()  # N x H
    cols = as_bytes.amax(dim=1).bool()  # N x W
    y_index = torch.arange(h, device=masks.device)
    x_index = torch.arange(w, device=masks.device)
    top = torch.where(rows, y_index, h).amin(dim=1)
    bottom = torch.where(rows, y_index, -1).amax(dim=1)
    left = torch.where(cols, x_index, w).amin(dim=1)
    right = torch.where(cols, x_index, -1).amax(dim=1)
    boxes = torch.stack([left, top, right, bottom], dim=1)
    return boxes * rows.any(dim=1, keepdim=True)


def box_xyxy_to_xywh(boxes: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """XYXY → XYWH on the last axis (works for one box or many)."""
    out = boxes.clone() if isinstance(boxes, torch.Tensor) else np.array(boxes, copy=True)
    out[..., 2] = out[..., 2] - out[..., 0]
    out[..., 3] = out[..., 3] - out[..., 1]
    return out


def stability_score(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks cut at ``mask_threshold + offset`` and ``mask_threshold - offset``, for all
    leading dimensions at once. The stricter mask lies inside the looser one, so the IoU is the
    ratio of their areas (NaN when the looser mask is empty, as in segment_anything)."""
    # Row sums in int16 (exact while a row is shorter than 32768), then int32: faster on CPU than
    # one int32 reduction over the flattened mask (docs/performance.md).
    row_dtype = torch.int16 if logits.shape[-1] < 2**15 else torch.int32
    inside = (logits > (mask_threshold + offset)).sum(-1, dtype=row_dtype).sum(-1, dtype=torch.int32)
    union = (logits > (mask_threshold - offset)).sum(-1, dtype=row_dtype).sum(-1, dtype=torch.int32)
    return inside / union


def box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of XYXY boxes, N x M (0 where both boxes have zero area)."""
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])
    top_left = torch.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = torch.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, block: int = 1024) -> torch.Tensor:
    """Greedy non-maximum suppression with torchvision's semantics: visit boxes by descending score
    (ties in input order), keep a box unless it overlaps an already kept one with IoU >
    ``iou_threshold``. Returns kept indices in visiting order.

    IoUs are computed in float64 against blocks of at most ``block`` candidates, fewer when N is
    large (at most ``_NMS_PAIRS_PER_BLOCK`` pairs), so memory stays bounded instead of O(N²) or
    O(N * block): box_iou's half-dozen float64 temporaries of 1024 x 12,288 pairs (a crop at
    points_per_side=64 with thresholds 0) were 600 MB.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be N x 4 (XYXY), got shape {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must have shape ({boxes.shape[0]},), got {tuple(scores.shape)}")
    n = boxes.shape[0]
    if n == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    block = max(1, min(block, _NMS_PAIRS_PER_BLOCK // n))
    order = torch.argsort(scores, descending=True, stable=True)
    ordered = boxes[order].to(torch.float64)
    suppressed = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    keep: list[int] = []
    for start in range(0, n, block):
        stop = min(start + block, n)
        # Suppression of this block by boxes kept in earlier blocks was applied below; now run
        # the greedy pass inside the block and propagate to everything after it.
        iou_block = box_iou(ordered[start:stop], ordered[start:])  # B x (N - start)
        over = (iou_block > iou_threshold).cpu()
        local_suppressed = suppressed[start:].cpu().clone()
        for i in range(stop - start):
            if local_suppressed[i]:
                continue
            keep.append(start + i)
            local_suppressed |= over[i]
            local_suppressed[i] = False  # a box never suppresses itself (IoU of a box with itself)
        suppressed[start:] = local_suppressed.to(suppressed.device)
    return order[torch.tensor(keep, dtype=torch.int64, device=boxes.device)]


_NMS_PAIRS_PER_BLOCK = 1 << 20  # ~8 MB per float64 temporary


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, categories: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS run independently per category; kept indices sorted by descending score (stable)."""
    if categories.shape != boxes.shape[:1]:
        raise ValueError(f"categories must have shape ({boxes.shape[0]},), got {tuple(categories.shape)}")
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    kept = []
    for category in torch.unique(categories):
        members = torch.nonzero(categories == category).flatten()
        kept.append(members[nms(boxes[members], scores[members], iou_threshold)])
    keep = torch.cat(kept)
    return keep[torch.argsort(scores[keep], descending=True, stable=True)]


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode="holes"``) or drop islands (``mode="islands"``) smaller than
    ``area_thresh`` pixels, 8-connected. Returns the mask and whether it changed. If every island is
    small, the largest one is kept so a mask never vanishes (segment_anything's semantics)."""
    if mode not in ("holes", "islands"):
        raise ValueError(f'mode must be "holes" or "islands", got {mode!r}')
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    fill_holes = mode == "holes"
    mask = mask.astype(bool, copy=False)
    working = (mask ^ fill_holes).astype(np.uint8)
    n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = np.flatnonzero(sizes < area_thresh) + 1
    if small.size == 0:
        return mask, False
    if fill_holes:
        # Background of the inverted mask (label 0) is the mask itself; small holes join it.
        return np.isin(labels, np.concatenate([[0], small])), True
    large = np.setdiff1d(np.arange(1, n_labels), small)
    if large.size == 0:
        large = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(labels, large), True
