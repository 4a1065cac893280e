"""The automatic generator's building blocks, apart from its control flow: point grids, crop
boxes, the crop-edge test, and the typed records of candidates that survive the filters (as RLE,
or as low-res logits waiting for NMS)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np
import torch

from engine.masks import RLE


def build_point_grid(n_per_side: int) -> np.ndarray:
    """n² points evenly spaced in [0, 1]², at the centres of an n x n grid of cells, row-major."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> list[np.ndarray]:
    """One grid per crop layer, ``scale_per_layer`` times sparser per side at each deeper layer."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    image_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """XYXY crop boxes: the whole image, then per layer i a 2^(i+1) x 2^(i+1) grid of crops that
    overlap by ``overlap_ratio`` of the short side (scaled down with depth)."""
    height, width = image_size
    short_side = min(height, width)
    boxes, layers = [[0, 0, width, height]], [0]
    for layer in range(n_layers):
        per_side = 2 ** (layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / per_side))
        crop_w = math.ceil((overlap * (per_side - 1) + width) / per_side)
        crop_h = math.ceil((overlap * (per_side - 1) + height) / per_side)
        x0s = [int((crop_w - overlap) * i) for i in range(per_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)])
            layers.append(layer + 1)
    return boxes, layers


def boxes_near_crop_edge(
    boxes: torch.Tensor, crop_box: Sequence[int], image_box: Sequence[int], atol: float = 20.0
) -> torch.Tensor:
    """True for (crop-frame XYXY) boxes within ``atol`` px of an edge of the crop that is not also
    an edge of the image: such masks are probably cut by the crop."""
    offset = torch.tensor([crop_box[0], crop_box[1], crop_box[0], crop_box[1]], device=boxes.device)
    boxes = (boxes + offset).float()
    crop = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    image = torch.as_tensor(image_box, dtype=torch.float, device=boxes.device)
    near_crop = torch.isclose(boxes, crop[None], atol=atol, rtol=0)
    near_image = torch.isclose(boxes, image[None], atol=atol, rtol=0)
    return (near_crop & ~near_image).any(dim=1)


@dataclass
class Candidates:
    """Masks that survived filtering, as RLE in their crop's frame plus their numbers."""

    rles: list[RLE] = field(default_factory=list)
    boxes: list[torch.Tensor] = field(default_factory=list)  # XYXY int64, crop frame
    areas: list[torch.Tensor] = field(default_factory=list)
    iou_preds: list[torch.Tensor] = field(default_factory=list)
    stability: list[torch.Tensor] = field(default_factory=list)
    points: list[torch.Tensor] = field(default_factory=list)  # float64, crop frame

    def add(self, rles, boxes, areas, iou_preds, stability, points) -> None:
        self.rles += rles
        self.boxes.append(boxes)
        self.areas.append(areas)
        self.iou_preds.append(iou_preds)
        self.stability.append(stability)
        self.points.append(points)

    def stacked(self) -> dict[str, Any]:
        def cat(parts: list[torch.Tensor], shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
            return torch.cat(parts) if parts else torch.zeros(shape, dtype=dtype)

        return {
            "rles": self.rles,
            "boxes": cat(self.boxes, (0, 4), torch.int64),
            "areas": cat(self.areas, (0,), torch.int64),
            "iou_preds": cat(self.iou_preds, (0,), torch.float32),
            "stability": cat(self.stability, (0,), torch.float32),
            "points": cat(self.points, (0, 2), torch.float64),
        }


class Survivors:
    """Candidates of one crop that passed the filters (deferred path): their boxes, scores and
    points, and where their low-res logits come from. A batch's logits are kept while all kept
    logits fit in ``budget`` bytes; past it a batch keeps only its row numbers and is decoded
    again when its masks are built, so memory stays bounded however many candidates survive."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.stored_bytes = 0
        self._stored: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._dropped: set[int] = set()
        self.batch: list[int] = []
        self.row: list[int] = []
        self.boxes: list[torch.Tensor] = []
        self.iou_preds: list[torch.Tensor] = []
        self.points: list[torch.Tensor] = []
        self.areas: list[torch.Tensor] = []
        self.stability: list[torch.Tensor] = []

    def add(
        self, batch: int, rows: torch.Tensor, low_res: torch.Tensor, boxes, iou_preds, points, areas=None,
        stability=None,
    ) -> None:  # fmt: skip
        if rows.numel() == 0:
            return
        size = low_res.numel() * low_res.element_size()
        if batch not in self._dropped and self.stored_bytes + size <= self.budget:
            self._stored.setdefault(batch, []).append((rows, low_res))
            self.stored_bytes += size
        elif batch not in self._dropped:
            self._dropped.add(batch)
            for _, parts in self._stored.pop(batch, []):
                self.stored_bytes -= parts.numel() * parts.element_size()
        self.batch += [batch] * rows.numel()
        self.row += rows.tolist()
        self.boxes.append(boxes.cpu())
        self.iou_preds.append(iou_preds.float().cpu())
        self.points.append(points.cpu())
        if areas is not None:
            self.areas.append(areas.cpu())
            self.stability.append(stability.float().cpu())

    def stacked(self) -> dict[str, Any]:
        def cat(parts: list[torch.Tensor], shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
            return torch.cat(parts) if parts else torch.zeros(shape, dtype=dtype)

        return {
            "batch": self.batch,
            "row": self.row,
            "boxes": cat(self.boxes, (0, 4), torch.int64),
            "iou_preds": cat(self.iou_preds, (0,), torch.float32),
            "points": cat(self.points, (0, 2), torch.float64),
            "areas": cat(self.areas, (0,), torch.int64),
            "stability": cat(self.stability, (0,), torch.float32),
        }

    def logits(self, batch: int, rows: list[int], decode_again) -> torch.Tensor:
        """Low-res logits of ``rows`` of ``batch``, stored or from ``decode_again()`` (which gives
        the batch's candidates as ``MaskGenerator._decode`` does); the stored ones are released."""
        parts = self._stored.pop(batch, None)
        if parts is None:
            return decode_again()[0][torch.as_tensor(rows)]
        self.stored_bytes -= sum(p.numel() * p.element_size() for _, p in parts)
        stored_rows = torch.cat([r for r, _ in parts]).cpu()
        stored = torch.cat([p for _, p in parts])
        return stored[torch.searchsorted(stored_rows, torch.as_tensor(rows)).to(stored.device)]


def select(data: dict[str, Any], keep: torch.Tensor) -> dict[str, Any]:
    indices = keep.tolist()
    out = {}
    for key, value in data.items():
        out[key] = value[keep] if isinstance(value, torch.Tensor) else [value[i] for i in indices]
    return out
