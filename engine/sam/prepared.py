"""Click decoding with the image's share of the mask decoder done once per image.

An annotator clicks dozens of times on one image, and each click runs the prompt encoder and the
mask decoder on the same embedding. The first two-way layer's image side does not depend on the
prompts: the token→image keys and values and the image→token queries are projections of the image
tokens (embedding + no-mask embedding, plus the positional encoding). ``prepare_image`` projects
them once (a few milliseconds); every click then only multiplies them by its handful of tokens, and
never transposes or copies the 64x64 embedding again.

A mask prompt (the previous round's logits) replaces the no-mask embedding by the mask's dense
embedding, whose last layer is a 1x1 convolution from 16 channels. Its share of each projection is
therefore a rank-16 update (the 1x1 convolution folded into the projection weights, once per
model), not a new projection of the 4096 image tokens.

The numbers are those of ``MaskDecoder`` up to float rounding (products are associated
differently); tests compare both with segment_anything. Only the selected masks (3 with
``multimask``, else 1) are upscaled.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from engine.sam.mask_decoder import MaskDecoder
from engine.sam.transformer import TwoWayTransformer, norm_recorded


@dataclass(frozen=True)
class PreparedImage:
    """One image embedding with the first decoder layer's image side projected.

    The projections are laid out (heads, head_dim, h·w): channels-first, as the embedding comes,
    so a mask prompt's rank-16 update is one small product and every per-click product reads
    contiguous rows."""

    tokens: Tensor  # (1, h·w, C) embedding + no-mask embedding, channels-last (the residual stream)
    keys: Tensor  # (heads, head_dim, h·w) token→image keys, scaled by head_dim^-0.5
    values: Tensor  # (heads, head_dim, h·w) token→image values
    queries: Tensor  # (heads, head_dim, h·w) image→token queries, scaled by head_dim^-0.5
    grid: tuple[int, int]
    versions: tuple[int, ...] = ()  # the model's parameter versions it was projected with

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.tokens, self.keys, self.values, self.queries))


@dataclass(frozen=True)
class _ModelConstants:
    """What every image of one model shares: the positional encoding (channels-first and -last),
    the no-mask embedding, and the mask embedding's 1x1 convolution folded into each projection."""

    pe_first: Tensor  # (C, h·w)
    pe_last: Tensor  # (1, h·w, C)
    no_mask: Tensor  # (C,)
    mask_to_tokens: Tensor  # (16, C): mask features → change of the image tokens
    mask_token_bias: Tensor  # (C,): dense-embedding bias minus the no-mask embedding
    mask_to_keys: Tensor  # (heads·head_dim, 16), scaled like ``keys``
    mask_keys_bias: Tensor  # (heads·head_dim,)
    mask_to_values: Tensor
    mask_values_bias: Tensor
    mask_to_queries: Tensor
    mask_queries_bias: Tensor
    versions: tuple[int, ...]  # parameter versions they were computed from


_constants: weakref.WeakKeyDictionary[nn.Module, _ModelConstants] = weakref.WeakKeyDictionary()
_constants_lock = threading.Lock()


def supports(model: nn.Module) -> bool:
    """Whether ``model`` has the structure this module decodes (engine.sam's decoder with a
    1x1-convolution mask embedding); other models use their plain modules."""
    decoder = getattr(model, "mask_decoder", None)
    prompt = getattr(model, "prompt_encoder", None)
    if not isinstance(decoder, MaskDecoder) or not isinstance(decoder.transformer, TwoWayTransformer):
        return False
    if not decoder.transformer.layers or not decoder.transformer.layers[0].skip_first_layer_pe:
        return False
    last = list(getattr(prompt, "mask_downscaling", []))[-1:]
    return bool(last) and isinstance(last[0], nn.Conv2d) and last[0].kernel_size == (1, 1)


def _first_layer(model: nn.Module):
    return model.mask_decoder.transformer.layers[0]


def _param_versions(model: nn.Module) -> tuple[int, ...]:
    return (
        tuple(p._version for p in model.mask_decoder.parameters())
        + tuple(p._version for p in model.prompt_encoder.parameters())
        + tuple(b._version for b in model.prompt_encoder.buffers())
    )


def _folded(proj: nn.Linear, mask_weight: Tensor, token_bias: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """A projection applied to a mask prompt's change of the image tokens (mask_weight·f +
    token_bias): its (out, 16) weight on the mask features f, and its bias."""
    return (proj.weight @ mask_weight) * scale, (proj.weight @ token_bias) * scale


def model_constants(model: nn.Module) -> _ModelConstants:
    """The per-model constants, recomputed when any decoder or prompt-encoder weight changed."""
    versions = _param_versions(model)
    with _constants_lock:
        found = _constants.get(model)
        if found is not None and found.versions == versions:
            return found
        with torch.inference_mode():
            prompt = model.prompt_encoder
            pe = prompt.get_dense_pe()[0]  # (C, h, w)
            channels = pe.shape[0]
            pe_first = pe.reshape(channels, -1).contiguous()
            no_mask = prompt.no_mask_embed.weight[0]
            conv = prompt.mask_downscaling[-1]
            mask_weight = conv.weight.reshape(channels, -1)  # (C, 16)
            token_bias = conv.bias - no_mask
            layer = _first_layer(model)
            t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
            scale_t2i = (t2i.internal_dim // t2i.num_heads) ** -0.5
            scale_i2t = (i2t.internal_dim // i2t.num_heads) ** -0.5
            to_keys = _folded(t2i.k_proj, mask_weight, token_bias, scale_t2i)
            to_values = _folded(t2i.v_proj, mask_weight, token_bias, 1.0)
            to_queries = _folded(i2t.q_proj, mask_weight, token_bias, scale_i2t)
            found = _ModelConstants(
                pe_first=pe_first,
                pe_last=pe_first.T.contiguous()[None],
                no_mask=no_mask.clone(),
                mask_to_tokens=mask_weight.T.contiguous(),
                mask_token_bias=token_bias.clone(),
                mask_to_keys=to_keys[0],
                mask_keys_bias=to_keys[1],
                mask_to_values=to_values[0],
                mask_values_bias=to_values[1],
                mask_to_queries=to_queries[0],
                mask_queries_bias=to_queries[1],
                versions=versions,
            )
        _constants[model] = found
        return found


def _heads_first(projected: Tensor, heads: int) -> Tensor:
    """(heads·head_dim, h·w) → (heads, head_dim, h·w), contiguous."""
    return projected.view(heads, -1, projected.shape[-1]).contiguous()


@torch.inference_mode()
def prepare_image(model: nn.Module, features: Tensor) -> PreparedImage:
    """Project one (1, C, h, w) image embedding for ``decode``."""
    if features.dim() != 4 or features.shape[0] != 1:
        raise ValueError(f"features must be one (1, C, h, w) embedding, got {tuple(features.shape)}")
    consts = model_constants(model)
    _, channels, h, w = features.shape
    first = features[0].float().reshape(channels, h * w) + consts.no_mask[:, None]  # (C, h·w)
    with_pe = first + consts.pe_first
    layer = _first_layer(model)
    t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
    scale_t2i = (t2i.internal_dim // t2i.num_heads) ** -0.5
    scale_i2t = (i2t.internal_dim // i2t.num_heads) ** -0.5
    keys = torch.addmm(t2i.k_proj.bias[:, None], t2i.k_proj.weight, with_pe).mul_(scale_t2i)
    values = torch.addmm(t2i.v_proj.bias[:, None], t2i.v_proj.weight, first)
    queries = torch.addmm(i2t.q_proj.bias[:, None], i2t.q_proj.weight, with_pe).mul_(scale_i2t)
    return PreparedImage(
        tokens=first.T.contiguous()[None],
        keys=_heads_first(keys, t2i.num_heads),
        values=_heads_first(values, t2i.num_heads),
        queries=_heads_first(queries, i2t.num_heads),
        grid=(h, w),
        versions=consts.versions,
    )


def mask_features(model: nn.Module, masks: Tensor) -> Tensor:
    """(B, 1, 4h, 4w) mask logits → (B, 16, h·w): the mask embedding before its 1x1 convolution."""
    layers = model.prompt_encoder.mask_downscaling
    features = masks
    for layer in list(layers)[:-1]:
        features = layer(features)
    return features.flatten(2)


@torch.inference_mode()
def decode(
    model: nn.Module,
    prepared: PreparedImage,
    sparse: Tensor,
    masks: Tensor | None = None,
    multimask_output: bool = True,
) -> tuple[Tensor, Tensor]:
    """Sparse prompt tokens (B, N, C) and optional mask prompts (B, 1, 4h, 4w) → low-res logits
    (B, M, 4h, 4w) and IoU predictions (B, M), M = 3 with ``multimask_output`` else 1: what
    ``model.mask_decoder`` returns on the prepared image."""
    decoder: MaskDecoder = model.mask_decoder
    if masks is not None and sparse.shape[0] == 1 and masks.shape[0] > 1:
        # Mask prompts for one shared token set (a mask-only batch: one empty set for all).
        sparse = sparse.expand(masks.shape[0], -1, -1)
    selected = decoder.selected_masks(multimask_output)
    hs, src = run_transformer(
        model, prepared, decoder.output_tokens(sparse), decoder.output_rows(selected), masks
    )
    h, w = prepared.grid
    return decoder.heads(hs, src, h, w, selected)


@torch.inference_mode()
def run_transformer(
    model: nn.Module,
    prepared: PreparedImage,
    tokens: Tensor,
    rows: list[int],
    masks: Tensor | None = None,
    record: list | None = None,
) -> tuple[Tensor, Tensor]:
    """The two-way transformer on the prepared image: output + prompt tokens (B, N, C) and optional
    mask prompts (B, 1, 4h, 4w) → the token ``rows`` (B, len(rows), C) and the image tokens
    (B, h·w, C), what ``TwoWayTransformer(..., rows=rows)`` returns (clicks through ``decode``, the
    automatic generator's point batches directly). ``record`` gets each layer's ``ImageUpdate``."""
    transformer: TwoWayTransformer = model.mask_decoder.transformer
    consts = model_constants(model)
    if prepared.versions != consts.versions:
        raise ValueError("the model's weights changed since this image was prepared; prepare it again")
    image_tokens, keys, values = prepared.tokens, prepared.keys, prepared.values
    queries_img = prepared.queries
    owned = False
    if masks is not None:
        hidden = mask_features(model, masks)  # (B, 16, h·w)
        heads = keys.shape[0]
        keys = _updated(keys, consts.mask_to_keys, consts.mask_keys_bias, hidden, heads)
        values = _updated(values, consts.mask_to_values, consts.mask_values_bias, hidden, heads)
        queries_img = _updated(queries_img, consts.mask_to_queries, consts.mask_queries_bias, hidden, heads)
        change = torch.matmul(hidden.transpose(1, 2), consts.mask_to_tokens).add_(consts.mask_token_bias)
        image_tokens = change.add_(image_tokens)  # (B, h·w, C), this call's own
        owned = True

    # With mask prompts each prompt starts from its own image tokens, not from ``prepared.tokens``:
    # the record gets None for the first layer, which makes it unusable for folding.
    first_record = record if masks is None else None
    queries, keys_out = _first_layer_forward(
        transformer.layers[0], tokens, image_tokens, keys, values, queries_img, owned, first_record
    )
    if record is not None and first_record is None:
        record.append(None)
    return transformer.run_layers(
        queries, keys_out, tokens, consts.pe_last, start=1, rows=rows, record=record
    )


def decode_prompts(
    model: nn.Module,
    ready: PreparedImage | None,
    features: Tensor | None,
    image_pe: Tensor | None,
    points: tuple[Tensor, Tensor] | None,
    boxes: Tensor | None,
    masks: Tensor | None,
    multimask_output: bool,
) -> tuple[Tensor, Tensor]:
    """Prompt encoder + mask decoder for one image: through ``ready`` when the image is prepared,
    else the model's own modules on ``features`` with ``image_pe`` (the callers' cached dense
    positional encoding). Returns low-res logits and IoU predictions."""
    if ready is not None:
        sparse, _ = model.prompt_encoder(points=points, boxes=boxes, masks=None)
        return decode(model, ready, sparse, masks, multimask_output)
    sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=masks)
    return model.mask_decoder(
        image_embeddings=features,
        image_pe=image_pe if image_pe is not None else model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask_output,
    )


def _updated(projected: Tensor, weight: Tensor, bias: Tensor, hidden: Tensor, heads: int) -> Tensor:
    """``projected`` (heads, d, h·w) plus a mask prompt's rank-16 share → (B, heads, d, h·w)."""
    change = torch.matmul(weight, hidden).add_(bias[:, None])  # (B, heads·d, h·w)
    batch, rows, pixels = change.shape
    return change.view(batch, heads, rows // heads, pixels).add_(projected)


def _first_layer_forward(
    layer: nn.Module,
    tokens: Tensor,
    image_tokens: Tensor,
    keys: Tensor,
    values: Tensor,
    image_queries: Tensor,
    image_tokens_owned: bool,
    record: list | None = None,
) -> tuple[Tensor, Tensor]:
    """The first ``TwoWayAttentionBlock`` (no positional encoding on its self-attention) with the
    image side already projected."""
    queries = layer.norm1(layer.self_attn(tokens, tokens, tokens))

    # Token→image: few queries against the projected image keys and values.
    t2i = layer.cross_attn_token_to_image
    batch, few, _ = queries.shape
    heads = t2i.num_heads
    q = t2i.q_proj(queries + tokens).view(batch, few, heads, -1)
    if keys.dim() == 3:  # one image side for all prompts: heads as the batch, B·n rows each
        # (a (B, heads, ...) product would first copy the shared keys and values per prompt)
        q = q.permute(2, 0, 1, 3).reshape(heads, batch * few, -1)
        probs = torch.softmax(torch.bmm(q, keys), dim=-1)  # (heads, B·n, h·w)
        mixed = torch.bmm(probs, values.transpose(-1, -2)).view(heads, batch, few, -1).permute(1, 2, 0, 3)
    else:  # a mask prompt's own keys and values per prompt
        probs = torch.softmax(torch.matmul(q.transpose(1, 2), keys), dim=-1)  # (B, heads, n, h·w)
        mixed = torch.matmul(probs, values.transpose(-1, -2)).transpose(1, 2)  # (B, n, heads, d)
    attended = t2i.out_proj(mixed.reshape(batch, few, t2i.internal_dim))
    queries = layer.norm2(queries + attended)
    queries = layer.norm3(queries + layer.mlp(queries))

    # Image→token: the projected image queries against the few tokens; the output projection is
    # folded into the values, so the (h·w, C) result comes out of one product with the residual.
    i2t = layer.cross_attn_image_to_token
    heads, width = i2t.num_heads, i2t.embedding_dim
    k = i2t.k_proj(queries + tokens).view(batch, few, heads, -1)
    if image_queries.dim() == 3:  # shared, as above
        k = k.permute(2, 0, 1, 3).reshape(heads, batch * few, -1)
        scores = torch.bmm(k, image_queries).view(heads, batch, few, -1)  # (heads, B, n, h·w)
        probs = torch.softmax(scores, dim=2).transpose(0, 1).reshape(batch, heads * few, -1).transpose(1, 2)
    else:
        scores = torch.matmul(k.transpose(1, 2), image_queries)  # (B, heads, n, h·w)
        probs = torch.softmax(scores, dim=2).view(batch, heads * few, -1).transpose(1, 2)
    v = i2t.v_proj(queries).view(batch, few, heads, -1)
    v_out = torch.einsum("bnhd,ehd->bhne", v, i2t.out_proj.weight.view(width, heads, -1))
    v_out = (v_out + i2t.out_proj.bias / heads).reshape(batch, heads * few, width)
    if image_tokens_owned and image_tokens.shape[0] == batch:
        keys_out = image_tokens.baddbmm_(probs, v_out)
    else:
        keys_out = torch.baddbmm(image_tokens, probs, v_out)
    return queries, norm_recorded(layer.norm4, keys_out, [(probs, v_out)], record)
