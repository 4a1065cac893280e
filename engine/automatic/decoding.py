"""Batched decoding of single-point prompts for automatic generation.

``decode_points`` gives what ``SamPredictor.predict_torch(points, labels, multimask_output=True,
return_logits=True)`` gives before its upsampling: the three low-resolution mask logits and their
predicted IoUs per point. Upsampling is left to the caller, which only upsamples what survives.

Why not just call ``mask_decoder(...)``: it copies the image embedding (and its positional
encoding) once per prompt, and its first two-way block then projects 64x64 identical image tokens
once per prompt. Here the transformer gets the embedding with batch size 1 and broadcasts it
against the B prompts, so everything that depends on the image only (the keys/values of the first
token-to-image attention, the queries of the first image-to-token attention) is computed once per
batch. The modules are the model's own (``mask_decoder.transformer``, ``output_upscaling``,
hypernetwork and IoU heads, whose names are fixed by the checkpoint's state-dict keys), so any
module with the official structure works (segment_anything's and ``engine.sam``'s, whose
transformer also avoids projecting the image tokens per prompt); a model whose transformer cannot
broadcast, or gives other numbers, falls back to the plain call (checked once per model on two
prompts).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

from engine.sam import prepared
from engine.sam.folded_upscaling import FoldedFirstUpscale
from engine.sam.mask_decoder import upscale_and_project
from engine.sam.transformer import TwoWayTransformer

_FAST_OK: weakref.WeakKeyDictionary[torch.nn.Module, bool] = weakref.WeakKeyDictionary()


def decode_points(
    model: torch.nn.Module, features: torch.Tensor, coords: torch.Tensor, pred_iou_thresh: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Foreground point prompts ``coords`` (B x 2, model input frame) on the image embedding
    ``features`` (1 x C x h x w) → (low-res logits K x 3 x h x w, predicted IoUs B x 3, prompt
    rows K). The IoU head only needs the transformer's tokens, so the mask upscaling (half of the
    decoder's work) runs only for the K prompts with some mask above ``pred_iou_thresh`` (all
    prompts when it is <= 0), whose indices are ``rows``."""
    labels = torch.ones((coords.shape[0], 1), dtype=torch.int, device=coords.device)
    sparse, dense = model.prompt_encoder(points=(coords[:, None, :], labels), boxes=None, masks=None)
    image_pe = model.prompt_encoder.get_dense_pe()
    if _fast_path_ok(model, features, sparse, dense, image_pe):
        return _decode_shared(model, features, image_pe, sparse, dense, pred_iou_thresh)
    masks, iou_pred = _decode_plain(model.mask_decoder, features, image_pe, sparse, dense)
    rows = _rows_to_upscale(iou_pred, pred_iou_thresh)
    return masks[rows], iou_pred, rows


def _rows_to_upscale(iou_pred: torch.Tensor, pred_iou_thresh: float) -> torch.Tensor:
    if pred_iou_thresh > 0.0:
        return torch.nonzero((iou_pred > pred_iou_thresh).any(dim=1)).flatten()
    return torch.arange(iou_pred.shape[0], device=iou_pred.device)


def _decode_plain(decoder, features, image_pe, sparse, dense):
    return decoder(
        image_embeddings=features,
        image_pe=image_pe,
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=True,
    )


# Prompts that go through the per-prompt part of the decoder together on a CPU (a GPU gets the
# whole batch in one call). From the first image→token attention on, every prompt has its own
# 64x64x256 image tokens (4 MiB in float32); a few prompts' worth stays in the CPU's cache through
# the layer norms, residual adds and the upscaling, where a whole 64-prompt batch (256 MiB per
# tensor) streams through main memory for each of them (docs/performance.md).
DECODE_CHUNK = 4


def _decode_shared(model, features, image_pe, sparse, dense, pred_iou_thresh=0.0, chunk=None):
    """``MaskDecoder.predict_masks`` + multimask selection, with the image side kept at batch 1,
    run ``chunk`` prompts at a time. Without a mask prompt the dense embedding is the same for
    every prompt, so adding its first row is the same as adding it per prompt. For engine.sam's
    decoder the first layer's image side is projected once for all prompts
    (``engine.sam.prepared``, as for clicks); other decoders broadcast the embedding."""
    decoder = model.mask_decoder
    batch = sparse.shape[0]
    if chunk is None:
        chunk = DECODE_CHUNK if features.device.type == "cpu" else max(1, batch)
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    src = features + dense[:1]
    height, width = features.shape[-2:]
    # Only the multimask tokens (1..) are read, so the single-mask token skips the final attention
    # (engine.sam's transformer) and its hypernetwork. hs rows: the IoU token, then those tokens.
    selected = range(1, decoder.num_mask_tokens)
    hs_rows = [0, *(1 + i for i in selected)]
    side = _image_side(model, features)
    ready = side.ready
    # The first upscaling layer through the transformer's low-rank image updates (about half of
    # its work; engine.sam.folded_upscaling): all prompts start from the same image tokens here.
    # Its per-image product is made when the first prompt is upscaled.
    folding = ready is not None and FoldedFirstUpscale.applies(model)
    # Every chunk's masks go straight into their rows (no concatenation of 50 MB at the end); the
    # pages of rows that the IoU filter leaves unused are never touched.
    masks = features.new_empty((batch, len(selected), 4 * height, 4 * width))
    ious, kept = [], []
    filled = 0
    for start in range(0, batch, chunk):
        part = sparse[start : start + chunk]
        tokens = torch.cat([output_tokens[None].expand(part.shape[0], -1, -1), part], dim=1)
        record: list | None = [] if folding else None
        if ready is not None:
            hs, image_tokens = prepared.run_transformer(model, ready, tokens, rows=hs_rows, record=record)
        elif isinstance(decoder.transformer, TwoWayTransformer):
            hs, image_tokens = decoder.transformer(src, image_pe, tokens, rows=hs_rows)
        else:
            hs, image_tokens = decoder.transformer(src, image_pe, tokens)
            hs = hs[:, hs_rows]
        iou_pred = decoder.iou_prediction_head(hs[:, 0, :])[:, 1:]
        ious.append(iou_pred)
        rows = _rows_to_upscale(iou_pred, pred_iou_thresh)
        if len(rows) == 0:  # nothing can pass the filter: skip the upscaling altogether
            continue
        if len(rows) < part.shape[0]:
            hs, image_tokens = hs[rows], image_tokens[rows]
        hyper_in = torch.stack(
            [decoder.output_hypernetworks_mlps[i](hs[:, 1 + j, :]) for j, i in enumerate(selected)], dim=1
        )
        first = None
        if folding:
            side.folded = side.folded or FoldedFirstUpscale(model, ready.tokens)
            first = side.folded.bind(record, rows if len(rows) < part.shape[0] else None)
        into = masks[filled : filled + len(rows)]
        upscale_and_project(
            decoder.output_upscaling, image_tokens, hyper_in, height, width, out=into, first=first
        )
        filled += len(rows)
        kept.append(rows + start)
    iou_pred = torch.cat(ious) if ious else features.new_zeros((0, len(selected)))  # no prompts
    if not kept:
        return masks[:0], iou_pred, torch.zeros(0, dtype=torch.long, device=features.device)
    return masks[:filled], iou_pred, torch.cat(kept)


@dataclass
class _ImageSide:
    """One embedding's share of the decoder: the first layer's image side projected and, once a
    prompt was upscaled, the folded layer's per-image product (13.6 ms together for vit_b). The
    generator decodes each crop's embedding in many batches, so the last one is kept per model and
    made again only when the embedding (another tensor, or changed in place) or the weights change."""

    features: weakref.ref
    version: int | None
    ready: prepared.PreparedImage | None
    folded: FoldedFirstUpscale | None = None


_SIDES: weakref.WeakKeyDictionary[torch.nn.Module, _ImageSide] = weakref.WeakKeyDictionary()


def _image_side(model: torch.nn.Module, features: torch.Tensor) -> _ImageSide:
    supported = prepared.supports(model)
    # An inference tensor keeps no version counter, so a change in place could not be seen: such
    # an embedding is projected for every call.
    version = None if features.is_inference() else features._version
    side = _SIDES.get(model)
    if (
        side is not None
        and version is not None
        and side.features() is features
        and side.version == version
        and (side.ready is None or side.ready.versions == prepared.model_constants(model).versions)
    ):
        return side
    ready = prepared.prepare_image(model, features) if supported else None
    side = _ImageSide(weakref.ref(features), version, ready)
    _SIDES[model] = side
    return side


def _fast_path_ok(model, features, sparse, dense, image_pe) -> bool:
    known = _FAST_OK.get(model)
    if known is not None:
        return known
    ok = False
    if (
        features.shape[0] == 1
        and dense.shape[0] > 0
        and all(
            hasattr(model.mask_decoder, name)
            for name in ("transformer", "iou_token", "mask_tokens", "output_upscaling", "num_mask_tokens")
        )
    ):
        probe = slice(0, min(2, sparse.shape[0]))
        try:
            fast = _decode_shared(model, features, image_pe, sparse[probe], dense[probe])
            plain = _decode_plain(model.mask_decoder, features, image_pe, sparse[probe], dense[probe])
            ok = bool(
                fast[0].shape == plain[0].shape
                and torch.allclose(fast[0], plain[0], atol=1e-3, rtol=1e-4)
                and torch.allclose(fast[1], plain[1], atol=1e-5, rtol=1e-5)
            )
        except (RuntimeError, ValueError, TypeError, AttributeError):
            ok = False
    _FAST_OK[model] = ok
    return ok
