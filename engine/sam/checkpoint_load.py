"""Loading SAM-family checkpoints into a model (downloading them is ``engine.checkpoint_download``),
and explaining, in words, why one does not fit."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model being built."""


# Width of the patch embedding identifies the ViT family; TinyViT has its own key layout.
_VIT_WIDTHS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
_PATCH_KEY = "image_encoder.patch_embed.proj.weight"
_TINYVIT_KEY = "image_encoder.patch_embed.seq.0.c.weight"


def read_state_dict(checkpoint: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file; unwraps ``{"model": ...}`` / ``{"state_dict": ...}`` and a
    DataParallel ``module.`` prefix."""
    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or truncated archives
        size = path.stat().st_size
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r} ({size} bytes): {type(exc).__name__}: {exc}. "
            "The file may be truncated (an interrupted download) or not a PyTorch checkpoint."
        ) from exc
    return unwrap_state_dict(loaded, str(path))


def unwrap_state_dict(loaded: object, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    for wrapper in ("model", "state_dict"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
            loaded = loaded[wrapper]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(f"{source} does not hold a state dict (a mapping of names to tensors)")
    if loaded and all(key.startswith("module.") for key in loaded):
        loaded = {key[len("module.") :]: value for key, value in loaded.items()}
    return dict(loaded)


def guess_family(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """'vit_b' / 'vit_l' / 'vit_h' / 'vit_t' when the keys say so, else None."""
    if _TINYVIT_KEY in state_dict:
        return "vit_t"
    weight = state_dict.get(_PATCH_KEY)
    if weight is not None and weight.ndim == 4:
        return _VIT_WIDTHS.get(weight.shape[0], f"custom (encoder width {weight.shape[0]})")
    return None


def _summarise(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > limit else ''})"


def load_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], expected_family: str) -> None:
    """Strictly load ``state_dict`` into ``model``, or raise a CheckpointError that names what
    does not match and, where the keys tell, which model family the checkpoint is for."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(own[key].shape)}"
        for key in sorted(set(own) & set(state_dict))
        if state_dict[key].shape != own[key].shape
    ]
    if not (missing or unexpected or mismatched):
        model.load_state_dict(state_dict, strict=True)
        return
    problems = []
    family = guess_family(state_dict)
    if family is not None and family != expected_family:
        problems.append(f"this looks like a {family} checkpoint, but a {expected_family} model was requested")
    elif family is None and not (set(state_dict) & set(own)):
        problems.append("no key matches a SAM model: this is not a SAM-family checkpoint")
    if missing:
        problems.append(f"missing keys: {_summarise(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_summarise(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_summarise(mismatched, limit=3)}")
    raise CheckpointError(f"checkpoint does not fit {expected_family}: " + "; ".join(problems))
