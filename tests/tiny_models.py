"""The tiny random SAM the platform's tests load as their "configured model": real code paths
(build_sam, Predictor, MaskGenerator) at a size a 2-core machine runs in milliseconds."""

from __future__ import annotations

from pathlib import Path

import torch

TINY_CONFIG = {
    "image_size": 128,
    "patch_size": 16,
    "encoder_embed_dim": 32,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_global_attn_indexes": [1],
    "encoder_window_size": 4,
    "prompt_embed_dim": 32,
    "decoder_mlp_dim": 64,
    "decoder_num_heads": 2,
    "iou_head_hidden_dim": 32,
}

# Random weights score low: thresholds lowered so masks survive, a sparse grid so a task is cheap.
LOW_THRESHOLDS = {
    "points_per_side": 4,
    "points_per_batch": 16,
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
    "min_mask_region_area": 0,
}


def save_tiny_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """Write the state dict of a seeded tiny ``custom`` SAM to ``path``."""
    from engine.sam import build_sam

    torch.manual_seed(seed)
    torch.save(build_sam("custom", config=TINY_CONFIG).state_dict(), path)
    return Path(path)
