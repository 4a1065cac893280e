"""Resizing of images, points and boxes to the model's input frame.

SAM sees every image with its longest side scaled to ``target_length`` (1024), then zero-padded to
a square. Points and boxes given in original pixels are scaled the same way. The numpy path
resizes with Pillow's antialiased bilinear filter, which is what the official predictor uses, so
the same image gives the same model input.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def preprocess_shape(old_h: int, old_w: int, target_length: int) -> tuple[int, int]:
    """(h, w) after scaling the longest side to ``target_length``, rounded half up as SAM does."""
    scale = target_length * 1.0 / max(old_h, old_w)
    new_h, new_w = old_h * scale, old_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


class ResizeLongestSide:
    """Scales images (HWC uint8 numpy or BCHW torch), coordinates and boxes to the model frame."""

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """HWC uint8 image → resized HWC uint8 image."""
        h, w = preprocess_shape(image.shape[0], image.shape[1], self.target_length)
        pil = Image.fromarray(image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image)
        return np.array(pil.resize((w, h), Image.BILINEAR))

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        """Points (..., 2) in XY original pixels → XY in the resized frame (float)."""
        old_h, old_w = original_size
        new_h, new_w = preprocess_shape(old_h, old_w, self.target_length)
        coords = np.array(coords, dtype=float, copy=True)
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        """XYXY boxes (..., 4) → XYXY in the resized frame."""
        return self.apply_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def apply_image_torch(self, image: torch.Tensor) -> torch.Tensor:
        """BCHW float image → resized BCHW (antialiased bilinear, as the official torch path)."""
        h, w = preprocess_shape(image.shape[2], image.shape[3], self.target_length)
        return F.interpolate(image, (h, w), mode="bilinear", align_corners=False, antialias=True)

    def apply_coords_torch(self, coords: torch.Tensor, original_size: tuple[int, ...]) -> torch.Tensor:
        old_h, old_w = original_size
        new_h, new_w = preprocess_shape(old_h, old_w, self.target_length)
        coords = coords.clone().to(torch.float)
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: tuple[int, ...]) -> torch.Tensor:
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)
