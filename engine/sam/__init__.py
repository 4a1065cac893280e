"""SAM-family models (ViT-B/L/H SAM, MobileSAM's TinyViT) that load the official checkpoints
unchanged, built from a model type or a ``custom`` size dict.

    model = build_sam("vit_b", checkpoint="sam_vit_b_01ec64.pth")
    model = with_precision(model, "bf16")   # optional faster encoder
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from engine.sam.checkpoint_load import CheckpointError, load_into, read_state_dict
from engine.sam.image_encoder import ImageEncoderViT
from engine.sam.mask_decoder import MaskDecoder
from engine.sam.prompt_encoder import PromptEncoder
from engine.sam.sam import Sam
from engine.sam.transformer import TwoWayTransformer

__all__ = ["MODEL_CONFIGS", "PRECISIONS", "CheckpointError", "Sam", "build_sam", "with_precision"]

# Keys of a ``custom`` config; missing keys take these (vit_b) values.
DEFAULT_CONFIG: dict[str, Any] = {
    "image_size": 1024,
    "patch_size": 16,
    "encoder_embed_dim": 768,
    "encoder_depth": 12,
    "encoder_num_heads": 12,
    "encoder_global_attn_indexes": [2, 5, 8, 11],
    "encoder_window_size": 14,
    "encoder_mlp_ratio": 4.0,
    "prompt_embed_dim": 256,
    "mask_in_chans": 16,
    "decoder_depth": 2,
    "decoder_mlp_dim": 2048,
    "decoder_num_heads": 8,
    "num_multimask_outputs": 3,
    "iou_head_depth": 3,
    "iou_head_hidden_dim": 256,
}

MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    "vit_b": DEFAULT_CONFIG,
    "vit_l": {
        **DEFAULT_CONFIG,
        "encoder_embed_dim": 1024,
        "encoder_depth": 24,
        "encoder_num_heads": 16,
        "encoder_global_attn_indexes": [5, 11, 17, 23],
    },
    "vit_h": {
        **DEFAULT_CONFIG,
        "encoder_embed_dim": 1280,
        "encoder_depth": 32,
        "encoder_num_heads": 16,
        "encoder_global_attn_indexes": [7, 15, 23, 31],
    },
    # TinyViT encoder (MobileSAM); the prompt encoder and decoder are vit_b's.
    "vit_t": DEFAULT_CONFIG,
}

PRECISIONS = ("fp32", "bf16", "int8")


def _tiny_vit_encoder(image_size: int) -> nn.Module:
    from engine.sam.tiny_vit import TinyViT  # written separately; only vit_t needs it

    return TinyViT(
        img_size=image_size,
        in_chans=3,
        num_classes=1000,
        embed_dims=[64, 128, 160, 320],
        depths=[2, 2, 6, 2],
        num_heads=[2, 4, 5, 10],
        window_sizes=[7, 7, 14, 7],
        mlp_ratio=4.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
        use_checkpoint=False,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
        layer_lr_decay=0.8,
    )


def _resolve_config(model_type: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    if model_type == "custom":
        if config is None:
            raise ValueError("model_type 'custom' needs a config dict of sizes (keys of DEFAULT_CONFIG)")
        unknown = sorted(set(config) - set(DEFAULT_CONFIG))
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(DEFAULT_CONFIG)}")
        cfg = {**DEFAULT_CONFIG, **config}
    elif model_type in MODEL_CONFIGS:
        if config is not None:
            raise ValueError(f"config is only for model_type 'custom', not {model_type!r}")
        cfg = dict(MODEL_CONFIGS[model_type])
    else:
        raise ValueError(f"unknown model_type {model_type!r}; expected one of {[*MODEL_CONFIGS, 'custom']}")
    if cfg["image_size"] % cfg["patch_size"]:
        raise ValueError(
            f"image_size {cfg['image_size']} is not a multiple of patch_size {cfg['patch_size']}"
        )
    if cfg["encoder_embed_dim"] % cfg["encoder_num_heads"]:
        raise ValueError("encoder_num_heads must divide encoder_embed_dim")
    bad = [i for i in cfg["encoder_global_attn_indexes"] if not 0 <= i < cfg["encoder_depth"]]
    if bad:
        raise ValueError(f"encoder_global_attn_indexes {bad} outside 0..{cfg['encoder_depth'] - 1}")
    return cfg


def build_sam(
    model_type: str = "vit_b",
    checkpoint: str | os.PathLike | None = None,
    config: Mapping[str, Any] | None = None,
) -> Sam:
    """A SAM model in eval mode, with the checkpoint's weights when one is given.

    ``model_type``: ``vit_b``, ``vit_l``, ``vit_h`` (official SAM), ``vit_t`` (MobileSAM) or
    ``custom`` (sizes from ``config``). A checkpoint that does not fit raises CheckpointError
    naming the missing/unexpected keys, the mismatched shapes and, when recognisable, the family
    the checkpoint belongs to.
    """
    cfg = _resolve_config(model_type, config)
    embed_grid = cfg["image_size"] // cfg["patch_size"]
    width = cfg["prompt_embed_dim"]
    if model_type == "vit_t":
        image_encoder = _tiny_vit_encoder(cfg["image_size"])
    else:
        image_encoder = ImageEncoderViT(
            img_size=cfg["image_size"],
            patch_size=cfg["patch_size"],
            embed_dim=cfg["encoder_embed_dim"],
            depth=cfg["encoder_depth"],
            num_heads=cfg["encoder_num_heads"],
            mlp_ratio=cfg["encoder_mlp_ratio"],
            out_chans=width,
            window_size=cfg["encoder_window_size"],
            global_attn_indexes=tuple(cfg["encoder_global_attn_indexes"]),
        )
    model = Sam(
        image_encoder=image_encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=width,
            image_embedding_size=(embed_grid, embed_grid),
            input_image_size=(cfg["image_size"], cfg["image_size"]),
            mask_in_chans=cfg["mask_in_chans"],
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=width,
            transformer=TwoWayTransformer(
                depth=cfg["decoder_depth"],
                embedding_dim=width,
                num_heads=cfg["decoder_num_heads"],
                mlp_dim=cfg["decoder_mlp_dim"],
            ),
            num_multimask_outputs=cfg["num_multimask_outputs"],
            iou_head_depth=cfg["iou_head_depth"],
            iou_head_hidden_dim=cfg["iou_head_hidden_dim"],
        ),
    )
    model.eval()
    if checkpoint is not None:
        load_into(model, read_state_dict(checkpoint), model_type)
    return model


def _cast_input_bf16(_module: nn.Module, args: tuple) -> tuple:
    return tuple(a.to(torch.bfloat16) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def _cast_output_fp32(_module: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
    return output.float()


def with_precision(model: Sam, precision: str) -> Sam:
    """Switch the image encoder (where the time goes) to ``fp32``, ``bf16`` or ``int8``, in place.

    ``bf16`` stores the encoder's weights in bfloat16 and runs it there, taking fp32 images and
    returning an fp32 embedding (fast only where the CPU has native bf16: AVX512-BF16/AMX; on a
    plain AVX2 CPU it is emulated and slower than fp32); ``int8`` applies PyTorch dynamic
    quantization to the encoder's Linear layers (int8 weights with per-channel scales,
    activations quantized per call). The prompt encoder and mask
    decoder stay fp32: they are cheap and decide the mask boundary. ``int8`` cannot be undone.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    encoder = model.image_encoder
    current = getattr(model, "precision", "fp32")
    if current == precision:
        return model
    if current == "int8":
        raise ValueError("an int8 model cannot be converted back; build the model again")
    for handle in getattr(encoder, "_precision_hooks", ()):
        handle.remove()
    encoder._precision_hooks = ()
    encoder.float()
    if precision == "bf16":
        encoder.to(torch.bfloat16)
        encoder._precision_hooks = (
            encoder.register_forward_pre_hook(_cast_input_bf16),
            encoder.register_forward_hook(_cast_output_fp32),
        )
    elif precision == "int8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            # Per-output-channel weight scales: measurably closer to fp32 than one scale per tensor.
            quantize_dynamic(encoder, {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)
    model.precision = precision
    return model
