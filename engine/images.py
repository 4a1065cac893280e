"""The one way Maskmill reads an image: EXIF orientation applied, any mode to RGB uint8,
decompression bombs and truncated or non-image files refused with a reason."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 100_000_000


class ImageReadError(ValueError):
    """A file that is not a usable image; the message says why, for the user."""


def read_image(
    source: str | os.PathLike | bytes | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode ``source`` (path, bytes or binary file) into an HxWx3 RGB uint8 array."""
    with open_image(source, max_pixels) as image:
        return np.asarray(upright_rgb(image))


def upright_rgb(image: Image.Image) -> Image.Image:
    """``image`` turned by its EXIF orientation, as RGB. A malformed EXIF block (Pillow raises
    SyntaxError, struct.error, ValueError... from its TIFF parser) is a refusal, not a crash."""
    try:
        return to_rgb(ImageOps.exif_transpose(image))
    except Exception as exc:
        raise ImageReadError(f"corrupt image metadata (EXIF): {exc.__class__.__name__}: {exc}") from exc


def open_image(
    source: str | os.PathLike | bytes | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Open and fully decode ``source``; raises ImageReadError with the reason on any problem."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageReadError(f"{path}: no such file")
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        # Pillow checks its own pixel limit inside open (DecompressionBombError, not an OSError)
        # before ours below can run.
        image = Image.open(source)
    except UnidentifiedImageError as exc:
        raise ImageReadError("not an image file (unrecognised format)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"refused as a decompression bomb: {exc}") from exc
    except Exception as exc:
        raise ImageReadError(f"cannot open image: {exc.__class__.__name__}: {exc}") from exc
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageReadError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageReadError(
            f"image is {width}x{height} = {width * height / 1e6:.1f} MP, "
            f"over the {max_pixels / 1e6:.0f} MP limit"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"refused as a decompression bomb: {exc}") from exc
    except Exception as exc:
        raise ImageReadError(f"corrupt or truncated image: {exc}") from exc
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode → RGB. 16-bit and float greyscale are scaled to 0–255 by their range."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = np.zeros_like(values) if high <= low else (values - low) * (255.0 / (high - low))
        return Image.fromarray(np.round(scaled).astype(np.uint8), "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def check_image_array(image: object, image_format: str, min_side: int = 1) -> None:
    """Validate an in-memory image handed to a predictor: HxWx3 uint8, RGB or BGR, at least
    ``min_side`` pixels each way. Raises TypeError/ValueError saying what is wrong."""
    if image_format not in ("RGB", "BGR"):
        raise ValueError(f"image_format must be 'RGB' or 'BGR', not {image_format!r}")
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, not {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be HxWx3, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 with values 0..255, got dtype {image.dtype}")
    height, width = image.shape[:2]
    if height < min_side or width < min_side:
        what = "empty" if min(height, width) == 0 else "too small"
        raise ValueError(
            f"image is {what}: {width}x{height}, at least {min_side}x{min_side} pixels are needed"
        )
