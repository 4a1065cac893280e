"""Label Studio's brush RLE, only through ``label_studio_sdk.converter.brush``.

Label Studio stores a brush mask as an RGBA byte image run-length encoded in its own bit format;
a hand-written codec would drift from the one Label Studio reads, so this module only adapts
Maskmill's boolean masks to the SDK's functions and checks sizes on the way back.
"""

from __future__ import annotations

import numpy as np
from label_studio_sdk.converter import brush as _ls_brush


class BrushFormatError(ValueError):
    """A brush RLE that does not decode to a mask of the expected size."""


def mask_to_brush_rle(mask: np.ndarray) -> list[int]:
    """A boolean (or 0/1) H×W mask as Label Studio's brush RLE (a list of byte values)."""
    if mask.ndim != 2:
        raise BrushFormatError(f"a mask must be 2-D, got shape {mask.shape}")
    return [int(b) for b in _ls_brush.mask2rle(np.where(mask, 255, 0).astype(np.uint8))]


def brush_rle_to_mask(rle: list[int], height: int, width: int) -> np.ndarray:
    """Label Studio's brush RLE as a boolean H×W mask; the RLE must describe exactly H×W×4 bytes."""
    if (
        not isinstance(rle, list | tuple)
        or not rle
        or not all(isinstance(b, int) and 0 <= b < 256 for b in rle)
    ):
        raise BrushFormatError("brush RLE must be a non-empty list of byte values (0-255)")
    if len(rle) < 4:
        raise BrushFormatError("brush RLE is too short to hold its header")
    declared = int.from_bytes(bytes(rle[:4]), "big")  # the first 32 bits: number of values
    if declared != height * width * 4:
        raise BrushFormatError(
            f"brush RLE holds {declared} values, an image of {width}x{height} needs {height * width * 4}"
        )
    try:
        flat = _ls_brush.decode_rle(list(rle))
    except (IndexError, ValueError) as error:
        raise BrushFormatError(f"brush RLE does not decode: {error}") from error
    # Label Studio draws in RGBA; the alpha channel says where the brush painted.
    return flat.reshape(height, width, 4)[:, :, 3] > 0
