"""The ``Sam`` module: image encoder + prompt encoder + mask decoder, with SAM's pixel
normalisation, padding and mask postprocessing. Mirrors segment_anything's ``Sam``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.sam.mask_decoder import MaskDecoder
from engine.sam.prompt_encoder import PromptEncoder

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class Sam(nn.Module):
    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: tuple[float, ...] = PIXEL_MEAN,
        pixel_std: tuple[float, ...] = PIXEL_STD,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        # Not persistent: official checkpoints do not carry them.
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @torch.no_grad()
    def forward(
        self, batched_input: list[dict[str, Any]], multimask_output: bool
    ) -> list[dict[str, torch.Tensor]]:
        """End-to-end prediction for a list of already-resized images with their prompts
        (the official ``Sam.forward`` record format)."""
        images = torch.stack([self.preprocess(record["image"]) for record in batched_input], dim=0)
        embeddings = self.image_encoder(images)
        dense_pe = self.prompt_encoder.get_dense_pe()
        outputs = []
        for record, embedding in zip(batched_input, embeddings):
            points = (record["point_coords"], record["point_labels"]) if "point_coords" in record else None
            sparse, dense = self.prompt_encoder(points, record.get("boxes"), record.get("mask_inputs"))
            low_res, iou = self.mask_decoder(
                embedding.unsqueeze(0), dense_pe, sparse, dense, multimask_output
            )
            masks = self.postprocess_masks(low_res, record["image"].shape[-2:], record["original_size"])
            outputs.append(
                {"masks": masks > self.mask_threshold, "iou_predictions": iou, "low_res_logits": low_res}
            )
        return outputs

    def postprocess_masks(
        self, masks: torch.Tensor, input_size: tuple[int, ...], original_size: tuple[int, ...]
    ) -> torch.Tensor:
        """Low-res logits → logits at the original image size (upscale, crop padding, resize)."""
        size = self.image_encoder.img_size
        masks = F.interpolate(masks, (size, size), mode="bilinear", align_corners=False)
        masks = masks[..., : input_size[0], : input_size[1]]
        return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise pixels and zero-pad bottom/right to the encoder's square input."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        size = self.image_encoder.img_size
        return F.pad(x, (0, size - w, 0, size - h))
