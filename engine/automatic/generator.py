"""Automatic mask generation: prompt a SAM model with a regular point grid over the image (and over
overlapping crops), keep the confident and stable masks, remove duplicates.

The records equal segment_anything's ``SamAutomaticMaskGenerator`` for the same weights. The
difference is where the work goes. The official code upsamples every candidate (3 per point) to
full resolution before it filters, and computes the stability score there. Here:

* the predicted-IoU filter runs on the decoder output, before any upsampling (it does not depend
  on the mask, so this is exact);
* only the survivors are upsampled, in chunks bounded by ``max_chunk_bytes``, with the same two
  bilinear resizes as ``Sam.postprocess_masks`` so the stability score and the binary masks are the
  official ones (a shortcut on the 256x256 logits changes which pixels cross 0 and ±1);
* the stability score, boxes and crop-edge test are vectorised per chunk, masks go straight to
  COCO RLE through pycocotools, and full-frame masks are rebuilt only for crop masks that survive
  NMS, so memory is bounded by one chunk, not by the number of candidates;
* a crop at least ``model_frame_stats_from`` times the model input's area (large images: a
  4000x3000 mask is 12 M pixels) is not upsampled to judge its candidates at all: their
  stability scores and boxes come exactly from the model frame (``engine.automatic.upsampling``),
  the survivors wait as low-res logits (at most ``max_stored_logits_bytes``, beyond which their
  batch is decoded again), and only the masks that survive the crop's NMS are upsampled, so
  neither time nor memory scales with candidates x image pixels;
* a crop the model saw enlarged (smaller than its input size: the crop layers of an image about
  the model's size) takes both resizes as one banded linear map per axis
  (``engine.automatic.upsampling.ComposedResize``) instead of writing a model-frame image several
  times the crop's size per candidate, and its logits come column-major, RLE's order;
* the decoder sees the image embedding once per batch instead of a copy per prompt
  (``engine.automatic.decoding``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from engine.automatic.amg import build_all_layer_point_grids, generate_crop_boxes, select
from engine.automatic.decoding import decode_points
from engine.automatic.judging import Crop, CropJudging
from engine.automatic.records import clean_small_regions, to_records
from engine.automatic.upsampling import ComposedResize
from engine.embeddings import check_embedding
from engine.masks import batched_nms, uncrop_rle
from engine.transforms import ResizeLongestSide, preprocess_shape

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


class MaskGenerator(CropJudging):
    """segment_anything's ``SamAutomaticMaskGenerator`` (same parameters, defaults and records),
    faster. ``model`` is any module with the official ``Sam`` interface (``engine.sam.build_sam``
    or segment_anything's). Timings of the last call are in ``self.timings`` (seconds per stage).

    Keyword-only tuning, none of which changes the records: ``max_chunk_bytes`` bounds the
    full-resolution logits built at once, and on CPU ``cpu_chunk_bytes`` keeps them to a few masks
    so that the logits, their thresholded masks and the RLE input stay in cache (about 2x faster per
    mask than 256 MiB chunks; a GPU takes the larger chunks); crops of at least
    ``model_frame_stats_from`` times the model input's area are judged on the model frame and
    upsampled only after NMS (about where that is faster on CPU); a crop the model sees at its own
    size with at least ``low_res_stats_from`` pixels is judged on the low-res logits and only the
    masks that survive NMS are upsampled (below it, where a full-resolution mask fits in cache,
    upsampling every candidate is faster); ``max_stored_logits_bytes`` bounds the low-res logits
    such a crop's survivors keep while they wait for NMS (beyond it their batch is decoded again:
    the default holds every candidate of a 32 x 32 grid with thresholds 0, 3072 x 256 KB, which is
    less than segment_anything's full-resolution batches take).

    Arguments (as segment_anything's generator takes them):
    ``points_per_side`` points along one side of the prompt grid (or ``point_grids``, explicit
    grids in [0, 1] per crop layer); ``points_per_batch`` prompts decoded together (memory vs
    speed); ``pred_iou_thresh`` and ``stability_score_thresh`` drop masks the model rates low or
    that change when the logit threshold moves by ``stability_score_offset``; ``box_nms_thresh``
    and ``crop_nms_thresh`` the box IoU above which a lower-scored mask is a duplicate, within a
    crop and across crops; ``crop_n_layers`` layers of overlapping crops (``crop_overlap_ratio``
    of their size, ``crop_n_points_downscale_factor`` fewer points per side each layer);
    ``min_mask_region_area`` removes holes and islands smaller than this (OpenCV);
    ``output_mode`` ``binary_mask``, ``uncompressed_rle`` or ``coco_rle``."""

    def __init__(
        self,
        model: torch.nn.Module,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        *,
        max_chunk_bytes: int = 256 * 2**20,
        cpu_chunk_bytes: int = 16 * 2**20,
        max_stored_logits_bytes: int = 2**30,
        model_frame_stats_from: float = 4.0,
        low_res_stats_from: int = 2**18,
    ) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side and point_grids")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}")
        if points_per_batch < 1:
            raise ValueError(f"points_per_batch must be at least 1, got {points_per_batch}")
        if crop_n_layers < 0:
            raise ValueError(f"crop_n_layers must be >= 0, got {crop_n_layers}")
        if points_per_side is not None:
            if points_per_side < 1:
                raise ValueError(f"points_per_side must be at least 1, got {points_per_side}")
            self.point_grids = build_all_layer_point_grids(
                points_per_side, crop_n_layers, crop_n_points_downscale_factor
            )
        else:
            self.point_grids = [np.asarray(grid, dtype=np.float64) for grid in point_grids]
            if len(self.point_grids) < crop_n_layers + 1:
                raise ValueError(
                    f"point_grids has {len(self.point_grids)} grids, crop_n_layers={crop_n_layers} needs "
                    f"{crop_n_layers + 1}"
                )
            for grid in self.point_grids:
                if grid.ndim != 2 or grid.shape[1] != 2:
                    raise ValueError(f"each point grid must be N x 2 in [0, 1], got shape {grid.shape}")
        self.model = model
        self.transform = ResizeLongestSide(model.image_encoder.img_size)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.max_chunk_bytes = max_chunk_bytes
        self.cpu_chunk_bytes = cpu_chunk_bytes
        self.max_stored_logits_bytes = max_stored_logits_bytes
        self.model_frame_stats_from = model_frame_stats_from
        self.low_res_stats_from = low_res_stats_from
        self.timings: dict[str, float] = defaultdict(float)
        self._composed: dict[tuple[tuple[int, int], tuple[int, int]], ComposedResize] = {}

    @property
    def device(self) -> torch.device:
        return self.model.pixel_mean.device

    # --- public API ----------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, image: np.ndarray, embedding: torch.Tensor | None = None) -> list[dict[str, Any]]:
        """Masks for one HxWx3 RGB uint8 image, as segment_anything's records.

        ``embedding``: the model's image-encoder output for this whole image (1 x C x h x w, as
        ``Predictor.get_image_embedding()`` gives it), e.g. a cached one; it stands in for the
        encoder on the full-image crop, so with ``crop_n_layers=0`` the encoder does not run."""
        self.timings = defaultdict(float)
        image = _check_image(image)
        if embedding is not None:
            embedding = check_embedding(embedding, self.model)
        return self._records(self._generate_masks(image, embedding))

    @torch.no_grad()
    def generate_batch(self, images: Iterable[np.ndarray]) -> Iterator[list[dict[str, Any]]]:
        """Records for each image, in order. The CPU-only tail of one image (small-region cleanup,
        mask decoding for the output mode) runs in a worker thread while the model works on the
        next image, so the model does not wait for it."""
        self.timings = defaultdict(float)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = None
            for image in images:
                data = self._generate_masks(_check_image(image))
                if pending is not None:
                    yield pending.result()
                pending = pool.submit(self._records, data)
            if pending is not None:
                yield pending.result()

    # --- stages ----------------------------------------------------------------------------------

    def _generate_masks(self, image: np.ndarray, embedding: torch.Tensor | None = None) -> dict[str, Any]:
        height, width = image.shape[:2]
        crop_boxes, layers = generate_crop_boxes((height, width), self.crop_n_layers, self.crop_overlap_ratio)
        # Layer 0 is always the whole image, the crop a given embedding belongs to.
        per_crop = [
            self._process_crop(image, box, layer, embedding if layer == 0 else None)
            for box, layer in zip(crop_boxes, layers)
        ]
        data = {
            key: torch.cat([crop[key] for crop in per_crop])
            for key in ("boxes", "areas", "iou_preds", "stability", "points", "crop_boxes")
        }
        data["rles"] = [rle for crop in per_crop for rle in crop["rles"]]
        data["rle_crop"] = [i for i, crop in enumerate(per_crop) for _ in crop["rles"]]
        if len(crop_boxes) > 1:
            # Duplicates across crops: prefer the mask from the smaller crop.
            start = time.perf_counter()
            crop_xyxy = data["crop_boxes"]
            scores = 1 / ((crop_xyxy[:, 2] - crop_xyxy[:, 0]) * (crop_xyxy[:, 3] - crop_xyxy[:, 1]))
            keep = batched_nms(
                data["boxes"].float(),
                scores,
                torch.zeros(len(scores), dtype=torch.int64),
                self.crop_nms_thresh,
            )
            data = select(data, keep)
            self.timings["nms"] += time.perf_counter() - start
        # Bring masks from crop frames into the image frame, only for those that were kept.
        start = time.perf_counter()
        full_rles = []
        for rle, crop_index in zip(data["rles"], data["rle_crop"]):
            full_rles.append(uncrop_rle(rle, crop_boxes[crop_index], height, width))
        data["rles"] = full_rles
        self.timings["rle"] += time.perf_counter() - start
        return data

    def _process_crop(
        self, image: np.ndarray, crop_box: list[int], layer: int, embedding: torch.Tensor | None = None
    ) -> dict[str, Any]:
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1, :]
        crop_size = crop.shape[:2]
        if embedding is None:
            features, input_size = self._embed(crop)
        else:
            features = embedding
            input_size = preprocess_shape(crop_size[0], crop_size[1], self.transform.target_length)

        points = self.point_grids[layer] * np.array(crop_size)[None, ::-1]
        batches = [
            points[start : start + self.points_per_batch]
            for start in range(0, len(points), self.points_per_batch)
        ]
        crop = Crop(features, input_size, crop_size, crop_box, image.shape[:2])
        if crop_size[0] * crop_size[1] >= self.model_frame_stats_from * input_size[0] * input_size[1]:
            data = self._crop_masks_deferred(crop, batches)
        elif tuple(crop_size) == tuple(input_size) and crop_size[0] * crop_size[1] >= self.low_res_stats_from:
            data = self._crop_masks_deferred(crop, batches, from_low_res=True)
        else:
            data = self._crop_masks_direct(crop, batches)

        offset = torch.tensor([x0, y0, x0, y0])
        data["boxes"] = data["boxes"] + offset
        data["points"] = data["points"] + offset[:2]
        data["crop_boxes"] = torch.tensor([crop_box], dtype=torch.int64).repeat(len(data["rles"]), 1)
        return data

    def _embed(self, crop: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        start = time.perf_counter()
        input_image = self.transform.apply_image(crop)
        tensor = torch.as_tensor(input_image, device=self.device).permute(2, 0, 1).contiguous()[None]
        features = self.model.image_encoder(self.model.preprocess(tensor))
        self.timings["encoder"] += time.perf_counter() - start
        return features, (int(input_image.shape[0]), int(input_image.shape[1]))

    def _decode(self, crop: Crop, points: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Low-res logits (M x h x w), predicted IoUs and points of one batch's candidates that pass
        the predicted-IoU filter, in the official order (point by point, its masks in order).
        Deterministic: the same batch gives the same tensors when decoded again."""
        start = time.perf_counter()
        coords = torch.as_tensor(self.transform.apply_coords(points, crop.size), device=self.device)
        low_res, iou_preds, rows = decode_points(self.model, crop.features, coords, self.pred_iou_thresh)
        self.timings["decoder"] += time.perf_counter() - start

        start = time.perf_counter()
        iou_preds = iou_preds[rows]
        point_tensor = torch.as_tensor(points)[rows.cpu()][:, None].expand(-1, iou_preds.shape[1], -1)
        if self.pred_iou_thresh > 0.0:
            keep = iou_preds > self.pred_iou_thresh
            low_res, iou_preds, point_tensor = low_res[keep], iou_preds[keep], point_tensor[keep.cpu()]
        else:
            low_res, iou_preds, point_tensor = (
                low_res.flatten(0, 1),
                iou_preds.flatten(),
                point_tensor.flatten(0, 1),
            )
        self.timings["filter"] += time.perf_counter() - start
        return low_res, iou_preds, point_tensor

    def _records(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        if self.min_mask_region_area > 0:
            start = time.perf_counter()
            data = clean_small_regions(
                data, self.min_mask_region_area, max(self.box_nms_thresh, self.crop_nms_thresh)
            )
            self.timings["small_regions"] += time.perf_counter() - start
        start = time.perf_counter()
        records = to_records(data, self.output_mode)
        self.timings["records"] += time.perf_counter() - start
        return records


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        described = (
            f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}".strip()
        )
        raise ValueError(f"image must be an HxWx3 RGB uint8 numpy array, got {described}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    return image
