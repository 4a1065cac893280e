"""The generator's last steps on the kept candidates: segment_anything's small-region cleanup and
the output records in the requested mode."""

from __future__ import annotations

from typing import Any

import torch

from engine.automatic.amg import select
from engine.masks import (
    RLE,
    batched_nms,
    box_xyxy_to_xywh,
    decode_rle,
    encode_rle,
    masks_to_boxes,
    remove_small_regions,
    rle_to_uncompressed,
)


def to_records(data: dict[str, Any], output_mode: str) -> list[dict[str, Any]]:
    """segment_anything's record dicts, the segmentation in ``output_mode``."""
    if output_mode == "coco_rle":
        segmentations = data["rles"]
    elif output_mode == "binary_mask":
        segmentations = [decode_rle(rle) for rle in data["rles"]]
    else:
        segmentations = [rle_to_uncompressed(rle) for rle in data["rles"]]
    boxes = box_xyxy_to_xywh(data["boxes"]).tolist()
    crop_boxes = box_xyxy_to_xywh(data["crop_boxes"]).tolist()
    areas = data["areas"].tolist()
    iou_preds = data["iou_preds"].tolist()
    stability = data["stability"].tolist()
    points = data["points"].tolist()
    return [
        {
            "segmentation": segmentation,
            "area": int(areas[i]),
            "bbox": boxes[i],
            "predicted_iou": float(iou_preds[i]),
            "point_coords": [points[i]],
            "stability_score": float(stability[i]),
            "crop_box": crop_boxes[i],
        }
        for i, segmentation in enumerate(segmentations)
    ]


def clean_small_regions(data: dict[str, Any], min_area: int, nms_thresh: float) -> dict[str, Any]:
    """Fill small holes, drop small islands, then NMS preferring masks that did not change."""
    if not data["rles"]:
        return data
    unchanged = []
    new_boxes = []
    new_rles: list[RLE | None] = []
    new_areas = []
    for rle in data["rles"]:
        mask = decode_rle(rle)
        mask, holes_changed = remove_small_regions(mask, min_area, "holes")
        mask, islands_changed = remove_small_regions(mask, min_area, "islands")
        changed = holes_changed or islands_changed
        unchanged.append(float(not changed))
        new_boxes.append(masks_to_boxes(torch.from_numpy(mask)[None])[0])
        new_rles.append(encode_rle(mask) if changed else None)
        new_areas.append(int(mask.sum()) if changed else None)
    boxes = torch.stack(new_boxes)
    scores = torch.tensor(unchanged)
    keep = batched_nms(boxes.float(), scores, torch.zeros(len(scores), dtype=torch.int64), nms_thresh)
    data = dict(data)
    data["rles"] = list(data["rles"])
    data["boxes"] = data["boxes"].clone()
    data["areas"] = data["areas"].clone()
    for i in keep.tolist():
        if new_rles[i] is not None:
            data["rles"][i] = new_rles[i]
            data["boxes"][i] = boxes[i]
            data["areas"][i] = new_areas[i]
    return select(data, keep)
