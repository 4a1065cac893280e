"""Hostile inputs shared by the hardening tests and the fuzzing run: files that must be refused
with a reason (never a 5xx), built in memory so they need no data on disk."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image as PILImage

from tests.conftest import image_bytes


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A ~110 KB one-colour 1-bit PNG whose header says ``width`` x ``height`` (900 MP by default):
    Pillow refuses it inside ``Image.open`` with DecompressionBombError."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    chunks = _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", pixels) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def jpeg_with_bad_exif() -> bytes:
    """A JFIF JPEG (with a dpi) carrying an ``Exif\\0\\0GARBAGE`` APP1 segment."""
    buffer = io.BytesIO()
    PILImage.new("RGB", (16, 12), (200, 40, 40)).save(buffer, "JPEG", dpi=(72, 72))
    data = buffer.getvalue()
    app1 = b"Exif\x00\x00GARBAGE"
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


def png_with_bad_exif() -> bytes:
    """A PNG with an ``eXIf`` chunk that is no TIFF structure."""
    data = image_bytes(16, 12, seed=7)
    at = data.index(b"IDAT") - 4
    return data[:at] + _png_chunk(b"eXIf", b"GARBAGEGARBAGE") + data[at:]


def truncated_jpeg() -> bytes:
    return image_bytes(200, 150, fmt="JPEG", seed=2)[:600]


def png_header_only() -> bytes:
    """A PNG signature and IHDR with no pixel data."""
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 48, 8, 2, 0, 0, 0))


def zero_size_png() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0))


# name → (bytes, a word the refusal's reason contains)
BAD_IMAGES = {
    "bomb.png": (bomb_png, "decompression bomb"),
    "bad-exif.jpg": (jpeg_with_bad_exif, "exif"),
    "bad-exif.png": (png_with_bad_exif, "exif"),
    "cut.jpg": (truncated_jpeg, "truncated"),
    "header-only.png": (png_header_only, "image"),
    "zero.png": (zero_size_png, "image"),
    "text.png": (lambda: b"hello, not an image", "not an image"),
    "empty.png": (lambda: b"", "empty"),
}
