"""SAM's interactive training recipe (appendix A of the SAM paper), one batch at a time.

Each object starts from a foreground point or a noisy box, with equal odds. Then, for
``point_rounds`` iterations, a new point is drawn uniformly from the error region of the previous
prediction (positive in a false negative, negative in a false positive) and the previous low-res
logits are fed back as the mask prompt; ``mask_rounds`` iterations add no new point and only feed
the logits back (one at the end, the others at random places among the point rounds) so the
model learns to refine its own masks. The first iteration asks for the three ambiguity-aware
masks and learns only from the best of them; later ones use the single-mask output.

Loss per iteration: focal : dice = 20 : 1 on the mask logits, plus the MSE between the IoU head
and each mask's real IoU. Losses and clicks live on the decoder's low-res grid (4x the embedding
grid), where the mask prompt lives too.

The iterations share nothing differentiable (points are sampled, fed-back logits detached), so
each one is back-propagated as soon as it is computed: memory stays that of one decoder pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.training.config import TrainConfig

FOCAL_GAMMA = 2.0


@dataclass
class Batch:
    """One step's objects: embeddings (B, C, g, g), low-res GT (B, Lh, Lw) bool, valid low-res
    region (B, Lh, Lw) bool, boxes (B, 4) XYXY and valid sizes (B, 2) in the input frame."""

    embeddings: Tensor
    gt: Tensor
    valid: Tensor
    boxes: Tensor
    sizes: Tensor
    input_size: int


def schedule(config: TrainConfig, generator: torch.Generator) -> list[str]:
    """Iteration kinds after the first prompt: 'point' or 'mask'."""
    kinds = ["point"] * config.point_rounds
    for _ in range(max(config.mask_rounds - 1, 0)):
        at = int(torch.randint(0, len(kinds) + 1, (1,), generator=generator))
        kinds.insert(at, "mask")
    if config.mask_rounds:
        kinds.append("mask")
    return kinds


def _cell_to_input(flat: Tensor, low: tuple[int, int], input_size: int, generator: torch.Generator) -> Tensor:
    """Flat low-res cell indices (B,) → a random input-frame pixel inside each cell (B, 2) XY."""
    ys, xs = flat // low[1], flat % low[1]
    scale_y, scale_x = input_size / low[0], input_size / low[1]
    jitter = torch.rand((flat.shape[0], 2), generator=generator)
    x = torch.floor((xs + jitter[:, 0]) * scale_x)
    y = torch.floor((ys + jitter[:, 1]) * scale_y)
    return torch.stack([x, y], dim=1)


def sample_points(region: Tensor, fallback: Tensor, batch: Batch, generator: torch.Generator) -> Tensor:
    """A uniform random pixel of each row's ``region`` (B, Lh, Lw), of ``fallback`` where the
    region is empty → (B, 2) XY in the input frame."""
    weights = region.flatten(1).float().cpu()
    empty = weights.sum(1) == 0
    if empty.any():
        weights[empty] = fallback.flatten(1).float().cpu()[empty]
    flat = torch.multinomial(weights, 1, generator=generator)[:, 0]
    points = _cell_to_input(flat, tuple(region.shape[-2:]), batch.input_size, generator)
    limit = (batch.sizes.cpu().flip(1) - 1).float()  # (w - 1, h - 1)
    return torch.minimum(points, limit), flat


def noisy_boxes(batch: Batch, config: TrainConfig, generator: torch.Generator) -> Tensor:
    """GT boxes with each corner coordinate moved by N(0, box_noise x side), at most
    ``box_noise_max`` pixels, kept inside the image."""
    boxes = batch.boxes.cpu().float()
    sides = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1).clamp(min=1.0)
    std = (config.box_noise * sides).repeat(1, 2)
    noise = torch.randn(boxes.shape, generator=generator) * std
    noise = noise.clamp(-config.box_noise_max, config.box_noise_max)
    noisy = boxes + noise
    limit = (batch.sizes.cpu().flip(1) - 1).float().repeat(1, 2)
    noisy = torch.minimum(noisy.clamp(min=0), limit)
    x0, x1 = torch.minimum(noisy[:, 0], noisy[:, 2]), torch.maximum(noisy[:, 0], noisy[:, 2])
    y0, y1 = torch.minimum(noisy[:, 1], noisy[:, 3]), torch.maximum(noisy[:, 1], noisy[:, 3])
    return torch.stack([x0, y0, x1, y1], 1)


def mask_losses(logits: Tensor, gt: Tensor, valid: Tensor, alpha: float = 0.25) -> tuple[Tensor, Tensor]:
    """Per-mask focal and dice losses over the valid pixels: logits (B, K, L, L), gt/valid
    (B, L, L) → two (B, K) tensors. ``alpha`` weighs the object's pixels in the focal loss (the
    background's by 1 - alpha); a negative alpha weighs both 1."""
    logits = logits.float()
    target = gt[:, None].float().expand_as(logits)
    weight = valid[:, None].float()
    count = weight.sum((-2, -1)).clamp(min=1.0)
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    if alpha >= 0:
        ce = ce * (alpha * target + (1 - alpha) * (1 - target))
    focal = (ce * (1 - p_t) ** FOCAL_GAMMA * weight).sum((-2, -1)) / count
    prob = prob * weight
    inter = (prob * target).sum((-2, -1))
    dice = 1 - (2 * inter + 1) / (prob.sum((-2, -1)) + (target * weight).sum((-2, -1)) + 1)
    return focal, dice


@torch.no_grad()
def mask_ious(logits: Tensor, gt: Tensor, valid: Tensor) -> Tensor:
    """IoU of each thresholded mask with the GT inside the valid region: (B, K)."""
    pred = (logits > 0) & valid[:, None]
    target = gt[:, None]
    inter = (pred & target).sum((-2, -1)).float()
    union = (pred | target).sum((-2, -1)).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def _encode_prompts(
    model: torch.nn.Module,
    first: Tensor,
    extra: Tensor,
    extra_labels: Tensor,
    boxes: Tensor,
    use_box: Tensor,
    mask_input: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Sparse and dense prompt embeddings for a batch that mixes point-started and box-started
    objects (both give 1 + rounds tokens: point + padding, or the two box corners)."""
    prompt = model.prompt_encoder
    parts, order = [], []
    point_rows = torch.nonzero(~use_box).flatten()
    box_rows = torch.nonzero(use_box).flatten()
    if len(point_rows):
        coords = torch.cat([first[point_rows], extra[point_rows]], 1)
        labels = torch.cat([torch.ones_like(extra_labels[point_rows, :1]), extra_labels[point_rows]], 1)
        masks = mask_input[point_rows] if mask_input is not None else None
        parts.append(prompt((coords, labels), None, masks))
        order.append(point_rows)
    if len(box_rows):
        points = (extra[box_rows], extra_labels[box_rows]) if extra.shape[1] else None
        masks = mask_input[box_rows] if mask_input is not None else None
        parts.append(prompt(points, boxes[box_rows], masks))
        order.append(box_rows)
    if len(parts) == 1:
        return parts[0]
    inverse = torch.argsort(torch.cat(order))
    sparse = torch.cat([p[0] for p in parts])[inverse]
    dense = torch.cat([p[1].expand(len(o), -1, -1, -1) for p, o in zip(parts, order)])[inverse]
    return sparse, dense


def interactive_step(
    model: torch.nn.Module,
    batch: Batch,
    config: TrainConfig,
    generator: torch.Generator,
    backward: bool = True,
) -> float:
    """Run the whole interactive episode on ``batch``, back-propagating every iteration's loss
    (divided by the number of iterations) when ``backward``; the mean loss."""
    device = batch.embeddings.device
    size = batch.gt.shape[0]
    kinds = schedule(config, generator)
    iterations = 1 + len(kinds)
    use_box = (torch.rand(size, generator=generator) < 0.5).to(device)
    first, _ = sample_points(batch.gt, batch.gt, batch, generator)
    first = first[:, None].to(device)
    boxes = noisy_boxes(batch, config, generator).to(device)
    extra = torch.zeros((size, 0, 2), device=device)
    extra_labels = torch.zeros((size, 0), dtype=torch.long, device=device)
    dense_pe = model.prompt_encoder.get_dense_pe()
    previous: Tensor | None = None
    total = 0.0
    for index, kind in enumerate(["first", *kinds]):
        if kind == "point":
            pred = previous[:, 0] > 0
            false_neg = batch.gt & ~pred & batch.valid
            false_pos = ~batch.gt & pred & batch.valid
            point, flat = sample_points(false_neg | false_pos, batch.gt, batch, generator)
            label = false_neg.flatten(1).cpu().gather(1, flat[:, None])[:, 0]
            label |= ~(false_neg | false_pos).flatten(1).cpu().any(1)  # no error: a positive click
            extra = torch.cat([extra, point[:, None].to(device)], 1)
            extra_labels = torch.cat([extra_labels, label.long()[:, None].to(device)], 1)
        sparse, dense = _encode_prompts(model, first, extra, extra_labels, boxes, use_box, previous)
        logits, iou_pred = model.mask_decoder(batch.embeddings, dense_pe, sparse, dense, index == 0)
        focal, dice = mask_losses(logits, batch.gt, batch.valid, config.focal_alpha)
        per_mask = config.focal_weight * focal + config.dice_weight * dice
        best = per_mask.detach().argmin(1)
        mask_loss = per_mask.gather(1, best[:, None]).mean()
        iou_loss = F.mse_loss(iou_pred.float(), mask_ious(logits.detach(), batch.gt, batch.valid))
        loss = mask_loss + config.iou_weight * iou_loss
        if backward:
            (loss / iterations).backward()
        value = float(loss.detach())
        total += value
        if not math.isfinite(value):
            return value
        previous = logits.detach().gather(1, best[:, None, None, None].expand(-1, 1, *logits.shape[-2:]))
        previous = previous.float()
    return total / iterations
