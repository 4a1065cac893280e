"""Image embeddings on disk: fp16 ``.npy`` (2 MiB for SAM's 256x64x64 plus a 128-byte header).

Half precision halves storage and transfer; decoding from it agrees with fp32 (see
tests/engine/test_embeddings.py). Loading always gives float32 (1, C, h, w), what the decoder takes.
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO

import numpy as np
import torch

FP16_MAX = float(np.finfo(np.float16).max)


def save_embedding(file_or_path: str | os.PathLike | BinaryIO, embedding: torch.Tensor | np.ndarray) -> None:
    """Write a (1, C, h, w) or (C, h, w) embedding as an fp16 ``.npy`` (always 4-D on disk)."""
    array = (
        embedding.detach().cpu().float().numpy()
        if isinstance(embedding, torch.Tensor)
        else np.asarray(embedding)
    )
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[0] != 1:
        raise ValueError(f"embedding must be (1, C, h, w) or (C, h, w), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"embedding must be floating point, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError("embedding contains NaN or infinite values")
    if np.abs(array).max(initial=0.0) > FP16_MAX:
        raise ValueError(
            f"embedding values exceed the fp16 range (±{FP16_MAX:g}); it cannot be stored as fp16"
        )
    np.save(file_or_path, np.ascontiguousarray(array, dtype=np.float16), allow_pickle=False)


def load_embedding(file_or_path: str | os.PathLike | BinaryIO) -> torch.Tensor:
    """Read an embedding written by :func:`save_embedding` as a float32 (1, C, h, w) tensor."""
    try:
        array = np.load(file_or_path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"cannot read embedding {file_or_path!r}: {exc}") from exc
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[0] != 1 or not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{file_or_path!r} is not an embedding: shape {array.shape}, dtype {array.dtype}")
    return torch.from_numpy(array.astype(np.float32))


def check_embedding(embedding: object, model: torch.nn.Module) -> torch.Tensor:
    """A cached image embedding as ``model``'s decoder takes it: float32 (1, C, h, w) on its device.
    A (C, h, w) tensor gets its leading 1; anything else (shape, dtype, NaN) is a clear error."""
    if not isinstance(embedding, torch.Tensor):
        raise TypeError(f"embedding must be a torch.Tensor, got {type(embedding).__name__}")
    if embedding.dim() == 3:
        embedding = embedding[None]
    prompt_encoder = model.prompt_encoder
    expected = (1, prompt_encoder.embed_dim, *prompt_encoder.image_embedding_size)
    if tuple(embedding.shape) != expected:
        raise ValueError(
            f"embedding must be {' x '.join(map(str, expected))} for this model (it must have shape "
            f"{expected}), got {tuple(embedding.shape)}"
        )
    if not embedding.is_floating_point():
        raise ValueError(f"embedding must be floating point, got {embedding.dtype}")
    embedding = embedding.to(device=model.device, dtype=torch.float32)
    if not torch.isfinite(embedding).all():
        raise ValueError("embedding contains NaN or infinite values")
    return embedding


def embedding_nbytes(shape: tuple[int, ...] = (1, 256, 64, 64)) -> int:
    """Bytes of the stored ``.npy`` for an embedding of ``shape`` (fp16 data + npy header)."""
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(shape, dtype=np.float16))
    return buffer.getbuffer().nbytes
