"""Writing a trained model as a checkpoint that ``build_sam`` loads and, for the official
families, segment_anything's ``sam_model_registry`` loads too (the same flat state dict)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from engine.training.config import TrainingError


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model``'s fp32 state dict to ``path`` atomically (a temporary file in the same
    folder, renamed when complete), so a killed writer never leaves half a checkpoint."""
    if getattr(model, "precision", "fp32") != "fp32":
        raise TrainingError(f"a {model.precision} model cannot be saved as a checkpoint; save the fp32 model")
    state = {
        key: (value.detach().to("cpu", torch.float32) if value.is_floating_point() else value.detach().cpu())
        .clone()
        .contiguous()
        for key, value in model.state_dict().items()
    }
    for key, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise TrainingError(f"refusing to save a checkpoint with non-finite weights ({key})")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(state, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
