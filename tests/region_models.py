"""SAM weights whose automatic masks look like a trained model's: many distinct, compact,
region-shaped masks survive the filters and NMS, so the survivors' path (stability, boxes, NMS,
upsampling, RLE, crop bookkeeping) is exercised and timed.

Seeded random weights (``tests.reference_models``) give nearly the same mask for every point, so
one record is left after NMS. ``regions_`` sets a few tensors of such a model by hand (the work,
and so the time, of every layer stays the same) so that each mask is a blob around its point
whose edge follows the image:

* the encoder's positional embedding (zero in a fresh official model) becomes the prompt
  encoder's own random-Fourier positional encoding of each patch, the blocks pass their input
  through (zero output projections) and the neck copies those channels, so each pixel's image
  feature is its positional encoding plus a little of the image's patch content;
* the decoder's first token self-attention averages the tokens, so every output token carries the
  point's positional encoding; every later token or image update is switched off (zero output
  projections, unit norms);
* the mask upscaling passes some of those channels through (nearly linearly: the GELUs work
  around +3) and the hypernetworks turn the token into the same channels, so each mask logit is
  ``sharpness * (kernel(point, pixel) - offset)``, with kernel = the mean of cos(phase
  differences) over the frequencies used: 1 at the point, falling off with distance; the three
  outputs use three offsets, giving nested masks of three sizes, as SAM's whole / part / subpart;
* the IoU head is shifted so that some masks pass the default predicted-IoU threshold.

Both implementations get the same state dict, so records must still agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tests.reference_models import SMALL_CONFIG, official_sam


@torch.no_grad()
def regions_(
    model: torch.nn.Module,
    frequency_scale: float = 1.0,
    position_scale: float = 3.0,
    sharpness: float = 100.0,
    offsets: tuple[float, float, float] = (0.6, 0.7, 0.8),
    iou_shift: float = 0.6,
    kernel_scale: float = 1.0,
) -> torch.nn.Module:
    """Make ``model`` (an official ``Sam``, changed in place) give region-like masks."""
    prompt = model.prompt_encoder
    decoder = model.mask_decoder
    encoder = model.image_encoder
    dim = decoder.transformer_dim
    prompt.pe_layer.positional_encoding_gaussian_matrix.mul_(frequency_scale)

    # Encoder: patch content + positional encoding, passed through unchanged.
    grid = prompt.image_embedding_size
    encoding = prompt.pe_layer(grid).permute(1, 2, 0)  # h x w x dim
    encoder.pos_embed.zero_()
    encoder.pos_embed[0, :, :, :dim] = position_scale * encoding
    for block in encoder.blocks:
        for linear in (block.attn.proj, block.mlp.lin2):
            _set(linear, torch.zeros_like(linear.weight))
    conv1, norm1, conv2, norm2 = encoder.neck
    conv1.weight.zero_()
    conv1.weight[:, :dim, 0, 0] = torch.eye(dim)
    conv2.weight.zero_()
    conv2.weight[:, :, 1, 1] = torch.eye(dim)
    for norm in (norm1, norm2):
        norm.weight.fill_(1.0)
        norm.bias.zero_()

    # Decoder transformer: tokens = the mean of the tokens (the point's encoding), then untouched.
    for embedding in (*prompt.point_embeddings, prompt.not_a_point_embed):
        embedding.weight.mul_(0.01)
    decoder.iou_token.weight.mul_(0.01)
    decoder.mask_tokens.weight.mul_(0.01)
    transformer = decoder.transformer
    for module in transformer.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
    first = transformer.layers[0].self_attn
    _set(first.q_proj, torch.zeros_like(first.q_proj.weight))
    _set(first.v_proj, torch.eye(*first.v_proj.weight.shape))
    _set(first.out_proj, torch.eye(*first.out_proj.weight.shape))
    updates = [transformer.final_attn_token_to_image.out_proj]
    for i, layer in enumerate(transformer.layers):
        updates += [layer.cross_attn_token_to_image.out_proj, layer.mlp.lin2]
        updates += [layer.cross_attn_image_to_token.out_proj]
        if i > 0:
            updates.append(layer.self_attn.out_proj)
    for linear in updates:
        _set(linear, torch.zeros_like(linear.weight))

    # Upscaling: the sin and cos channels of the first frequencies, replicated 2x2 twice, at +3.
    # The first layer also takes their negatives, so the norm between sees mean-zero channels.
    up1, norm, _, up2, _ = decoder.output_upscaling
    frequencies = min((up2.weight.shape[1] - 1) // 2, up1.weight.shape[1] // 4)
    channels = torch.cat([torch.arange(frequencies), dim // 2 + torch.arange(frequencies)])
    used = len(channels)
    first_weight = torch.zeros(dim, up1.weight.shape[1])
    first_weight[channels, torch.arange(used)] = 1.0
    first_weight[channels, used + torch.arange(used)] = -1.0
    up1.weight.copy_(first_weight[:, :, None, None].expand_as(up1.weight))
    up1.bias.zero_()
    norm.weight.zero_()
    norm.weight[: 2 * used] = 0.5
    norm.bias.fill_(3.0)
    second = torch.zeros(up2.weight.shape[:2])
    second[torch.arange(used), 1 + torch.arange(used)] = 1.0
    up2.weight.copy_(second[:, :, None, None].expand_as(up2.weight))
    up2.bias.fill_(-10.0)  # unused channels: GELU(-10) = 0
    up2.bias[1 : 1 + used] = 0.0
    up2.bias[0] = 3.0  # channel 0: the constant GELU(3), which cancels the +3 and sets the offset

    # Hypernetworks: +10 keeps the ReLUs linear (the last layer's bias takes it off again); the
    # last layer reads the token's used channels. The pixel's channels sit at GELU(3 + a);
    # channel 0's weight removes the GELU(3) part.
    gelu3 = float(F.gelu(torch.tensor(3.0)))
    scale = sharpness * kernel_scale / frequencies
    for index, mlp in enumerate(decoder.output_hypernetworks_mlps):
        *hidden, last = mlp.layers
        for layer in hidden:
            _set(layer, torch.eye(*layer.weight.shape), bias=10.0 if layer is hidden[0] else 0.0)
        weight = torch.zeros_like(last.weight)
        weight[1 + torch.arange(used), channels] = scale
        weight[0, channels] = -scale
        offset = offsets[max(0, index - 1) % len(offsets)]
        _set(last, weight)
        last.bias.copy_(-10.0 * weight.sum(dim=1))
        last.bias[0] -= offset * sharpness / gelu3
    decoder.iou_prediction_head.layers[-1].bias.add_(iou_shift)
    return model


def _set(linear: torch.nn.Linear, weight: torch.Tensor, bias: float = 0.0) -> None:
    linear.weight.copy_(weight)
    linear.bias.fill_(bias)


def region_sam(config: dict, seed: int = 0, **kwargs) -> torch.nn.Module:
    """The official ``Sam`` of ``config`` with seeded random weights made region-like."""
    return regions_(official_sam(config, seed=seed), **kwargs)


# A small model for fast tests: like tests.reference_models.SMALL_CONFIG with a 128-wide decoder,
# so that the upscaling has channels for enough frequencies to make compact masks.
REGION_SMALL_CONFIG = {
    **SMALL_CONFIG,
    "encoder_embed_dim": 128,
    "prompt_embed_dim": 128,
    "decoder_mlp_dim": 256,
}
