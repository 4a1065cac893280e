"""``train``: the optimisation loop around the interactive recipe.

Decoder mode reads each image's embedding from memory (stored fp16 embeddings, or the frozen
encoder's computed once), so a step costs only prompt encoder + decoder passes. Full mode runs the
encoder with gradients on flipped and scale-jittered images; the encoder's output is detached for
the interactive iterations and its accumulated gradient is pushed back through the encoder once.
Everything random comes from one seeded generator, so a seed gives the same run.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from engine.training.config import (
    TooFewSamplesError,
    TrainConfig,
    TrainingError,
    TrainingSample,
    TrainProgress,
    TrainResult,
)
from engine.training.prepare import Geometry, Prepared, low_res_mask, mask_box, normalized_image, prepare
from engine.training.recipe import Batch, interactive_step

ProgressCallback = Callable[[TrainProgress], object]


def trainable_parameters(model: torch.nn.Module, config: TrainConfig) -> list[torch.nn.Parameter]:
    """The parameters this mode trains: all in full mode; the mask decoder (and optionally the
    prompt encoder) in decoder mode."""
    if config.mode == "full":
        return list(model.parameters())
    params = list(model.mask_decoder.parameters())
    if config.train_prompt_encoder:
        params += list(model.prompt_encoder.parameters())
    return params


def _batches(count: int, size: int, generator: torch.Generator) -> Iterator[list[int]]:
    """Batches from successive random permutations (every object once per epoch)."""
    order: list[int] = []
    while True:
        while len(order) < size:
            order += torch.randperm(count, generator=generator).tolist()
        yield order[:size]
        order = order[size:]


def augment(
    image: torch.Tensor, gt: torch.Tensor, limit: int, config: TrainConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random horizontal flip and scale jitter of an unpadded (3, h, w) image and its (h, w)
    mask; scaled content larger than the input square is cropped at a random place. When the
    crop loses the object the unscaled (flipped) pair is used."""
    image = image.float()
    if config.flip and float(torch.rand(1, generator=generator)) < 0.5:
        image, gt = image.flip(-1), gt.flip(-1)
    low, high = config.scale_jitter
    scale = low + (high - low) * float(torch.rand(1, generator=generator))
    h, w = gt.shape
    new_h = max(8, min(round(h * scale), 2 * limit))
    new_w = max(8, min(round(w * scale), 2 * limit))
    if (new_h, new_w) == (h, w):
        return image, gt
    scaled = F.interpolate(image[None], (new_h, new_w), mode="bilinear", align_corners=False)[0]
    mask = (
        F.interpolate(gt[None, None].float(), (new_h, new_w), mode="bilinear", align_corners=False)[0, 0]
        > 0.5
    )
    top = int(torch.randint(0, new_h - min(new_h, limit) + 1, (1,), generator=generator))
    left = int(torch.randint(0, new_w - min(new_w, limit) + 1, (1,), generator=generator))
    scaled = scaled[:, top : top + limit, left : left + limit]
    mask = mask[top : top + limit, left : left + limit]
    if not mask.any():
        return image, gt
    return scaled, mask


def _make_batch(
    model: torch.nn.Module,
    prepared: Prepared,
    rows: Sequence[int],
    config: TrainConfig,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[Batch, torch.Tensor | None]:
    """The step's Batch and, in full mode, the encoder output it was detached from."""
    geometry: Geometry = prepared.geometry
    image_rows = [prepared.image_of[r] for r in rows]
    if config.mode == "decoder" and not config.embed_each_step:
        embeddings = torch.stack([prepared.embeddings[i] for i in image_rows]).to(device).float()
        gt_low = torch.stack([prepared.gt_low[r] for r in rows])
        boxes = torch.stack([prepared.boxes[r] for r in rows])
        sizes = torch.tensor([prepared.input_sizes[i] for i in image_rows])
        encoder_out = None
    else:
        images, gts = [], []
        for r, i in zip(rows, image_rows):
            image, gt = prepared.images[i], prepared.gt_input[r]
            if config.mode == "full":
                image, gt = augment(image, gt, geometry.input, config, generator)
            images.append(normalized_image(image[None].to(device), geometry.input))
            gts.append(gt)
        pixels = torch.cat(images)
        sizes = torch.tensor([tuple(g.shape) for g in gts])
        gt_low = torch.stack([low_res_mask(g, geometry) for g in gts])
        boxes = torch.stack([mask_box(g) for g in gts])
        if config.mode == "full":
            encoder_out = model.image_encoder(pixels)
            embeddings = encoder_out.detach().float().requires_grad_(True)
        else:  # the baseline: the frozen encoder again on every step
            with torch.no_grad():
                embeddings = model.image_encoder(pixels).float()
            encoder_out = None
    low_h, low_w = geometry.low
    valid_h = torch.ceil(sizes[:, 0] * low_h / geometry.input).long()
    valid_w = torch.ceil(sizes[:, 1] * low_w / geometry.input).long()
    rows_index = torch.arange(low_h)[None, :, None]
    cols_index = torch.arange(low_w)[None, None, :]
    valid = (rows_index < valid_h[:, None, None]) & (cols_index < valid_w[:, None, None])
    batch = Batch(
        embeddings=embeddings,
        gt=gt_low.to(device),
        valid=valid.to(device),
        boxes=boxes,
        sizes=sizes,
        input_size=geometry.input,
    )
    return batch, encoder_out


def _lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warmup, then cosine decay to a tenth of the rate."""
    if config.warmup and step < config.warmup:
        return (step + 1) / config.warmup
    span = max(config.steps - config.warmup, 1)
    progress = min(max(step - config.warmup, 0) / span, 1.0)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def _precision_context(device: torch.device, config: TrainConfig) -> contextlib.AbstractContextManager:
    if device.type == "cuda" and config.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train(
    model: torch.nn.Module,
    samples: Sequence[TrainingSample],
    config: TrainConfig | None = None,
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """Fine-tune ``model`` in place on ``samples``; the model is left in eval mode.

    Raises TooFewSamplesError (a TrainingError) when fewer than ``config.min_samples`` samples
    are usable. A non-finite loss or gradient stops the run before the bad update, with
    ``stopped_reason`` saying at which step; ``progress`` returning False stops it too."""
    config = config or TrainConfig()
    config.validate()
    if getattr(model, "precision", "fp32") != "fp32":
        raise TrainingError(f"cannot train a {model.precision} model; build it in fp32")
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {config.device!r} is not available here")
    model.to(device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    started = time.perf_counter()
    prepared = prepare(model, list(samples), config)
    if len(prepared) < config.min_samples:
        raise TooFewSamplesError(len(prepared), config.min_samples, prepared.skipped)

    params = trainable_parameters(model, config)
    flags = {p: p.requires_grad for p in model.parameters()}
    chosen = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    encoder_ids = {id(p) for p in model.image_encoder.parameters()}
    groups = [{"params": [p for p in params if id(p) not in encoder_ids], "lr": config.lr}]
    encoder_params = [p for p in params if id(p) in encoder_ids]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": config.encoder_lr or config.lr})
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, config))
    result = TrainResult(steps_done=0, steps=config.steps, samples=len(prepared), mode=config.mode)
    result.skipped = list(prepared.skipped)
    batches = _batches(len(prepared), min(config.batch, len(prepared)), generator)
    loop_started = time.perf_counter()
    masks_done = 0
    model.train()
    try:
        for step in range(config.steps):
            step_started = time.perf_counter()
            rows = next(batches)
            optimizer.zero_grad(set_to_none=True)
            with _precision_context(device, config):
                batch, encoder_out = _make_batch(model, prepared, rows, config, generator, device)
                loss = interactive_step(model, batch, config, generator)
            if encoder_out is not None and math.isfinite(loss):
                encoder_out.backward(batch.embeddings.grad.to(encoder_out.dtype))
            if not math.isfinite(loss):
                result.stopped_reason = (
                    f"loss became {loss} at step {step + 1}; the weights of step {step} are kept"
                )
                break
            norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip or float("inf"))
            if not torch.isfinite(norm):
                result.stopped_reason = (
                    f"gradient became {float(norm)} at step {step + 1}; the weights of step {step} are kept"
                )
                break
            optimizer.step()
            scheduler.step()
            masks_done += len(rows)
            result.steps_done = step + 1
            result.losses.append(loss)
            seconds = time.perf_counter() - step_started
            if progress is not None:
                report = TrainProgress(
                    step + 1, config.steps, loss, len(rows) / max(seconds, 1e-9), scheduler.get_last_lr()[0]
                )
                if progress(report) is False:
                    result.stopped_reason = f"stopped by the caller after step {step + 1}"
                    break
    finally:
        optimizer.zero_grad(set_to_none=True)
        for p, flag in flags.items():
            p.requires_grad_(flag)
        model.eval()
    elapsed = time.perf_counter() - loop_started
    result.masks_per_second = masks_done / elapsed if elapsed > 0 else 0.0
    result.seconds = time.perf_counter() - started
    return result
