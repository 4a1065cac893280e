"""Batched decoding of single-point prompts for automatic generation.

``decode_points`` gives what ``SamPredictor.predict_torch(points, labels, multimask_output=True,
return_logits=True)`` gives before its upsampling: the three low-resolution mask logits and their
predicted IoUs per point. Upsampling is left to the caller, which only upsamples what survives.
"""

from __future__ import annotations

import torch


def decode_points(
    model: torch.nn.Module, features: torch.Tensor, coords: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground point prompts ``coords`` (B x 2, model input frame) → low-res logits
    (B x 3 x h x w) and predicted IoUs (B x 3)."""
    labels = torch.ones((coords.shape[0], 1), dtype=torch.int, device=coords.device)
    sparse, dense = model.prompt_encoder(points=(coords[:, None, :], labels), boxes=None, masks=None)
    return model.mask_decoder(
        image_embeddings=features,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=True,
    )
