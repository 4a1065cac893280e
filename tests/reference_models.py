"""Official SAM models built from Maskmill's ``custom`` config dict, with random weights that
exercise every parameter (the official init leaves relative positions and pos_embed at zero, which
would hide bugs). Used by every equivalence test: build the official model here, copy its
state dict into ours, compare outputs."""

from __future__ import annotations

from functools import partial

import torch

from engine.sam import DEFAULT_CONFIG
from tests.reference import reference

# Maskmill's `custom` config schema and its vit_b defaults: the official models below are built
# from the same dict so that a state dict can be copied between the two.
VIT_B_CONFIG = dict(DEFAULT_CONFIG)

# A model small enough for fast tests that still has windowed + global attention, padding
# (window 4 does not divide 16×16 tokens... it does; window 3 does not) and a real decoder.
SMALL_CONFIG = {
    **VIT_B_CONFIG,
    "image_size": 256,
    "encoder_embed_dim": 64,
    "encoder_depth": 4,
    "encoder_num_heads": 4,
    "encoder_global_attn_indexes": [1, 3],
    "encoder_window_size": 3,
    "prompt_embed_dim": 64,
    "decoder_mlp_dim": 128,
    "decoder_num_heads": 4,
    "iou_head_hidden_dim": 64,
}


def official_sam(config: dict | None = None, seed: int = 0) -> torch.nn.Module:
    """The official ``Sam`` with the given sizes and seeded random weights, in eval mode."""
    cfg = {**VIT_B_CONFIG, **(config or {})}
    modeling = reference("segment_anything.modeling")
    embed = cfg["image_size"] // cfg["patch_size"]
    model = modeling.Sam(
        image_encoder=modeling.ImageEncoderViT(
            depth=cfg["encoder_depth"],
            embed_dim=cfg["encoder_embed_dim"],
            img_size=cfg["image_size"],
            mlp_ratio=cfg["encoder_mlp_ratio"],
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=cfg["encoder_num_heads"],
            patch_size=cfg["patch_size"],
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(cfg["encoder_global_attn_indexes"]),
            window_size=cfg["encoder_window_size"],
            out_chans=cfg["prompt_embed_dim"],
        ),
        prompt_encoder=modeling.PromptEncoder(
            embed_dim=cfg["prompt_embed_dim"],
            image_embedding_size=(embed, embed),
            input_image_size=(cfg["image_size"], cfg["image_size"]),
            mask_in_chans=cfg["mask_in_chans"],
        ),
        mask_decoder=modeling.MaskDecoder(
            num_multimask_outputs=cfg["num_multimask_outputs"],
            transformer=modeling.TwoWayTransformer(
                depth=cfg["decoder_depth"],
                embedding_dim=cfg["prompt_embed_dim"],
                mlp_dim=cfg["decoder_mlp_dim"],
                num_heads=cfg["decoder_num_heads"],
            ),
            transformer_dim=cfg["prompt_embed_dim"],
            iou_head_depth=cfg["iou_head_depth"],
            iou_head_hidden_dim=cfg["iou_head_hidden_dim"],
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    randomize_(model, seed)
    return model.eval()


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Seeded random values for every parameter and float buffer, scaled to keep activations sane."""
    gen = torch.Generator().manual_seed(seed)
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if not tensor.is_floating_point() or name.endswith(("pixel_mean", "pixel_std")):
            continue
        noise = torch.randn(tensor.shape, generator=gen)
        if name.endswith("weight") and tensor.ndim == 1:  # norms: around one
            tensor.copy_(1.0 + 0.1 * noise)
        elif tensor.ndim >= 2 and "positional_encoding_gaussian_matrix" not in name:
            fan_in = tensor[0].numel()
            tensor.copy_(noise / fan_in**0.5)
        else:
            tensor.copy_(0.02 * noise if "gaussian" not in name else noise)
