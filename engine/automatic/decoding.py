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

import torch

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
        return _decode_shared(model.mask_decoder, features, image_pe, sparse, dense, pred_iou_thresh)
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


def _decode_shared(decoder, features, image_pe, sparse, dense, pred_iou_thresh=0.0):
    """``MaskDecoder.predict_masks`` + multimask selection, with the image side kept at batch 1.
    Without a mask prompt the dense embedding is the same for every prompt, so adding its first
    row is the same as adding it per prompt."""
    batch = sparse.shape[0]
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([output_tokens[None].expand(batch, -1, -1), sparse], dim=1)
    src = features + dense[:1]
    # Only the multimask tokens (1..) are read, so the single-mask token skips the final attention
    # (engine.sam's transformer) and its hypernetwork. hs rows: the IoU token, then those tokens.
    selected = range(1, decoder.num_mask_tokens)
    rows = [0, *(1 + i for i in selected)]
    if isinstance(decoder.transformer, TwoWayTransformer):
        hs, src = decoder.transformer(src, image_pe, tokens, rows=rows)
    else:
        hs, src = decoder.transformer(src, image_pe, tokens)
        hs = hs[:, rows]
    iou_pred = decoder.iou_prediction_head(hs[:, 0, :])[:, 1:]
    rows = _rows_to_upscale(iou_pred, pred_iou_thresh)
    height, width = features.shape[-2:]
    if len(rows) == 0:  # nothing can pass the filter: skip the upscaling altogether
        side = 4 * height, 4 * width
        return features.new_zeros((0, decoder.num_mask_tokens - 1, *side)), iou_pred, rows
    if len(rows) < batch:
        hs, src = hs[rows], src[rows]
    hyper_in = torch.stack(
        [decoder.output_hypernetworks_mlps[i](hs[:, 1 + j, :]) for j, i in enumerate(selected)], dim=1
    )
    masks = upscale_and_project(decoder.output_upscaling, src, hyper_in, height, width)
    return masks, iou_pred, rows


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
            fast = _decode_shared(model.mask_decoder, features, image_pe, sparse[probe], dense[probe])
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
