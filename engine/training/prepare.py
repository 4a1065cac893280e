"""Samples → the tensors a training step reads, in the model's input frame.

Every image is seen as the predictor sees it: longest side scaled to the encoder's input size,
zero-padded to a square. Masks are kept at two resolutions: the input frame (full mode, where
augmentation moves them) and the decoder's low-res grid (4x the embedding grid), where the losses
are computed and the error-region clicks are drawn. Decoder mode keeps one fp16 embedding per
image: the stored one when it is readable and fits, else the frozen encoder's, computed once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from engine.embeddings import load_embedding
from engine.sam.sam import PIXEL_MEAN, PIXEL_STD
from engine.training.config import TrainConfig, TrainingSample
from engine.transforms import ResizeLongestSide, preprocess_shape


@dataclass
class Geometry:
    """Sizes of one model: input square, embedding grid and low-res mask grid."""

    input: int
    grid: tuple[int, int]
    low: tuple[int, int]
    channels: int

    @classmethod
    def of(cls, model: torch.nn.Module) -> Geometry:
        prompt = model.prompt_encoder
        return cls(
            input=int(model.image_encoder.img_size),
            grid=tuple(prompt.image_embedding_size),
            low=tuple(prompt.mask_input_size),
            channels=int(prompt.embed_dim),
        )


@dataclass
class Prepared:
    """Per-image tensors (``images`` and/or ``embeddings``, with their valid input sizes) and
    per-object items: image index, low-res GT, input-frame GT (full mode) and box."""

    geometry: Geometry
    input_sizes: list[tuple[int, int]] = field(default_factory=list)
    original_sizes: list[tuple[int, int]] = field(default_factory=list)
    images: list[torch.Tensor] = field(default_factory=list)  # (3, h, w) uint8, unpadded
    embeddings: list[torch.Tensor] = field(default_factory=list)  # (C, g, g) fp16
    image_of: list[int] = field(default_factory=list)
    gt_low: list[torch.Tensor] = field(default_factory=list)  # (Lh, Lw) bool
    gt_input: list[torch.Tensor] = field(default_factory=list)  # (h, w) bool, full mode
    boxes: list[torch.Tensor] = field(default_factory=list)  # (4,) XYXY input frame
    names: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.image_of)


def image_key_of(sample: TrainingSample) -> object:
    """What identifies a sample's image: its ``image_key``, else its embedding path or object,
    else its image array object."""
    if sample.image_key is not None:
        return ("key", sample.image_key)
    if sample.embedding is not None:
        emb = sample.embedding
        return ("path", os.fspath(emb)) if isinstance(emb, (str, os.PathLike)) else ("emb", id(emb))
    return ("img", id(sample.image))


def normalized_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, h, w) uint8/float pixels → normalised and zero-padded (B, 3, size, size) floats."""
    mean = torch.tensor(PIXEL_MEAN, device=image.device).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD, device=image.device).view(1, 3, 1, 1)
    x = (image.float() - mean) / std
    h, w = x.shape[-2:]
    return F.pad(x, (0, size - w, 0, size - h))


def low_res_mask(gt_input: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """(..., h, w) bool mask in the input frame → (..., Lh, Lw) bool on the low-res grid."""
    h, w = gt_input.shape[-2:]
    padded = F.pad(gt_input.float(), (0, geometry.input - w, 0, geometry.input - h))
    lead = padded.shape[:-2]
    area = F.interpolate(padded.reshape(-1, 1, geometry.input, geometry.input), geometry.low, mode="area")
    area = area.reshape(*lead, *geometry.low)
    binary = area > 0.5
    # A thin object can cover no low-res cell by half: keep its best-covered cells instead.
    flat_max = area.flatten(-2).amax(-1)
    thin = (~binary.flatten(-2).any(-1)) & (flat_max > 0)
    if thin.any():
        binary[thin] = area[thin] >= flat_max[thin][..., None, None]
    return binary


def mask_box(mask: torch.Tensor) -> torch.Tensor:
    """XYXY box (pixel centres of the extreme pixels) of a non-empty (h, w) mask."""
    ys = torch.nonzero(mask.any(1)).flatten()
    xs = torch.nonzero(mask.any(0)).flatten()
    return torch.tensor([xs[0], ys[0], xs[-1], ys[-1]], dtype=torch.float32)


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    resized = cv2.resize(mask.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_LINEAR)
    return resized > 127


def load_sample_embedding(
    sample: TrainingSample, geometry: Geometry
) -> tuple[torch.Tensor | None, str | None]:
    """(C, g, g) fp16 embedding of the sample, or None and why it cannot be used."""
    emb = sample.embedding
    try:
        if isinstance(emb, (str, os.PathLike)):
            tensor = load_embedding(emb)
        else:
            tensor = torch.as_tensor(np.asarray(emb) if isinstance(emb, np.ndarray) else emb).float()
    except (ValueError, OSError, TypeError) as exc:
        return None, f"unreadable embedding ({exc})"
    if tensor.ndim == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    expected = (geometry.channels, *geometry.grid)
    if tuple(tensor.shape) != expected:
        return None, f"embedding shape {tuple(tensor.shape)} does not fit this model's {expected}"
    if not torch.isfinite(tensor).all():
        return None, "embedding contains NaN or infinite values"
    return tensor.to(torch.float16), None


@torch.no_grad()
def encode(model: torch.nn.Module, images: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Frozen-encoder embeddings of (B, 3, h, w) uint8 images with the same valid size."""
    return model.image_encoder(normalized_image(images, geometry.input))


def prepare(model: torch.nn.Module, samples: list[TrainingSample], config: TrainConfig) -> Prepared:
    """Resize, encode (decoder mode, once per image) and index the samples; unusable ones are
    listed in ``skipped`` with the reason."""
    geometry = Geometry.of(model)
    prepared = Prepared(geometry)
    resize = ResizeLongestSide(geometry.input)
    device = next(model.parameters()).device
    need_images = config.mode == "full" or config.embed_each_step
    index_of: dict[object, int] = {}
    for number, sample in enumerate(samples):
        name = sample.name or f"sample {number}"
        mask = np.asarray(sample.mask)
        if mask.ndim != 2 or min(mask.shape) < 1:
            prepared.skipped.append(f"{name}: mask must be 2-D, got shape {mask.shape}")
            continue
        mask = mask.astype(bool)
        if not mask.any():
            prepared.skipped.append(f"{name}: empty mask")
            continue
        image = sample.image
        if image is not None:
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                prepared.skipped.append(
                    f"{name}: image must be (H, W, 3) uint8, got {image.shape} {image.dtype}"
                )
                continue
            if image.shape[:2] != mask.shape:
                prepared.skipped.append(
                    f"{name}: image {image.shape[:2]} and mask {mask.shape} differ in size"
                )
                continue
        key = image_key_of(sample)
        if key not in index_of:
            input_size = preprocess_shape(mask.shape[0], mask.shape[1], geometry.input)
            tensor_image = None
            if image is not None:
                tensor_image = torch.from_numpy(resize.apply_image(np.ascontiguousarray(image))).permute(
                    2, 0, 1
                )
            if need_images and tensor_image is None:
                prepared.skipped.append(f"{name}: {config.mode} mode needs the image, not only an embedding")
                continue
            embedding = None
            if config.mode == "decoder" and not config.embed_each_step:
                reason = "no embedding"
                if sample.embedding is not None:
                    embedding, reason = load_sample_embedding(sample, geometry)
                if embedding is None:
                    if tensor_image is None:
                        prepared.skipped.append(f"{name}: {reason} and no image to recompute it from")
                        continue
                    if sample.embedding is not None:
                        prepared.skipped.append(f"{name}: {reason}; recomputed from the image")
                    embedding = encode(model, tensor_image[None].to(device), geometry)[0].half().cpu()
            index_of[key] = len(prepared.input_sizes)
            prepared.input_sizes.append(input_size)
            prepared.original_sizes.append(mask.shape)
            prepared.images.append(tensor_image if need_images else None)
            prepared.embeddings.append(embedding)
        image_index = index_of[key]
        h, w = prepared.input_sizes[image_index]
        if mask.shape != prepared.original_sizes[image_index]:
            prepared.skipped.append(
                f"{name}: mask {mask.shape} differs from its image's {prepared.original_sizes[image_index]}"
            )
            continue
        gt = torch.from_numpy(_resize_mask(mask, (h, w)))
        if not gt.any():
            prepared.skipped.append(f"{name}: the object vanishes at the model's input size")
            continue
        prepared.image_of.append(image_index)
        prepared.gt_low.append(low_res_mask(gt, geometry))
        prepared.gt_input.append(gt if need_images else None)
        prepared.boxes.append(mask_box(gt))
        prepared.names.append(name)
    return prepared
